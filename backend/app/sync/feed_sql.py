"""How a synced entity's rows enter the feed, as JSON written by PostgreSQL (app.core.json_sql).

Each entity's reader (registered in app.sync.registry) is one SELECT of
(version, position, id, source, change): `change` is the row's entry in the feed (a
ChangePublic) as JSON text, `position` its entity's place in the feed's order, and `source`
puts a row before a tombstone of the same version, entity and id. The feed (app.feed)
aggregates them all in one statement, built once, which takes the reader's values as
parameters: `trip_id`, `user_id`, `role`, `base_currency` (see the *_param functions).
"""

from typing import Any

from sqlalchemy import Select, Text, Uuid, bindparam, case, literal
from sqlalchemy import select as select_columns  # any number of them (sqlmodel's: four)
from sqlmodel import col

from app.core.json_sql import json_object
from app.sync import registry
from app.sync.models import ChangePublic

ROW, TOMBSTONE = 0, 1


def trip_id_param() -> Any:
    """The trip being read."""
    return bindparam("trip_id", type_=Uuid)


def user_id_param() -> Any:
    """The user reading it."""
    return bindparam("user_id", type_=Uuid)


def role_param() -> Any:
    """The reader's role in the trip, as text."""
    return bindparam("role", type_=Text)


def base_currency_param() -> Any:
    """The trip's base currency."""
    return bindparam("base_currency", type_=Text)


def upsert(entity: str, row_id: Any, version: Any, data: Any) -> Any:
    return json_object(
        ChangePublic, entity=entity, id=row_id, version=version, op="upsert", data=data
    )


def delete(entity: Any, row_id: Any, version: Any) -> Any:
    return json_object(
        ChangePublic, entity=entity, id=row_id, version=version, op="delete", data=None
    )


def upsert_unless(gone: Any, entity: str, row_id: Any, version: Any, data: Any) -> Any:
    """The row's change: a deletion where `gone` holds (deleted, or hidden from this reader),
    so a copy that had the row drops it; an upsert otherwise."""
    return case(
        (gone, delete(entity, row_id, version)), else_=upsert(entity, row_id, version, data)
    )


def with_deletions(rows: Select[Any], gone: Any, deletions: bool) -> Select[Any]:
    """A snapshot (no deletions) leaves out the rows that are gone; the changes keep them."""
    return rows if deletions else rows.where(~gone)


def feed_rows(entity: str, row_id: Any, version: Any, change: Any) -> Select[Any]:
    """The SELECT a reader returns, before its joins and conditions."""
    return select_columns(
        col(version).label("version"),
        literal(position_of(entity)).label("position"),
        col(row_id).label("id"),
        literal(ROW).label("source"),
        change.label("change"),
    )


def amount(hidden: bool, column: Any) -> Any:
    """Amounts are null for readers they are hidden from (app.trips.models: Trip.hides_amounts)."""
    return None if hidden else column


def position_of(entity: str) -> int:
    return {e.name: e.position for e in registry.entities()}[entity]
