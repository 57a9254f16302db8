"""The sync feed: a trip's snapshot, its changes after a version, and a device's trip list.

Rows are read the way the caller may see them: private checklist items of others are sent as
deletions (so a copy that had one drops it), amounts are masked for viewers when the trip
hides them, deleted expenses and settlements are deletions.

The snapshot and the changes are written as JSON by PostgreSQL (app.core.json_sql), exactly
as their models would write them: a page is one statement, and no row becomes a Python
object on the way.
"""

import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from typing import Any

import anyio
from sqlalchemy import (
    BigInteger,
    Boolean,
    Select,
    Text,
    Uuid,
    bindparam,
    case,
    literal,
    text,
    true,
    union_all,
)
from sqlalchemy import select as select_columns  # any number of them (sqlmodel's: four)
from sqlmodel import Session, SQLModel, col, func, select
from starlette.concurrency import run_in_threadpool

from app.checklists.models import Checklist, ChecklistItem, ChecklistItemPublic
from app.core.config import get_settings
from app.core.db import utcnow
from app.core.errors import AppError, BadRequest
from app.core.json_sql import json_array, json_object, json_value
from app.expenses.models import (
    Expense,
    ExpensePayer,
    ExpensePublic,
    ExpenseRevision,
    ExpenseSplit,
    PayerPublic,
    Settlement,
    SettlementPublic,
    SplitPublic,
)
from app.itinerary.models import ItemParticipant, ItemPublic, ItineraryItem, Place
from app.participants.models import Participant, ParticipantPublic
from app.sync.models import ChangePublic, ChangesPublic, SnapshotPublic, Tombstone
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


# --- the feed, as JSON ----------------------------------------------------------------------
#
# Each kind of row is one SELECT of (version, position, id, source, change): `change` is the
# row's entry in the feed (a ChangePublic) as JSON text, `position` its kind's place in
# ENTITIES, and `source` puts a row before a tombstone of the same version, kind and id.
# A page aggregates them all in that order, in one statement. The statements are built once
# (they are large) and take the reader's values as parameters:
#   trip_id, user_id, role, base_currency; since and upto (changes) or version (snapshot).

Versions = Callable[[Any], Any]  # a version column → the condition its rows must meet
Reader = Callable[[Versions, bool, bool], Select[Any]]  # (versions, hidden, deletions)
_POSITION = {entity.name: position for position, entity in enumerate(ENTITIES)}
_ROW, _TOMBSTONE = 0, 1


def _trip_id() -> Any:
    return bindparam("trip_id", type_=Uuid)


class SyncedChecklist(SQLModel):
    """A checklist as synced: no counts, which the client derives from its items."""

    id: uuid.UUID
    kind: str
    title: str
    created_by: uuid.UUID | None
    created_at: datetime
    updated_at: datetime
    version: int


def _upsert(entity: str, row_id: Any, version: Any, data: Any) -> Any:
    return json_object(
        ChangePublic, entity=entity, id=row_id, version=version, op="upsert", data=data
    )


def _delete(entity: Any, row_id: Any, version: Any) -> Any:
    return json_object(
        ChangePublic, entity=entity, id=row_id, version=version, op="delete", data=None
    )


def _feed_rows(entity: str, row_id: Any, version: Any, change: Any) -> Select[Any]:
    return select_columns(
        col(version).label("version"),
        literal(_POSITION[entity]).label("position"),
        col(row_id).label("id"),
        literal(_ROW).label("source"),
        change.label("change"),
    )


def _amount(hidden: bool, column: Any) -> Any:
    """Amounts are null for viewers of a trip that hides them."""
    return None if hidden else column


def _trips(versions: Versions, hidden: bool, deletions: bool) -> Select[Any]:
    data = json_object(TripPublic, Trip, role=bindparam("role", type_=Text))
    change = _upsert("trip", Trip.id, Trip.version, data)
    return _feed_rows("trip", Trip.id, Trip.version, change).where(
        col(Trip.id) == _trip_id(), versions(Trip.version)
    )


