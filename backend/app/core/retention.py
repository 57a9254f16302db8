"""One batch of rows past their retention, deleted (the tasks of `make cleanup`)."""

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, delete, func, inspect, select, tuple_
from sqlmodel import Session, SQLModel

from app.core.config import get_settings


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


def delete_ended_links_of(
    table: type[SQLModel], *, session: Session, now: datetime, limit: int
) -> int:
    """Delete up to `limit` links of `table` (share or invite links) that stopped working,
    expired or revoked, more than LINK_RETENTION_DAYS before `now`: until then their owners
    still see them listed."""
    cutoff = now - timedelta(days=get_settings().LINK_RETENTION_DAYS)
    columns = inspect(table).columns  # both kinds have expires_at and revoked_at
    ended = func.least(columns["revoked_at"], columns["expires_at"]) < cutoff
    # Trip by trip: each locking delete stays within one trip (on Citus, one shard).
    trip_id = columns["trip_id"]
    trips = session.execute(select(trip_id).where(ended).distinct().limit(limit)).scalars().all()
    deleted = 0
    for trip in trips:
        if deleted >= limit:
            break
        deleted += delete_batch(session, table, ended & (trip_id == trip), limit=limit - deleted)
    return deleted
