"""One batch of rows past their retention, deleted (the tasks of `make cleanup`)."""

from typing import Any

from sqlalchemy import ColumnElement, delete, inspect, select, tuple_
from sqlmodel import Session, SQLModel


def delete_batch(
    session: Session, table: type[SQLModel], condition: ColumnElement[bool], *, limit: int
) -> int:
    """Delete up to `limit` rows of `table` matching `condition`; returns how many.

    Rows another transaction holds are skipped (the next run takes them), so a cleanup never
    waits on, nor blocks, the requests that use them.
    """
    primary_key = inspect(table).primary_key
    key: Any = tuple_(*primary_key)
    victims = select(*primary_key).where(condition).limit(limit).with_for_update(skip_locked=True)
    result = session.execute(delete(table).where(key.in_(victims)))
    return int(result.rowcount)  # type: ignore[attr-defined]