def _members(versions: Versions, hidden: bool, deletions: bool) -> Select[Any]:
    data = json_object(
        MemberPublic,
        user_id=TripMember.user_id,
        email=User.email,
        full_name=User.full_name,
        role=TripMember.role,
        joined_at=TripMember.created_at,
        version=TripMember.version,
    )
    change = _upsert("member", TripMember.user_id, TripMember.version, data)
    return (
        _feed_rows("member", TripMember.user_id, TripMember.version, change)
        .join(User, col(User.id) == TripMember.user_id)
        .where(col(TripMember.trip_id) == _trip_id(), versions(TripMember.version))
    )


def _participants(versions: Versions, hidden: bool, deletions: bool) -> Select[Any]:
    is_member = (
        select(TripMember.user_id)
        .where(
            col(TripMember.trip_id) == Participant.trip_id,
            col(TripMember.user_id) == Participant.user_id,
        )
        .exists()
    )
    data = json_object(
        ParticipantPublic,
        Participant,
        # Members are shown with their account's name, guests with theirs.
        name=func.coalesce(User.full_name, Participant.name),
        is_guest=col(Participant.user_id).is_(None),
        is_member=is_member,
    )
    change = _upsert("participant", Participant.id, Participant.version, data)
    return (
        _feed_rows("participant", Participant.id, Participant.version, change)
        .outerjoin(User, col(User.id) == Participant.user_id)
        .where(col(Participant.trip_id) == _trip_id(), versions(Participant.version))
    )


def _items(versions: Versions, hidden: bool, deletions: bool) -> Select[Any]:
    item = ItineraryItem
    place = json_object(
        Place,
        name=item.place_name,
        address=func.coalesce(item.place_address, ""),
        latitude=item.latitude,
        longitude=item.longitude,
        external_id=item.place_external_id,
    )
    participant_ids = (
        select(
            json_array(
                json_value(ItemParticipant.participant_id),
                order_by=[ItemParticipant.participant_id],
            )
        )
        .where(
            col(ItemParticipant.trip_id) == item.trip_id,
            col(ItemParticipant.item_id) == item.id,
        )
        .scalar_subquery()
    )
    data = json_object(
        ItemPublic,
        item,
        place=case((col(item.place_name).is_not(None), place)),
        participant_ids=participant_ids,
    )
    change = _upsert("item", item.id, item.version, data)
    return _feed_rows("item", item.id, item.version, change).where(
        col(item.trip_id) == _trip_id(), versions(item.version)
    )


def _checklists(versions: Versions, hidden: bool, deletions: bool) -> Select[Any]:
    data = json_object(SyncedChecklist, Checklist)
    change = _upsert("checklist", Checklist.id, Checklist.version, data)
    return _feed_rows("checklist", Checklist.id, Checklist.version, change).where(
        col(Checklist.trip_id) == _trip_id(), versions(Checklist.version)
    )


def _checklist_items(versions: Versions, hidden: bool, deletions: bool) -> Select[Any]:
    item = ChecklistItem
    # Others' private items: sent as deletions, so a copy that had one drops it.
    private = col(item.private) & col(item.created_by).is_distinct_from(
        bindparam("user_id", type_=Uuid)
    )
    data = json_object(ChecklistItemPublic, item)
    change = case(
        (private, _delete("checklist_item", item.id, item.version)),
        else_=_upsert("checklist_item", item.id, item.version, data),
    )
    rows = _feed_rows("checklist_item", item.id, item.version, change).where(
        col(item.trip_id) == _trip_id(), versions(item.version)
    )
    return rows if deletions else rows.where(~private)


def _shares(
    shape: type[PayerPublic] | type[SplitPublic],
    table: type[ExpensePayer] | type[ExpenseSplit],
    revision: type[ExpenseRevision],
    hidden: bool,
) -> Any:
    """A revision's payers or splits as one JSON array, in participant order."""
    share = json_object(
        shape,
        table,
        amount_minor=_amount(hidden, table.amount_minor),
        base_amount_minor=_amount(hidden, table.base_amount_minor),
    )
    return (
        select(json_array(share, order_by=[table.participant_id]))
        .where(col(table.trip_id) == revision.trip_id, col(table.revision_id) == revision.id)
        .scalar_subquery()
    )


