"""The sync feed: a trip's snapshot, its changes after a version, and a device's trip list.

Rows are read the way the caller may see them: private checklist items of others are sent as
deletions (so a copy that had one drops it), amounts are masked for viewers when the trip
hides them, deleted expenses and settlements are deletions.
"""

import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import anyio
from sqlalchemy import literal, text, union_all
from sqlmodel import Session, SQLModel, col, select
from starlette.concurrency import run_in_threadpool

from app.checklists.models import Checklist, ChecklistItem
from app.checklists.service import item_public
from app.core.config import get_settings
from app.core.db import utcnow
from app.core.errors import AppError, BadRequest
from app.expenses.models import Expense, ExpensePublic, Settlement, SettlementPublic
from app.expenses.service import expense_records
from app.itinerary.models import ItineraryItem
from app.itinerary.service import items_public
from app.participants.models import Participant, ParticipantPublic
from app.sync.models import Tombstone
from app.sync.versions import ENTITIES, Entity
from app.trips.models import MemberPublic, Role, Trip, TripMember, TripPublic
from app.users.models import User

MAX_WAIT_SECONDS = 30
_POLL_SECONDS = 0.5


class ResetRequired(AppError):
    """The client's copy cannot be brought up to date by changes: it must take a snapshot."""

    status_code, code, title = 410, "reset_required", "Gone"


@dataclass(frozen=True)
class Viewer:
    """Who is reading, and what that lets them see."""

    trip: Trip
    user_id: uuid.UUID
    role: Role

    @property
    def amounts_hidden(self) -> bool:
        return self.role == Role.VIEWER and self.trip.hide_amounts_from_viewers


@dataclass
class Change:
    entity: str
    id: uuid.UUID
    version: int
    op: str  # "upsert" or "delete"
    data: dict[str, Any] | None = None


@dataclass
class ChangeSet:
    changes: list[Change] = field(default_factory=list)

    def upsert(self, entity: str, row_id: uuid.UUID, version: int, data: Any) -> None:
        self.changes.append(Change(entity, row_id, version, "upsert", data.model_dump(mode="json")))

    def delete(self, entity: str, row_id: uuid.UUID, version: int) -> None:
        self.changes.append(Change(entity, row_id, version, "delete"))


# --- reading one kind of row ----------------------------------------------------------------

Loader = Callable[[Session, Viewer, Any, ChangeSet], None]


def _rows(session: Session, model: Any, trip_id: uuid.UUID, where: Any) -> Sequence[Any]:
    trip_column = model.id if model is Trip else model.trip_id
    return session.exec(select(model).where(trip_column == trip_id, where)).all()


class SyncedChecklist(SQLModel):
    """A checklist as synced: no counts, which the client derives from its items."""

    id: uuid.UUID
    kind: str
    title: str
    created_by: uuid.UUID | None
    created_at: datetime
    updated_at: datetime
    version: int


def _trips(session: Session, viewer: Viewer, where: Any, out: ChangeSet) -> None:
    for trip in _rows(session, Trip, viewer.trip.id, where):
        out.upsert("trip", trip.id, trip.version, TripPublic.of(trip, viewer.role))


def _members(session: Session, viewer: Viewer, where: Any, out: ChangeSet) -> None:
    rows = session.exec(
        select(TripMember, User)
        .join(User, col(User.id) == TripMember.user_id)
        .where(TripMember.trip_id == viewer.trip.id, where)
    ).all()
    for member, user in rows:
        out.upsert("member", user.id, member.version, MemberPublic.of(member, user))


def _participants(session: Session, viewer: Viewer, where: Any, out: ChangeSet) -> None:
    rows = session.exec(
        select(Participant, User.full_name)
        .outerjoin(User, col(User.id) == Participant.user_id)
        .where(Participant.trip_id == viewer.trip.id, where)
    ).all()
    members = set(
        session.exec(select(TripMember.user_id).where(TripMember.trip_id == viewer.trip.id)).all()
    )
    for participant, full_name in rows:
        data = ParticipantPublic.of(
            participant, account_name=full_name, is_member=participant.user_id in members
        )
        out.upsert("participant", participant.id, participant.version, data)


def _items(session: Session, viewer: Viewer, where: Any, out: ChangeSet) -> None:
    items = _rows(session, ItineraryItem, viewer.trip.id, where)
    for item, public in zip(
        items, items_public(session=session, trip_id=viewer.trip.id, items=items), strict=True
    ):
        out.upsert("item", item.id, item.version, public)


def _checklists(session: Session, viewer: Viewer, where: Any, out: ChangeSet) -> None:
    for checklist in _rows(session, Checklist, viewer.trip.id, where):
        data = SyncedChecklist.model_validate(checklist, from_attributes=True)
        out.upsert("checklist", checklist.id, checklist.version, data)


def _checklist_items(session: Session, viewer: Viewer, where: Any, out: ChangeSet) -> None:
    for item in _rows(session, ChecklistItem, viewer.trip.id, where):
        if item.private and item.created_by != viewer.user_id:
            out.delete("checklist_item", item.id, item.version)  # not theirs to see
        else:
            out.upsert("checklist_item", item.id, item.version, item_public(item))


