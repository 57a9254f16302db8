"""Per-trip versions: how every write is stamped so that no client can skip a committed change.

Each trip has a counter, `trips.head_version`. A transaction that writes anything in a trip
first runs `UPDATE trips SET head_version = head_version + 1 ... RETURNING head_version`,
which also locks the trip row until the transaction ends. Every synced row it writes (and
every tombstone it leaves) carries that value in `version`. The same statement runs
`pg_notify` with the trip and the version, which PostgreSQL delivers at commit (app.sync.live).

Why a locked counter and not a sequence or a timestamp: with a global sequence, transaction
A can take 41, transaction B take 42 and commit first; a client that pulls then sees 42 and
moves its cursor past 41, and when A commits a moment later its row (version 41) is behind
the cursor and is never sent. Holding the trip row's lock from the bump to the commit makes
version order equal commit order within a trip, so "everything after my cursor" is always
complete. The cost is that writes to one trip are serialised, which a trip's handful of
writers never notices; different trips never wait for each other.
"""

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Text, cast, event, func, select, update
from sqlalchemy.orm import Session as OrmSession
from sqlalchemy.orm import SessionTransaction
from sqlmodel import Session, col

from app.core.distribution import on_citus
from app.sync import live, registry
from app.sync.models import Tombstone

_CLAIMED = "sync_versions"


def claim_version(session: Session | OrmSession, trip_id: uuid.UUID) -> int:
    """The version of this transaction's writes to the trip; the first call locks the trip.

    Call it before taking any other lock in the trip, so writers queue on one row in one order.
    """
    claimed = _claim(session, trip_id, only_if=None)
    if claimed is None:
        raise LookupError(f"trip {trip_id} does not exist")
    return claimed


def holds_trip_lock(session: Session | OrmSession, trip_id: uuid.UUID) -> bool:
    """Whether this transaction has claimed the trip's version, so holds its row lock."""
    return trip_id in session.info.get(_CLAIMED, {})


def claim_version_if(
    session: Session | OrmSession, trip_id: uuid.UUID, condition: ColumnElement[bool]
) -> int | None:
    """As `claim_version`, only if `condition` holds (e.g. the caller is a member): else None,
    and no lock. Once claimed in this transaction, the claim is returned as it is."""
    return _claim(session, trip_id, only_if=condition)


def _claim(
    session: Session | OrmSession, trip_id: uuid.UUID, only_if: ColumnElement[bool] | None
) -> int | None:
    claimed: dict[uuid.UUID, int] = session.info.setdefault(_CLAIMED, {})
    if trip_id not in claimed:
        trips: Any = registry.clock().model
        statement = update(trips).where(col(trips.id) == trip_id)
        if only_if is not None:
            statement = statement.where(only_if)
        # The same statement announces the version; PostgreSQL sends it only at commit.
        # Citus runs RETURNING on the worker and refuses pg_notify there: the coordinator
        # announces in a second statement of the same transaction (still sent at commit).
        separately = on_citus(session)
        announce = func.pg_notify(
            live.CHANNEL,
            func.concat(cast(trips.id, Text), ":", cast(trips.head_version, Text)),
        )
        returned = (col(trips.head_version),) if separately else (col(trips.head_version), announce)
        bumped = session.execute(
            statement.values(head_version=col(trips.head_version) + 1)
            .returning(*returned)
            .execution_options(synchronize_session=False)
        ).first()
        if bumped is None:
            return None
        if separately:
            session.execute(select(func.pg_notify(live.CHANNEL, f"{trip_id}:{bumped[0]}")))
        claimed[trip_id] = bumped[0]
    return claimed[trip_id]


def start_new_timeline(session: Session, now: datetime) -> int:
    """After a restore (from a dump, or to a point in time): make every cursor from before it
    unusable, so each device takes a new snapshot. Returns how many trips were moved.

    The restored database lost the versions written after its backup, and will hand the same
    numbers out again for other writes: a device that saw the lost ones holds a cursor that
    is ahead now (`410 cursor_ahead`) but would look valid once new writes pass it, and it
    would never receive what it missed. So each trip's clock jumps to the restore time in
    microseconds, and everything below is marked as forgotten (`pruned_version`): every
    cursor ever issued before is below it, since a trip's clock advances by one per write
    transaction, never a million per second, so `410 cursor_expired` and `reset` in
    GET /sync. Still below 2^53, so exact in JavaScript numbers, until the year 2255.
    """
    trips: Any = registry.clock().model
    floor = int(now.timestamp() * 1_000_000)
    jumped = func.greatest(col(trips.head_version) + 1, floor)
    result = session.execute(
        update(trips)
        .values(head_version=jumped, pruned_version=jumped)
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


def _stamp(session: OrmSession, _context: Any, _instances: Any) -> None:
    """Before each flush: version every synced row written, and tombstone every deleted one."""
    with session.no_autoflush:
        _stamp_rows(session)


def _stamp_rows(session: OrmSession) -> None:
    claimed: dict[uuid.UUID, int] = session.info.setdefault(_CLAIMED, {})
    for row in session.new:
        entity = registry.find_entity(type(row))
        if entity is not None and entity.clock:  # a new trip starts its own clock at 1
            claimed.setdefault(entity.row_id(row), 1)
            row.head_version = row.version = 1
    for touch in registry.touches():
        _touch_parents(session, touch)
    for row in list(session.new) + list(session.dirty):
        entity = _synced(row)
        if entity is not None and (row in session.new or session.is_modified(row)):
            if entity.clock and row in session.new:
                continue
            row.version = claim_version(session, entity.trip_id(row))
    for row in session.deleted:
        entity = _synced(row)
        if entity is not None:
            trip_id = entity.trip_id(row)
            session.add(
                Tombstone(
                    trip_id=trip_id,
                    version=claim_version(session, trip_id),
                    entity=entity.name,
                    entity_id=entity.row_id(row),
                )
            )


def _synced(row: Any) -> registry.SyncedEntity | None:
    entity = registry.find_entity(type(row))
    if entity is None and type(row) is not Tombstone and hasattr(type(row), "version"):
        # A versioned table the registry does not know would never reach a device.
        raise RuntimeError(f"{type(row).__name__} has a version but is not a synced entity")
    return entity


def _touch_parents(session: OrmSession, touch: registry.Touch) -> None:
    rows = [
        *(session.new if "new" in touch.on else ()),
        *(session.dirty if "dirty" in touch.on else ()),
        *(session.deleted if "deleted" in touch.on else ()),
    ]
    for row in rows:
        if not isinstance(row, touch.model):
            continue
        parent = touch.parent(session, row)  # type: ignore[arg-type]
        if parent is not None and parent not in session.deleted:
            entity = registry.entity_of(type(parent))
            parent.version = claim_version(session, entity.trip_id(parent))


def _forget_claims(session: OrmSession, transaction: SessionTransaction) -> None:
    if transaction.parent is None:  # the outermost transaction ended: its lock is gone
        session.info.pop(_CLAIMED, None)


event.listen(OrmSession, "before_flush", _stamp)
event.listen(OrmSession, "after_transaction_end", _forget_claims)