def _expenses(versions: Versions, hidden: bool, deletions: bool) -> Select[Any]:
    expense, revision = Expense, ExpenseRevision
    payers = _shares(PayerPublic, ExpensePayer, revision, hidden)
    splits = _shares(SplitPublic, ExpenseSplit, revision, hidden)
    data = json_object(
        ExpensePublic,
        revision,
        amount_minor=_amount(hidden, revision.amount_minor),
        base_currency=bindparam("base_currency", type_=Text),
        base_amount_minor=_amount(hidden, revision.base_amount_minor),
        payers=payers,
        splits=splits,
        id=expense.id,
        revision=revision.number,
        created_by=expense.created_by,
        created_at=expense.created_at,
        updated_at=expense.updated_at,
        version=expense.version,
    )
    deleted = col(expense.deleted_at).is_not(None)
    change = case(
        (deleted, _delete("expense", expense.id, expense.version)),
        else_=_upsert("expense", expense.id, expense.version, data),
    )
    current = (col(revision.trip_id) == expense.trip_id) & (
        col(revision.id) == expense.current_revision_id
    )
    # A live expense whose revision is missing (never so once committed) is left out, as ever.
    rows = (
        _feed_rows("expense", expense.id, expense.version, change)
        .outerjoin(revision, current)
        .where(
            col(expense.trip_id) == _trip_id(),
            versions(expense.version),
            deleted | col(revision.id).is_not(None),
        )
    )
    return rows if deletions else rows.where(~deleted)


def _settlements(versions: Versions, hidden: bool, deletions: bool) -> Select[Any]:
    settlement = Settlement
    data = json_object(
        SettlementPublic,
        settlement,
        amount_minor=_amount(hidden, settlement.amount_minor),
        base_currency=bindparam("base_currency", type_=Text),
        base_amount_minor=_amount(hidden, settlement.base_amount_minor),
    )
    deleted = col(settlement.deleted_at).is_not(None)
    change = case(
        (deleted, _delete("settlement", settlement.id, settlement.version)),
        else_=_upsert("settlement", settlement.id, settlement.version, data),
    )
    rows = _feed_rows("settlement", settlement.id, settlement.version, change).where(
        col(settlement.trip_id) == _trip_id(), versions(settlement.version)
    )
    return rows if deletions else rows.where(~deleted)


def _tombstones(versions: Versions) -> Select[Any]:
    return select_columns(
        col(Tombstone.version).label("version"),
        case(_POSITION, value=Tombstone.entity).label("position"),
        col(Tombstone.entity_id).label("id"),
        literal(_TOMBSTONE).label("source"),
        _delete(Tombstone.entity, Tombstone.entity_id, Tombstone.version).label("change"),
    ).where(col(Tombstone.trip_id) == _trip_id(), versions(Tombstone.version))


_READERS: dict[str, Reader] = {
    "trip": _trips,
    "member": _members,
    "participant": _participants,
    "item": _items,
    "checklist": _checklists,
    "checklist_item": _checklist_items,
    "expense": _expenses,
    "settlement": _settlements,
}


def _feed(versions: Versions, *, hidden: bool, deletions: bool) -> Any:
    """The rows (and, with `deletions`, tombstones) whose version meets `versions`, as a JSON
    array of changes in feed order: version, kind, id."""
    statements = [_READERS[entity.name](versions, hidden, deletions) for entity in ENTITIES]
    if deletions:
        statements.append(_tombstones(versions))
    rows = union_all(*statements).subquery("feed")
    order = (rows.c.version, rows.c.position, rows.c.id, rows.c.source)
    return select(json_array(rows.c.change, order_by=order)).scalar_subquery()