def _expenses(session: Session, viewer: Viewer, where: Any, out: ChangeSet) -> None:
    expenses = _rows(session, Expense, viewer.trip.id, where)
    live = [expense for expense in expenses if expense.deleted_at is None]
    for expense in expenses:
        if expense.deleted_at is not None:
            out.delete("expense", expense.id, expense.version)
    base = viewer.trip.base_currency
    for record in expense_records(session=session, trip_id=viewer.trip.id, expenses=live):
        data = ExpensePublic.of(record, base_currency=base, hidden=viewer.amounts_hidden)
        out.upsert("expense", record.expense.id, record.expense.version, data)


def _settlements(session: Session, viewer: Viewer, where: Any, out: ChangeSet) -> None:
    base = viewer.trip.base_currency
    for settlement in _rows(session, Settlement, viewer.trip.id, where):
        if settlement.deleted_at is not None:
            out.delete("settlement", settlement.id, settlement.version)
        else:
            data = SettlementPublic.of(settlement, base_currency=base, hidden=viewer.amounts_hidden)
            out.upsert("settlement", settlement.id, settlement.version, data)


_LOADERS: dict[str, Loader] = {
    "trip": _trips,
    "member": _members,
    "participant": _participants,
    "item": _items,
    "checklist": _checklists,
    "checklist_item": _checklist_items,
    "expense": _expenses,
    "settlement": _settlements,
}
_ORDER = {entity.name: position for position, entity in enumerate(ENTITIES)}


# --- snapshot and changes -------------------------------------------------------------------


def _version_column(entity: Entity) -> Any:
    return col(entity.model.version)  # type: ignore[attr-defined]


def _trip_column(entity: Entity) -> Any:
    return col(entity.model.id if entity.model is Trip else entity.model.trip_id)  # type: ignore[attr-defined]


def _head(session: Session, trip_id: uuid.UUID) -> int:
    head = session.exec(select(Trip.head_version).where(Trip.id == trip_id)).one()
    return int(head)


def snapshot(*, session: Session, viewer: Viewer) -> tuple[int, list[Change]]:
    """Everything the viewer may see, and the version it is complete up to.

    The head is read first: each row is then at least as new as that version, and anything
    newer comes again through the changes feed, where applying it twice is harmless.
    """
    head = _head(session, viewer.trip.id)
    out = ChangeSet()
    for entity in ENTITIES:
        _LOADERS[entity.name](session, viewer, literal(True), out)
    live = [change for change in out.changes if change.op == "upsert"]
    return head, sorted(live, key=lambda c: (c.version, _ORDER[c.entity], c.id))


def _ensure_cursor_usable(session: Session, viewer: Viewer, since: int, head: int) -> None:
    trip = viewer.trip
    if since > head:
        raise BadRequest(
            f"Version {since} is ahead of the trip ({head}); it did not come from this server.",
            code="invalid_version",
        )
    if since == 0:
        return  # from scratch: every row is after 0
    if since < trip.pruned_version:
        raise ResetRequired(
            "Deletions this old are no longer kept; take a new snapshot.", code="cursor_expired"
        )
    membership = session.exec(
        select(TripMember.version).where(
            TripMember.trip_id == trip.id, TripMember.user_id == viewer.user_id
        )
    ).one()
    if membership > since or (viewer.role == Role.VIEWER and trip.access_version > since):
        raise ResetRequired(
            "What you may see in this trip changed; take a new snapshot.", code="access_changed"
        )


def _versions_after(trip_id: uuid.UUID, since: int) -> Any:
    """Every version after `since` that some row or tombstone of the trip carries."""
    return union_all(
        *(
            select(_version_column(entity).label("version")).where(
                _trip_column(entity) == trip_id, _version_column(entity) > since
            )
            for entity in ENTITIES
        ),
        select(col(Tombstone.version).label("version")).where(
            Tombstone.trip_id == trip_id, col(Tombstone.version) > since
        ),
    ).subquery()


def _cutoff(session: Session, trip_id: uuid.UUID, since: int, limit: int) -> tuple[int, bool]:
    """The last version a page of about `limit` changes reaches, and whether more remain.

    A page never splits a version: a transaction's changes arrive together.
    """
    versions = _versions_after(trip_id, since)
    first = session.exec(
        select(versions.c.version).order_by(versions.c.version).limit(limit + 1)
    ).all()
    if len(first) <= limit:
        return (first[-1] if first else since), False
    last = first[limit - 1]
    if first[limit] > last:
        return last, True
    beyond = session.exec(select(versions.c.version).where(versions.c.version > last).limit(1))
    return last, beyond.first() is not None


