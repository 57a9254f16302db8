"""JSON documents written by PostgreSQL, byte for byte as the app's pydantic models write them.

A read that returns thousands of rows spends most of its time turning each row into a model
and the model into JSON. `json_object(Model, table, ...)` instead builds the model's JSON as
SQL text: its fields, in its order, compact (`{"a":1,"b":"x"}`), each value written the way
pydantic writes it in a response:

- timestamps with a time zone in UTC with `Z` (`2027-05-01T10:00:00.123456Z`, no fraction
  when it is zero), whatever the session's TimeZone; timestamps without one likewise, no `Z`;
- exact decimals (NUMERIC) as strings without padding zeros (`"1.0837"`, `"100"`), as
  `PlainDecimal` does;
- floats as pydantic writes them (`38.0`, `0.00001`, `1e-7`) for magnitudes below 1e15;
- dates, UUIDs, text, integers, booleans and null as `to_json` writes them, which is the same.

Tests compare the two writers value by value (tests/core/test_json_sql.py) and on every
synced shape (tests/sync/test_feed_json.py).
"""

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pydantic_core
from pydantic import BaseModel
from sqlalchemy import (
    DateTime,
    Float,
    Numeric,
    Text,
    case,
    cast,
    func,
    literal,
    literal_column,
    type_coerce,
)
from sqlalchemy.dialects.postgresql import aggregate_order_by
from sqlalchemy.dialects.postgresql.psycopg2 import PGDialect_psycopg2
from sqlalchemy.orm import QueryableAttribute
from sqlalchemy.sql.elements import BindParameter, ColumnElement
from sqlalchemy.types import TypeDecorator
from sqlmodel import Session
from starlette.responses import Response

from app.core.pagination import PageRequest, Position
from app.core.preconditions import set_etag


class JsonText(TypeDecorator[str]):
    """Text that already is JSON: embedded as it is, never quoted again."""

    impl = Text
    cache_ok = True


def _text(value: str) -> ColumnElement[str]:
    """A constant of the statement itself (not a parameter): punctuation, keys, formats."""
    return literal_column("'" + value.replace("'", "''") + "'", Text)


def _quoted(text: ColumnElement[Any]) -> ColumnElement[str]:
    # `||` keeps NULL as NULL, which `json_value` then writes as null.
    return _text('"') + text + _text('"')


def _utc_timestamp(value: ColumnElement[Any]) -> ColumnElement[str]:
    in_utc = func.timezone(_text("UTC"), value)  # whatever the session's TimeZone
    written = func.to_char(in_utc, _text('YYYY-MM-DD"T"HH24:MI:SS.US"Z"'))
    return _quoted(func.replace(written, _text(".000000Z"), _text("Z")))


def _local_timestamp(value: ColumnElement[Any]) -> ColumnElement[str]:
    written = func.to_char(value, _text('YYYY-MM-DD"T"HH24:MI:SS.US'))
    return _quoted(func.replace(written, _text(".000000"), _text("")))


def _plain_decimal(value: ColumnElement[Any]) -> ColumnElement[str]:
    return _quoted(func.trim_scale(value).cast(Text))


def _float(value: ColumnElement[Any]) -> ColumnElement[str]:
    """PostgreSQL's shortest round-trip digits, spelled as pydantic spells them.

    PostgreSQL writes 38, 1.2e-05 and 1e-07 where pydantic writes 38.0, 0.000012 and 1e-7.
    From 1e15 up they differ again (1e+15 against 1000000000000000.0); no caller gets there.
    Shortest digits need extra_float_digits > 0, PostgreSQL's default (psycopg2 reads floats
    the same way, so the models would lose the same digits otherwise).
    """
    written = value.cast(Text)
    exponent = func.regexp_replace(
        func.regexp_replace(written, _text(r"^(-?)(\d)(?:\.(\d+))?e-05$"), _text(r"\10.0000\2\3")),
        _text("e-0"),
        _text("e-"),
    )
    return case(
        (func.strpos(written, _text("e")) > 0, exponent),
        (func.strpos(written, _text(".")) > 0, written),
        else_=written + _text(".0"),
    )


def json_value(value: Any) -> ColumnElement[str]:
    """`value` (a SQL expression or a Python constant) as JSON text; SQL NULL as `null`."""
    if isinstance(value, QueryableAttribute):  # a model's column, e.g. Trip.name
        value = value.__clause_element__()
    if not isinstance(value, ColumnElement):
        return literal(pydantic_core.to_json(value).decode(), Text)
    expression: ColumnElement[Any] = value
    if isinstance(expression, BindParameter):  # typed for PostgreSQL, which must know it
        expression = cast(expression, expression.type)
    kind = expression.type
    if isinstance(kind, JsonText):
        written: ColumnElement[str] = expression
    elif isinstance(kind, DateTime):
        written = _utc_timestamp(expression) if kind.timezone else _local_timestamp(expression)
    elif isinstance(kind, Float):
        written = _float(expression)
    elif isinstance(kind, Numeric):
        written = _plain_decimal(expression)
    else:
        written = func.to_json(expression).cast(Text)
    return func.coalesce(written, _text("null"))