@cache
def _snapshot_document(hidden: bool) -> Select[Any]:
    document = json_object(
        SnapshotPublic,
        trip_id=_trip_id(),
        version=bindparam("version", type_=BigInteger),
        role=bindparam("role", type_=Text),
        rows=_feed(lambda _version: true(), hidden=hidden, deletions=False),
    )
    return select_columns(document)


@cache
def _changes_document(hidden: bool) -> Select[Any]:
    since, upto = bindparam("since", type_=BigInteger), bindparam("upto", type_=BigInteger)
    document = json_object(
        ChangesPublic,
        since=since,
        version=bindparam("version", type_=BigInteger),
        has_more=bindparam("has_more", type_=Boolean),
        changes=_feed(
            lambda version: (version > since) & (version <= upto), hidden=hidden, deletions=True
        ),
    )
    return select_columns(document)


def _document(session: Session, statement: Select[Any], viewer: Viewer, **values: Any) -> str:
    """Run one of the statements above for this reader: its one value is the document."""
    reader = {
        "trip_id": viewer.trip.id,
        "user_id": viewer.user_id,
        "role": viewer.role.value,
        "base_currency": viewer.trip.base_currency,
    }
    return str(session.execute(statement, {**reader, **values}).scalar_one())


# --- snapshot and changes -------------------------------------------------------------------


def _version_column(entity: Entity) -> Any:
    return col(entity.model.version)  # type: ignore[attr-defined]


def _trip_column(entity: Entity) -> Any:
    return col(entity.model.id if entity.model is Trip else entity.model.trip_id)  # type: ignore[attr-defined]


def _head(session: Session, trip_id: uuid.UUID) -> int:
    head = session.exec(select(Trip.head_version).where(Trip.id == trip_id)).one()
    return int(head)


def snapshot(*, session: Session, viewer: Viewer) -> str:
    """Everything the viewer may see, and the version it is complete up to: a SnapshotPublic,
    as JSON.

    The head is read first: each row is then at least as new as that version, and anything
    newer comes again through the changes feed, where applying it twice is harmless.
    """
    head = _head(session, viewer.trip.id)
    return _document(session, _snapshot_document(viewer.amounts_hidden), viewer, version=head)


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


def _versions_after(trip_id: uuid.UUID, since: int, limit: int) -> Any:
    """The first `limit` versions after `since` of each kind of row and of the tombstones.

    Each is read from its (trip_id, version) index and stops at `limit`: the first versions of
    the trip are among them, found without reading the rest of a large trip.
    """

    def first(version: Any, trip: Any) -> Any:
        return (
            select(version.label("version"))
            .where(trip == trip_id, version > since)
            .order_by(version)
            .limit(limit)
        )

    return union_all(
        *(first(_version_column(entity), _trip_column(entity)) for entity in ENTITIES),
        first(col(Tombstone.version), col(Tombstone.trip_id)),
    ).subquery()


def _cutoff(session: Session, trip_id: uuid.UUID, since: int, limit: int) -> tuple[int, bool]:
    """The last version a page of about `limit` changes reaches, and whether more remain.

    A page never splits a version: a transaction's changes arrive together.
    """
    versions = _versions_after(trip_id, since, limit + 1)
    first = session.exec(
        select(versions.c.version).order_by(versions.c.version).limit(limit + 1)
    ).all()
    if len(first) <= limit:
        return (first[-1] if first else since), False
    last = first[limit - 1]
    if first[limit] > last:
        return last, True
    beyond = _versions_after(trip_id, last, 1)
    return last, session.exec(select(beyond.c.version).limit(1)).first() is not None


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


def changes_since(*, session: Session, viewer: Viewer, since: int, limit: int) -> str:
    """Changes after `since` in version order, the version they reach, and whether more remain:
    a ChangesPublic, as JSON."""
    head = _head(session, viewer.trip.id)
    _ensure_cursor_usable(session, viewer, since, head)
    upto, more = _cutoff(session, viewer.trip.id, since, limit)
    return _document(
        session,
        _changes_document(viewer.amounts_hidden),
        viewer,
        since=since,
        upto=upto,
        version=upto if more else max(upto, head),
        has_more=more,
    )


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