async def wait_for_change(
    *,
    session: Session,
    trip_id: uuid.UUID,
    since: int,
    seconds: float,
    sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
) -> None:
    """Return once the trip has moved past `since`, or after `seconds` (at most 30).

    Neither a worker thread nor a database connection is held while waiting: each poll is a
    short transaction run on the thread pool, and the waiting itself is on the event loop
    (`sleep`, which the route passes to also give back its database slot meanwhile).
    """
    deadline = time.monotonic() + min(seconds, MAX_WAIT_SECONDS)
    while time.monotonic() < deadline:
        head = await run_in_threadpool(_head, session, trip_id)
        await run_in_threadpool(session.commit)  # releases the connection while we sleep
        if head > since:
            return
        await sleep(_POLL_SECONDS)


def changes_since(
    *, session: Session, viewer: Viewer, since: int, limit: int
) -> tuple[int, bool, list[Change]]:
    """Changes after `since` in version order, the version they reach, and whether more remain."""
    head = _head(session, viewer.trip.id)
    _ensure_cursor_usable(session, viewer, since, head)
    upto, more = _cutoff(session, viewer.trip.id, since, limit)
    out = ChangeSet()
    for entity in ENTITIES:
        version = _version_column(entity)
        _LOADERS[entity.name](session, viewer, (version > since) & (version <= upto), out)
    for tombstone in session.exec(
        select(Tombstone).where(
            Tombstone.trip_id == viewer.trip.id,
            col(Tombstone.version) > since,
            col(Tombstone.version) <= upto,
        )
    ):
        out.delete(tombstone.entity, tombstone.entity_id, tombstone.version)
    changes = sorted(out.changes, key=lambda c: (c.version, _ORDER[c.entity], c.id))
    return (upto if more else max(upto, head)), more, changes


# --- the device's list of trips -------------------------------------------------------------


@dataclass(frozen=True)
class TripState:
    trip_id: uuid.UUID
    name: str
    role: Role
    version: int
    status: str  # new, changed, unchanged, reset


@dataclass(frozen=True)
class Removed:
    trip_id: uuid.UUID
    reason: str  # deleted, access_lost


def device_feed(
    *, session: Session, user_id: uuid.UUID, known: dict[uuid.UUID, int], issued_at: float | None
) -> tuple[bool, list[TripState], list[Removed]]:
    """Compare what a device last saw (`known`: trip → version) with what the user has now."""
    retention = timedelta(days=get_settings().SYNC_RETENTION_DAYS)
    too_old = issued_at is not None and utcnow().timestamp() - issued_at > retention.total_seconds()
    rows = session.exec(
        select(Trip, TripMember.role, TripMember.version)
        .join(TripMember, col(TripMember.trip_id) == Trip.id)
        .where(TripMember.user_id == user_id)
        .order_by(col(Trip.created_at), col(Trip.id))
    ).all()
    states = []
    for trip, role, membership_version in rows:
        seen = known.get(trip.id)
        if seen is None or too_old:
            status = "new" if seen is None else "reset"
        elif (
            seen < trip.pruned_version
            or membership_version > seen
            or (role == Role.VIEWER and trip.access_version > seen)
        ):
            status = "reset"
        else:
            status = "changed" if trip.head_version > seen else "unchanged"
        states.append(TripState(trip.id, trip.name, Role(role), trip.head_version, status))
    current = {state.trip_id for state in states}
    gone = [trip_id for trip_id in known if trip_id not in current]
    deleted = (
        set(
            session.exec(
                select(Tombstone.entity_id).where(
                    Tombstone.entity == "trip", col(Tombstone.entity_id).in_(gone)
                )
            ).all()
        )
        if gone
        else set()
    )
    removed = [Removed(t, "deleted" if t in deleted else "access_lost") for t in gone]
    return too_old, states, removed


def prune_tombstones(*, session: Session, now: datetime, limit: int) -> int:
    """Forget up to `limit` deletions older than SYNC_RETENTION_DAYS; return how many.

    Each trip's `pruned_version` rises to the newest version forgotten, in the same statement,
    so no client can pull past a gap without being told to take a snapshot.
    """
    cutoff = now - timedelta(days=get_settings().SYNC_RETENTION_DAYS)
    result = session.execute(
        text(
            "WITH pruned AS ("
            "  DELETE FROM sync_tombstones WHERE (trip_id, version, entity, entity_id) IN ("
            "    SELECT trip_id, version, entity, entity_id FROM sync_tombstones"
            "    WHERE deleted_at < :cutoff ORDER BY deleted_at LIMIT :limit"
            "    FOR UPDATE SKIP LOCKED"
            "  ) RETURNING trip_id, version"
            "), newest AS ("
            "  SELECT trip_id, max(version) AS version, count(*) AS rows FROM pruned"
            "  GROUP BY trip_id"
            "), raised AS ("
            "  UPDATE trips SET pruned_version = greatest(trips.pruned_version, newest.version)"
            "  FROM newest WHERE trips.id = newest.trip_id"
            ") SELECT coalesce(sum(rows), 0) FROM newest"
        ),
        {"cutoff": cutoff, "limit": limit},
    )
    return int(result.scalar_one())
