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

from collections.abc import Iterable
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
from sqlalchemy.orm import QueryableAttribute
from sqlalchemy.sql.elements import BindParameter, ColumnElement
from sqlalchemy.types import TypeDecorator


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
