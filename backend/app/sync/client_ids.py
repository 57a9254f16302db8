"""Ids chosen by clients on create, so an offline device can refer to a row before sending it.

A create may carry an `id`. A fresh id creates the row with it. The same create sent again is
a replay: the row is answered as it is (200) and nothing is written. Any other use of a taken
id is refused: other content (409 `id_conflict`, with the row), a row deleted from the trip
(410 `deleted`: a replay never brings it back), an id used in another trip (409, saying
nothing about it).
"""

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from pydantic import BaseModel
from sqlalchemy import func
from sqlmodel import Session, SQLModel, col, select

from app.core.errors import Gone, IdConflict
from app.sync.models import Tombstone
from app.sync.registry import entity_of

T = TypeVar("T")
Row = TypeVar("Row", bound=SQLModel)


@dataclass(frozen=True)
class Created(Generic[T]):
    """What a create returns: the resource, and whether it existed already (a replay)."""

    value: T
    replayed: bool = False


def _lock_id(session: Session, entity: str, row_id: uuid.UUID) -> None:
    """Creates with the same id queue here, whatever their trip: the checks cannot be raced."""
    name = f"client-id:{entity}:{row_id}"
    session.execute(select(func.pg_advisory_xact_lock(func.hashtextextended(name, 0))))


def _deleted() -> Gone:
    return Gone("What had this id was deleted; create it again with a new id.")


def _taken() -> IdConflict:
    return IdConflict("This id is already in use; choose another.")


def find_existing(
    session: Session, model: type[Row], *, trip_id: uuid.UUID, row_id: uuid.UUID
) -> Row | None:
    """The trip's row that already has the client's id (a replay or a conflict), or None.

    Raises 410 if the trip's row with this id was deleted, 409 if another trip uses the id.
    Call it after the trip lock; it holds a lock on the id until the transaction ends.
    """
    entity = entity_of(model)
    _lock_id(session, entity.name, row_id)
    id_column = col(model.id)  # type: ignore[attr-defined]
    rows = session.exec(select(model).where(id_column == row_id)).all()
    for row in rows:
        if entity.trip_id(row) == trip_id:
            # Expenses and settlements stay as rows when deleted.
            if getattr(row, "deleted_at", None) is not None:
                raise _deleted()
            return row
    if rows:
        raise _taken()
    deleted_in = session.exec(
        select(Tombstone.trip_id).where(
            Tombstone.entity == entity.name, Tombstone.entity_id == row_id
        )
    ).all()
    if trip_id in deleted_in:
        raise _deleted()
    if deleted_in:
        raise _taken()
    return None


def replay(
    value: T, *, version: int, same_content: bool, current: Callable[[], BaseModel]
) -> Created[T]:
    """The existing row as the answer to a repeated create, or 409 if its content differs."""
    if not same_content:
        raise IdConflict(
            "This id is already used with other content; `current` shows it.",
            current=current(),
            version=version,
        )
    return Created(value, replayed=True)


def id_taken() -> IdConflict:
    """409 for an id the caller may not learn anything about (e.g. another member's private row)."""
    return _taken()
