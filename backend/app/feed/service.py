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
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from typing import Any

from sqlalchemy import BigInteger, Boolean, Select, bindparam, case, literal, text, true, union_all
from sqlalchemy import select as select_columns  # any number of them (sqlmodel's: four)
from sqlmodel import Session, col, select

from app.core.columns import utcnow
from app.core.config import get_settings
from app.core.errors import AppError, BadRequest
from app.core.json_sql import json_array, json_object
from app.core.pagination import seal_json, unseal
from app.feed.models import ChangesPublic, SnapshotPublic
from app.sync import registry
from app.sync.feed_sql import TOMBSTONE, delete, role_param, trip_id_param
from app.sync.models import Tombstone
from app.sync.registry import Versions
from app.trips.models import Role, Trip, TripMember

MAX_WAIT_SECONDS = 30


class ResetRequired(AppError):
    """The client's copy cannot be brought up to date by changes: it must take a snapshot."""

    status_code, code, title = 410, "reset_required", "Gone"


@dataclass(frozen=True)
class Viewer:
    """Who is reading, and what that lets them see."""

    trip: Trip
    user_id: uuid.UUID
    role: Role
    # A share link's own option: amounts masked whatever the trip's setting (never unmasked).
    hide_amounts: bool = False

    @property
    def amounts_hidden(self) -> bool:
        return self.hide_amounts or self.trip.hides_amounts_from(self.role)


# --- the feed, as JSON ----------------------------------------------------------------------
#
# Each synced entity's reader (app.sync.registry, app.sync.feed_sql) is one SELECT of
# (version, position, id, source, change). A page aggregates them all in that order, in one
# statement. The statements are built once (they are large) and take the reader's values as
# parameters: trip_id, user_id, role, base_currency; since and upto (changes) or version
# (snapshot).


def _tombstones(versions: Versions) -> Select[Any]:
    positions = {entity.name: entity.position for entity in registry.entities()}
    return select_columns(
        col(Tombstone.version).label("version"),
        case(positions, value=Tombstone.entity).label("position"),
        col(Tombstone.entity_id).label("id"),
        literal(TOMBSTONE).label("source"),
        delete(Tombstone.entity, Tombstone.entity_id, Tombstone.version).label("change"),
    ).where(col(Tombstone.trip_id) == trip_id_param(), versions(Tombstone.version))


def _feed(versions: Versions, *, hidden: bool, deletions: bool) -> Any:
    """The rows (and, with `deletions`, tombstones) whose version meets `versions`, as a JSON
    array of changes in feed order: version, kind, id."""
    statements = [entity.reader(versions, hidden, deletions) for entity in registry.entities()]
    if deletions:
        statements.append(_tombstones(versions))
    rows = union_all(*statements).subquery("feed")
    order = (rows.c.version, rows.c.position, rows.c.id, rows.c.source)
    return select(json_array(rows.c.change, order_by=order)).scalar_subquery()


@cache
def _snapshot_document(hidden: bool) -> Select[Any]:
    document = json_object(
        SnapshotPublic,
        trip_id=trip_id_param(),
        version=bindparam("version", type_=BigInteger),
        role=role_param(),
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
        # A cursor from a server restored from an older backup, say: the copy cannot be
        # trusted to match anything here, so it is dropped like any other stale copy.
        raise ResetRequired(
            f"Version {since} is ahead of the trip ({head}): this copy did not come from the "
            "server as it is now; take a new snapshot.",
            code="cursor_ahead",
        )
    if since == 0:
        return  # from scratch: every row is after 0
    if since < trip.pruned_version:
        raise ResetRequired(
            "Deletions this old are no longer kept (or the database was restored from a "
            "backup since); take a new snapshot.",
            code="cursor_expired",
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
        *(first(entity.version_column, entity.trip_id_column) for entity in registry.entities()),
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


def usable_head(*, session: Session, viewer: Viewer, since: int) -> int:
    """The trip's head version, once `since` is known to be a cursor the changes can serve.

    Raises at once (400, 410) for a cursor that is not: a long poll fails before it waits.
    """
    head = _head(session, viewer.trip.id)
    _ensure_cursor_usable(session, viewer, since, head)
    return head


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


_DEVICE_CURSOR_SCOPE = "sync-feed"


def device_cursor(user_id: uuid.UUID, versions: dict[uuid.UUID, int]) -> str:
    """What a device has been told (trip → version), now, as an opaque cursor of this user.

    The JSON is written here rather than by json.dumps (a third of the cost): every event of
    every open stream carries one of these (app.feed.events). Ids and versions need no escaping,
    and a float's repr is its JSON.
    """
    trips = ",".join(f'"{trip_id}":{int(version)}' for trip_id, version in versions.items())
    payload = f'{{"at":{time.time()!r},"trips":{{{trips}}}}}'
    return seal_json(payload, f"{_DEVICE_CURSOR_SCOPE}:{user_id}")


def read_device_cursor(user_id: uuid.UUID, cursor: str) -> tuple[dict[uuid.UUID, int], float]:
    """The versions a cursor of this user carries, and when it was issued; 400 otherwise."""
    payload = unseal(cursor, f"{_DEVICE_CURSOR_SCOPE}:{user_id}")
    try:
        issued_at = float(payload["at"])
        known = {uuid.UUID(trip): int(version) for trip, version in payload["trips"].items()}
    except (KeyError, TypeError, ValueError, AttributeError):
        raise BadRequest("The cursor is malformed.", code="invalid_cursor") from None
    return known, issued_at


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
            seen > trip.head_version  # from a server since restored from an older backup
            or seen < trip.pruned_version
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
    # Trip by trip: each statement locks and writes within one trip (on Citus, one shard).
    trips = session.exec(
        select(Tombstone.trip_id).where(col(Tombstone.deleted_at) < cutoff).distinct().limit(limit)
    ).all()
    pruned = 0
    for trip_id in trips:
        if pruned >= limit:
            break
        pruned += int(
            session.execute(
                _PRUNE_TRIP, {"trip_id": trip_id, "cutoff": cutoff, "limit": limit - pruned}
            ).scalar_one()
        )
    return pruned


_PRUNE_TRIP = text(
    "WITH pruned AS ("
    "  DELETE FROM sync_tombstones WHERE trip_id = :trip_id"
    "  AND (trip_id, version, entity, entity_id) IN ("
    "    SELECT trip_id, version, entity, entity_id FROM sync_tombstones"
    "    WHERE trip_id = :trip_id AND deleted_at < :cutoff ORDER BY deleted_at LIMIT :limit"
    "    FOR UPDATE SKIP LOCKED"
    "  ) RETURNING version"
    "), raised AS ("
    "  UPDATE trips SET pruned_version = greatest(pruned_version, newest.version)"
    "  FROM (SELECT max(version) AS version FROM pruned) AS newest"
    "  WHERE trips.id = :trip_id AND newest.version IS NOT NULL"
    ") SELECT count(*) FROM pruned"
)