def json_object(model: type[BaseModel], source: Any = None, /, **values: Any) -> ColumnElement[str]:
    """The model's fields, in its order, as a JSON object built by PostgreSQL.

    Each field's value is `values[name]` (a SQL expression or a Python constant), else the
    column of that name on `source`. A field of the model with neither, or a value for no
    field of it, is an error: the object has exactly the model's fields.
    """
    names = list(model.model_fields)
    unknown = set(values) - set(names)
    if unknown:
        raise TypeError(f"{model.__name__} has no field {', '.join(sorted(unknown))}")
    parts: list[Any] = []
    for position, name in enumerate(names):
        if name in values:
            value = values[name]
        elif source is not None and hasattr(source, name):
            value = getattr(source, name)
        else:
            raise TypeError(f"no value for {model.__name__}.{name}")
        separator = "{" if position == 0 else ","
        parts += [_text(f"{separator}{pydantic_core.to_json(name).decode()}:"), json_value(value)]
    parts.append(_text("}" if names else "{}"))
    return type_coerce(func.concat(*parts), JsonText)


def json_array(values: ColumnElement[str], *, order_by: Iterable[Any]) -> ColumnElement[str]:
    """An aggregate: `values` (JSON texts) as a JSON array in `order_by` order, `[]` if none."""
    joined = func.string_agg(values, aggregate_order_by(_text(","), *order_by))
    return type_coerce(func.coalesce(_text("[") + joined + _text("]"), _text("[]")), JsonText)


@dataclass(frozen=True)
class Prepared:
    """A statement compiled once, for psycopg2: its SQL text and the constants it binds.

    Building and compiling a statement of a hundred JSON writers costs more Python than the
    request it answers; the hot reads build theirs once, at first use, and send the text
    with the request's parameters (`execute`), which skips SQLAlchemy's compiler, its cache
    key and its result processing.
    """

    sql: str
    constants: Mapping[str, Any]

    def parameters(self, values: Mapping[str, Any]) -> dict[str, Any]:
        return {**self.constants, **values}

    def execute(self, session: Session, values: Mapping[str, Any]) -> Any:
        """The first row of the statement run with `values` (None if none)."""
        result = session.connection().exec_driver_sql(self.sql, self.parameters(values))
        return result.first()


def prepared(statement: Any) -> Prepared:
    """`statement` compiled for psycopg2. Its binds without a value (`bindparam(name)`) are
    the request's parameters; every other one is a constant of the statement."""
    compiled = statement.compile(dialect=PGDialect_psycopg2())  # type: ignore[no-untyped-call]
    given = {name for name, bind in compiled.binds.items() if bind.required}
    constants = {k: v for k, v in compiled.params.items() if k not in given}
    return Prepared(str(compiled), constants)


# The parameter every page statement takes besides its own: the page's size.
PAGE_LIMIT = "limit"


def page_statement(rows: Any, access: Any, order: Sequence[str]) -> Prepared:
    """One statement for a page of a list that checks the caller as it reads: one row of
    (the caller's check, the page's JSON array, whether more follow, the last row's
    `sort_key` and `id`), whatever the page holds.

    `access` selects one boolean column `allowed` (no row: no such caller or object);
    `rows` selects the documents (`doc`), `sort_key`, `id` and the columns `order` sorts
    by, in that order, `limit` + 1 of them at most; only the caller's allowed rows count.
    """
    rows_sql, access_sql = prepared(rows), prepared(access)
    ordering = ", ".join(order)
    sql = (
        f"WITH caller AS ({access_sql.sql}),"  # noqa: S608 (compiled statements)
        f" page AS (SELECT row_number() OVER (ORDER BY {ordering}) AS n, *"
        f" FROM ({rows_sql.sql}) AS rows WHERE EXISTS (SELECT FROM caller WHERE caller.allowed))"
        " SELECT (SELECT bool_or(caller.allowed) FROM caller),"
        " coalesce('[' || string_agg(page.doc, ',' ORDER BY page.n)"
        f" FILTER (WHERE page.n <= %({PAGE_LIMIT})s) || ']', '[]'),"
        f" count(*) > %({PAGE_LIMIT})s,"
        f" (array_agg(page.sort_key ORDER BY page.n) FILTER (WHERE page.n = %({PAGE_LIMIT})s))[1],"
        f" (array_agg(page.id ORDER BY page.n) FILTER (WHERE page.n = %({PAGE_LIMIT})s))[1]"
        " FROM page"
    )
    return Prepared(sql, {**rows_sql.constants, **access_sql.constants})


@dataclass(frozen=True)
class PageRead:
    """What a page statement answered: None for `allowed` when nothing matched the caller."""

    allowed: bool | None
    items: str
    more: bool
    last_sort_key: Any
    last_id: Any

    def body(self, page: PageRequest) -> bytes:
        """The page as app.core.pagination.Page writes it, with the cursor of the next one."""
        last = Position(self.last_sort_key, uuid.UUID(str(self.last_id))) if self.more else None
        cursor = page.cursor_for(last)
        written = b"null" if cursor is None else pydantic_core.to_json(cursor)
        return b'{"items":' + self.items.encode() + b',"next_cursor":' + written + b"}"


def read_page(prepared_page: Prepared, session: Session, values: Mapping[str, Any]) -> PageRead:
    row = prepared_page.execute(session, values)
    return PageRead(*row)


def json_response(body: bytes, *, version: int | None = None) -> Response:
    """A JSON body written by PostgreSQL, sent as it is (the route's response model only
    documents it), with the version as its ETag if given."""
    response = Response(body, media_type="application/json")
    if version is not None:
        set_etag(response, version)
    return response
