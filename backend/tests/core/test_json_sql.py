"""JSON written by PostgreSQL (app.core.json_sql) spells every value as pydantic does."""

import random
import uuid
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pydantic_core
import pytest
from pydantic import BaseModel, TypeAdapter
from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    Double,
    Integer,
    MetaData,
    Numeric,
    Table,
    Text,
    Uuid,
    bindparam,
    cast,
    column,
    insert,
    select,
    text,
)
from sqlalchemy.types import TypeEngine
from sqlmodel import Session

from app.core.json_sql import json_array, json_object, json_value
from app.expenses.models import PlainDecimal, plain_decimal


def _written(session: Session, sql_type: TypeEngine[Any], values: list[Any]) -> list[str]:
    """json_value of each value, stored as `sql_type` in a temporary table and read back."""
    probe = Table(
        f"probe_{uuid.uuid4().hex[:8]}",
        MetaData(),
        Column("n", Integer),
        Column("x", sql_type),
        prefixes=["TEMPORARY"],
    )
    probe.create(session.connection())
    # Sent as text and cast there: psycopg2 would send the float -0.0 as -(0.0), which is 0.
    session.execute(
        insert(probe).values(n=bindparam("n"), x=cast(bindparam("x", type_=Text), sql_type)),
        [{"n": n, "x": None if v is None else str(v)} for n, v in enumerate(values)],
    )
    return list(session.execute(select(json_value(probe.c.x)).order_by(probe.c.n)).scalars())


def _pydantic(values: list[Any], annotation: Any = Any) -> list[str]:
    adapter = TypeAdapter(annotation)
    return [pydantic_core.to_json(adapter.dump_python(v, mode="json")).decode() for v in values]


def test_floats(session: Session) -> None:
    randomly = random.Random(20270501)
    values = [38.0, -9.0, 0.0, -0.0, 1e-05, -1e-05, 2.5e-05, 1e-06, 1e-07, 0.0001, 5e-324]
    values += [0.1 + 0.2, 179.99999999999997, -90.0, 123456789012345.6, 999999999999999.9]
    for exponent in range(-320, 15):
        values += [randomly.uniform(1, 10) * 10.0**exponent * randomly.choice((1, -1))]
    values += [randomly.uniform(-180, 180) for _ in range(2000)]
    values += [round(randomly.uniform(-90, 90), randomly.randint(0, 8)) for _ in range(500)]
    values += [float(randomly.randint(-180, 180)) for _ in range(50)]
    assert _written(session, Double(), values) == _pydantic(values)


def test_exact_decimals_lose_their_padding_zeros(session: Session) -> None:
    randomly = random.Random(7)
    written = ("1.0837", "100.000000", "0.000000000001", "0", "1", "10.50", "999999999999.5")
    values = [Decimal(v) for v in written]
    values += [
        Decimal(randomly.randint(1, 10**15)).scaleb(-randomly.randint(4, 12)) for _ in range(500)
    ]
    sent = [plain_decimal(v) for v in values]  # what the pydantic shapes are given
    assert _written(session, Numeric(24, 12), values) == _pydantic(sent, PlainDecimal)


def test_timestamps(session: Session) -> None:
    moment = datetime(2027, 5, 1, 10, 0, tzinfo=UTC)
    instants = [moment, moment.replace(microsecond=5), moment.replace(microsecond=120000)]
    instants += [datetime(1, 1, 1, tzinfo=UTC), datetime(9999, 12, 31, 23, 59, 59, 999999, UTC)]
    instants += [moment.astimezone(timezone(timedelta(hours=-7, minutes=-30)))]
    in_utc = [instant.astimezone(UTC) for instant in instants]
    session.execute(text("SET LOCAL TIME ZONE 'Asia/Kolkata'"))  # not the session's zone
    assert _written(session, DateTime(timezone=True), instants) == _pydantic(in_utc)
    local = [instant.replace(tzinfo=None) for instant in in_utc]
    assert _written(session, DateTime(), local) == _pydantic(local)


def test_text_and_the_rest(session: Session) -> None:
    characters = [chr(c) for c in range(1, 0x3000) if not 0xD800 <= c < 0xE000]
    strings = ["", "plain", '"quoted" \\ back', *characters, "🚋\u2028\u2029\ufeff"]
    assert _written(session, Text(), strings) == _pydantic(strings)
    others: list[tuple[TypeEngine[Any], list[Any]]] = [
        (Uuid(), [uuid.uuid4(), uuid.UUID(int=0)]),
        (Date(), [date(2027, 5, 1), date(1, 1, 1), date(9999, 12, 31)]),
        (BigInteger(), [0, -1, 10**15, 2**63 - 1]),
        (Boolean(), [True, False]),
    ]
    for sql_type, values in others:
        assert _written(session, sql_type, [*values, None]) == _pydantic([*values, None])


class _Shape(BaseModel):
    b: int
    a: list[str]


def test_objects_have_exactly_the_model_fields_in_its_order(session: Session) -> None:
    letters = select(json_array(json_value(column("x", Text)), order_by=[column("x")]))
    listed = letters.select_from(text("unnest(ARRAY['z', 'y']) AS u(x)")).scalar_subquery()
    written = session.execute(select(json_object(_Shape, b=1, a=listed))).scalar_one()
    assert written == _Shape(b=1, a=["y", "z"]).model_dump_json()
    empty = letters.select_from(text("unnest(ARRAY[]::text[]) AS u(x)")).scalar_subquery()
    assert session.execute(select(json_object(_Shape, b=2, a=empty))).scalar_one() == (
        '{"b":2,"a":[]}'
    )
    with pytest.raises(TypeError, match=r"no value for _Shape\.a"):
        json_object(_Shape, b=1)
    with pytest.raises(TypeError, match="_Shape has no field c"):
        json_object(_Shape, a=[], b=1, c=2)
