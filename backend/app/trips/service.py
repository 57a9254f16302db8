"""Trips and memberships: every query is scoped to what the caller may see."""

import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

from sqlalchemy import Exists, bindparam, func, tuple_
from sqlalchemy.orm import aliased
from sqlmodel import Session, col, select

from app.core.columns import utcnow
from app.core.errors import Blocked, Blocker, Conflict, Forbidden, NotFound, Unprocessable
from app.core.json_sql import (
    PAGE_LIMIT,
    Prepared,
    json_object,
    page_statement,
    prepared,
    read_page,
)
from app.core.pagination import PageRequest, Position, keyset_page, split_page
from app.core.preconditions import ExpectedVersion, ensure_version
from app.sync.client_ids import Created, find_existing, id_taken, replay
from app.sync.live import AccessChange, announce_access
from app.sync.versions import claim_version, claim_version_if
from app.trips import hooks
from app.trips.models import (
    MemberPublic,
    MembershipExported,
    Role,
    Trip,
    TripBase,
    TripCreate,
    TripMember,
    TripPublic,
    TripUpdate,
)
from app.users import export
from app.users import hooks as user_hooks
from app.users import service as user_service
from app.users.models import User, UserSession


def trip_not_found() -> NotFound:
    return NotFound("Trip not found.", code="trip_not_found")


def _replay_trip(session: Session, trip: Trip, data: TripCreate, user: User) -> Created[TripPublic]:
    role = session.exec(
        select(TripMember.role).where(TripMember.trip_id == trip.id, TripMember.user_id == user.id)
    ).first()
    if role is None:
        raise id_taken()  # someone else's trip: say nothing about it
    public = TripPublic.of(trip, Role(role))
    fields = set(TripBase.model_fields)
    same = data.model_dump(include=fields) == trip.model_dump(include=fields)
    return replay(public, version=trip.version, same_content=same, current=lambda: public)


def create_trip(*, session: Session, owner: User, data: TripCreate) -> Created[TripPublic]:
    """A new trip with the caller as owner, or, for a client id seen before, a replay."""
    if data.id is not None:
        existing = find_existing(session, Trip, trip_id=data.id, row_id=data.id)
        if existing is not None:
            return _replay_trip(session, existing, data, owner)
    trip = Trip.model_validate(data.model_dump(exclude={"id"}), update={"created_by": owner.id})
    if data.id is not None:
        trip.id = data.id
    session.add(trip)
    session.flush()  # the membership row refers to the trip
    session.add(TripMember(trip_id=trip.id, user_id=owner.id, role=Role.OWNER))
    hooks.member_joined(session=session, trip_id=trip.id, user=owner)
    announce_access(session, trip.id, AccessChange.ADDED, owner.id)  # the owner's other devices
    hooks.happened(
        session=session,
        trip_id=trip.id,
        actor_id=owner.id,
        action="trip.created",
        object_type="trip",
        object_id=trip.id,
        summary=trip.name,
    )
    session.flush()
    return Created(TripPublic.of(trip, Role.OWNER))


def get_trip_for_member(
    *, session: Session, trip_id: uuid.UUID, user_id: uuid.UUID
) -> tuple[Trip, Role]:
    """The trip and the caller's role; a trip the caller is not in does not exist for them."""
    row = session.exec(
        select(Trip, TripMember.role)
        .join(TripMember, col(TripMember.trip_id) == Trip.id)
        .where(Trip.id == trip_id, TripMember.user_id == user_id)
    ).first()
    if row is None:
        raise trip_not_found()
    trip, role = row
    return trip, Role(role)


def _is_member(trip_id: uuid.UUID, user_id: uuid.UUID) -> Exists:
    return (
        select(TripMember.user_id)
        .where(TripMember.trip_id == trip_id, TripMember.user_id == user_id)
        .exists()
    )


def with_member_access(statement: Any, trip_id: Any, user_id: Any, session_id: Any) -> Any:
    """`statement` over the trip, the caller's membership, the caller and their session, for
    a caller who is a member of `trip_id` in the live session `session_id` (values, or bind
    parameters of a statement built once): the one access rule of everything in a trip.
    Whether the account is still active is `User.is_active`, for the caller to tell 401."""
    return (
        statement.select_from(Trip)
        .join(TripMember, col(TripMember.trip_id) == Trip.id)
        .join(User, col(User.id) == TripMember.user_id)
        .join(UserSession, col(UserSession.user_id) == User.id)
        .where(
            col(Trip.id) == trip_id,
            col(TripMember.user_id) == user_id,
            col(UserSession.id) == session_id,
        )
    )


# The bind parameters of a statement that checks access to one trip (`caller_parameters`).
CALLER = ("trip_id", "user_id", "session_id")


def caller_parameters() -> tuple[Any, Any, Any]:
    return tuple(bindparam(name) for name in CALLER)  # type: ignore[return-value]


def find_member_access(
    *, session: Session, trip_id: uuid.UUID, user_id: uuid.UUID, session_id: uuid.UUID, lock: bool
) -> tuple[Trip, Role, User] | None:
    """The trip, the caller's role and the caller, in one query; None for a non-member, and
    for a caller whose session (`session_id`, app.users.sessions) has ended.

    With `lock` (writes), the trip row is locked first by claiming its next version, and
    only when the caller is a member at that moment; the trip and the role are then read
    afresh, after the lock: an owner demoted by a write that held the lock is no longer
    one. Non-members lock nothing.
    """
    if lock and claim_version_if(session, trip_id, _is_member(trip_id, user_id)) is None:
        return None
    statement = with_member_access(
        select(Trip, TripMember.role, User), trip_id, user_id, session_id
    )
    if lock:
        statement = statement.execution_options(populate_existing=True)
    row = session.exec(statement).first()
    if row is None:
        return None
    trip, role, user = row
    return trip, Role(role), user


@cache
def trip_document() -> Prepared:
    document = json_object(TripPublic, Trip, role=TripMember.role)
    statement = select(col(User.is_active), document, col(Trip.version))
    return prepared(with_member_access(statement, *caller_parameters()))


@dataclass(frozen=True)
class TripDocument:
    """A trip as TripPublic's JSON, written by PostgreSQL, and its version (the ETag)."""

    active: bool  # the caller's account (a deactivated one gets 401)
    json: bytes
    version: int


def read_trip_document(session: Session, caller: Mapping[str, str]) -> TripDocument | None:
    """GET /trips/{id} in one statement: None where find_member_access finds nothing."""
    row = trip_document().execute(session, caller)
    if row is None:
        return None
    active, document, version = row
    return TripDocument(active, document.encode(), version)


def _my_trips_after(after: bool) -> Any:
    rows: Any = (
        select(
            json_object(TripPublic, Trip, role=TripMember.role).label("doc"),
            col(Trip.created_at).label("sort_key"),
            col(Trip.id).label("id"),
        )
        .join(TripMember, col(TripMember.trip_id) == Trip.id)
        .where(col(TripMember.user_id) == bindparam("user_id"))
        .order_by(col(Trip.created_at).desc(), col(Trip.id).desc())
        .limit(bindparam("rows"))
    )
    if after:
        position = tuple_(bindparam("after_key"), bindparam("after_id"))
        rows = rows.where(tuple_(col(Trip.created_at), col(Trip.id)) < position)
    return rows


@cache
def my_trips_page(after: bool) -> Prepared:
    access = select(
        user_service.signed_in(bindparam("user_id"), bindparam("session_id")).label("allowed")
    )
    return page_statement(_my_trips_after(after), access, ["sort_key DESC", "id DESC"])


def read_my_trips_page(
    *, session: Session, user_id: uuid.UUID, session_id: uuid.UUID, page: PageRequest
) -> bytes | None:
    """GET /trips as its JSON body, in the statement that checks the caller's session
    (app.users.service.signed_in): newest first, by keyset on (created_at, id). None once
    the session has ended or the account is deactivated."""
    values: dict[str, Any] = {
        "user_id": str(user_id),
        "session_id": str(session_id),
        "rows": page.limit + 1,
        PAGE_LIMIT: page.limit,
    }
    if page.after is not None:
        values |= {"after_key": page.after.sort_key, "after_id": str(page.after.id)}
    read = read_page(my_trips_page(page.after is not None), session, values)
    return read.body(page) if read.allowed else None


@dataclass(frozen=True)
class TripUpdated:
    trip: Trip
    # Itinerary items whose day fell outside new dates, now unscheduled (never deleted).
    unscheduled_item_ids: list[uuid.UUID]


def update_trip(
    *,
    session: Session,
    trip: Trip,
    role: Role,
    data: TripUpdate,
    actor_id: uuid.UUID,
    expected: ExpectedVersion,
) -> TripUpdated:
    """Apply the changes to the trip (locked by the caller), if it is still at `expected`."""
    ensure_version(trip, expected, lambda: TripPublic.of(trip, role))
    changes = data.model_dump(exclude_unset=True)
    if changes.get("base_currency", trip.base_currency) != trip.base_currency:
        lock_trip(session, trip.id)  # no ledger entry can be added until this commits
        hooks.base_currency_changing(session=session, trip_id=trip.id)
    hides_amounts = trip.hide_amounts_from_viewers
    for field, value in changes.items():
        setattr(trip, field, value)
    if trip.hide_amounts_from_viewers != hides_amounts:
        # Viewers' copies were made under the old rule: they must take a new snapshot.
        trip.access_version = claim_version(session, trip.id)
        announce_access(session, trip.id, AccessChange.VISIBILITY_CHANGED)
    if not trip.is_valid_dates():
        raise Unprocessable(
            "end_date must not be before start_date, and a trip lasts at most a year.",
            code="invalid_dates",
        )
    trip.updated_at = utcnow()
    session.add(trip)
    if changes:
        hooks.happened(
            session=session,
            trip_id=trip.id,
            actor_id=actor_id,
            action="trip.updated",
            object_type="trip",
            object_id=trip.id,
            summary=", ".join(sorted(changes)),
        )
    # The UPDATE locks the trip row: itinerary writers (who share-lock it) wait, so no item
    # lands on a removed day between here and the commit.
    session.flush()
    unscheduled: list[uuid.UUID] = []
    if {"start_date", "end_date"} & changes.keys():
        moved = hooks.dates_changed(
            session=session, trip_id=trip.id, start_date=trip.start_date, end_date=trip.end_date
        )
        unscheduled = [item_id for item_ids in moved for item_id in item_ids]
    if unscheduled:
        hooks.happened(
            session=session,
            trip_id=trip.id,
            actor_id=actor_id,
            action="trip.items_unscheduled",
            object_type="trip",
            object_id=trip.id,
            summary=f"{len(unscheduled)} item(s) outside the new dates moved to unscheduled",
        )
        session.flush()
    return TripUpdated(trip=trip, unscheduled_item_ids=unscheduled)


def delete_trip(*, session: Session, trip: Trip, expected: ExpectedVersion) -> None:
    ensure_version(trip, expected, lambda: TripPublic.of(trip, Role.OWNER))
    session.delete(trip)
    session.flush()
    announce_access(session, trip.id, AccessChange.DELETED)


# --- members -------------------------------------------------------------------------------


def lock_trip(session: Session, trip_id: uuid.UUID) -> None:
    """Lock the trip row for this transaction by claiming its next version (app.sync.versions).

    Every write in a trip does this first, so writers queue in one place: membership rules
    (the last owner) cannot be raced, and versions follow commit order.
    """
    claim_version(session, trip_id)


def _member(session: Session, trip_id: uuid.UUID, user_id: uuid.UUID) -> TripMember:
    member = session.get(TripMember, (trip_id, user_id))
    if member is None:
        raise NotFound("This user is not a member of the trip.", code="member_not_found")
    return member


def _other_owners(session: Session, trip_id: uuid.UUID, user_id: uuid.UUID) -> int:
    return session.exec(
        select(func.count())
        .select_from(TripMember)
        .where(
            TripMember.trip_id == trip_id,
            TripMember.role == Role.OWNER,
            TripMember.user_id != user_id,
        )
    ).one()


def _ensure_owner_remains(session: Session, member: TripMember) -> None:
    if member.role == Role.OWNER and _other_owners(session, member.trip_id, member.user_id) == 0:
        raise Conflict(
            "A trip must keep at least one owner: make someone else owner first.",
            code="last_owner",
        )


def list_members(
    *, session: Session, trip_id: uuid.UUID, page: PageRequest
) -> tuple[list[tuple[TripMember, User]], Position | None]:
    """Members in the order they joined, by keyset on (created_at, user_id)."""
    statement = (
        select(TripMember, User)
        .join(User, col(User.id) == TripMember.user_id)
        .where(TripMember.trip_id == trip_id)
    )
    statement = keyset_page(statement, page, TripMember.created_at, TripMember.user_id)
    rows = session.exec(statement).all()
    return split_page(
        list(rows), page.limit, lambda row: Position(row[0].created_at, row[0].user_id)
    )


def join_trip(
    *, session: Session, trip_id: uuid.UUID, user: User, role: Role, actor_id: uuid.UUID
) -> TripMember:
    """Make `user` a member (the caller holds the trip lock and checked they are not one)."""
    member = TripMember(trip_id=trip_id, user_id=user.id, role=role)
    session.add(member)
    hooks.member_joined(session=session, trip_id=trip_id, user=user)
    announce_access(session, trip_id, AccessChange.ADDED, user.id)
    hooks.happened(
        session=session,
        trip_id=trip_id,
        actor_id=actor_id,
        action="member.added",
        object_type="user",
        object_id=user.id,
        summary=f"{user.full_name} as {role}",
    )
    session.flush()
    return member


def _ensure_member_version(session: Session, member: TripMember, expected: ExpectedVersion) -> None:
    ensure_version(
        member, expected, lambda: MemberPublic.of(member, session.get_one(User, member.user_id))
    )


def change_role(
    *,
    session: Session,
    trip_id: uuid.UUID,
    user_id: uuid.UUID,
    role: Role,
    actor_id: uuid.UUID,
    expected: ExpectedVersion,
) -> MemberPublic:
    lock_trip(session, trip_id)
    member = _member(session, trip_id, user_id)
    _ensure_member_version(session, member, expected)
    if role != Role.OWNER:
        _ensure_owner_remains(session, member)
    member.role = role
    session.add(member)
    announce_access(session, trip_id, AccessChange.ROLE_CHANGED, user_id)
    hooks.happened(
        session=session,
        trip_id=trip_id,
        actor_id=actor_id,
        action="member.role_changed",
        object_type="user",
        object_id=user_id,
        summary=str(role),
    )
    session.flush()
    return MemberPublic.of(member, session.get_one(User, user_id))


def remove_member(
    *,
    session: Session,
    trip_id: uuid.UUID,
    user_id: uuid.UUID,
    actor_id: uuid.UUID,
    actor_role: Role,
    expected: ExpectedVersion,
) -> None:
    """An owner removes anyone; any member may remove themselves (leave the trip)."""
    if actor_role != Role.OWNER and user_id != actor_id:
        raise Forbidden("Only an owner can remove other members.", code="owner_required")
    lock_trip(session, trip_id)
    member = _member(session, trip_id, user_id)
    _ensure_member_version(session, member, expected)
    _ensure_owner_remains(session, member)
    session.delete(member)
    announce_access(session, trip_id, AccessChange.REMOVED, user_id)
    action = "member.left" if user_id == actor_id else "member.removed"
    hooks.happened(
        session=session,
        trip_id=trip_id,
        actor_id=actor_id,
        action=action,
        object_type="user",
        object_id=user_id,
    )
    session.flush()


def transfer_ownership(
    *, session: Session, trip_id: uuid.UUID, from_user_id: uuid.UUID, to_user_id: uuid.UUID
) -> None:
    """The target member becomes an owner and the caller an editor, in one transaction."""
    if from_user_id == to_user_id:
        raise Conflict("You already own this trip.", code="already_owner")
    lock_trip(session, trip_id)
    target = session.get(TripMember, (trip_id, to_user_id))
    if target is None:
        # The trip (the URL) exists; what the body names does not: 422, not 404.
        raise Unprocessable("The new owner must be a member of the trip.", code="member_not_found")
    target.role = Role.OWNER
    current = _member(session, trip_id, from_user_id)
    current.role = Role.EDITOR
    session.add_all([target, current])
    for user_id in (to_user_id, from_user_id):
        announce_access(session, trip_id, AccessChange.ROLE_CHANGED, user_id)
    hooks.happened(
        session=session,
        trip_id=trip_id,
        actor_id=from_user_id,
        action="trip.ownership_transferred",
        object_type="user",
        object_id=to_user_id,
    )
    session.flush()


# --- account deletion ------------------------------------------------------------------------


def _trips_of_member(session: Session, user_id: uuid.UUID) -> list[uuid.UUID]:
    # In id order: an account's trips are always locked in the same order.
    return list(
        session.exec(
            select(TripMember.trip_id)
            .where(TripMember.user_id == user_id)
            .order_by(col(TripMember.trip_id))
        ).all()
    )


def refuse_deleting_a_sole_owner(*, session: Session, user: User) -> None:
    """An account that is the only owner of a trip cannot be deleted: 409 listing the trips.

    Each of the account's trips is locked first, so no co-owner can leave between this
    check and the end of the deletion.
    """
    for trip_id in _trips_of_member(session, user.id):
        lock_trip(session, trip_id)
    other_owner = aliased(TripMember)
    sole = session.exec(
        select(Trip.id, Trip.name)
        .join(TripMember, col(TripMember.trip_id) == Trip.id)
        .where(
            TripMember.user_id == user.id,
            TripMember.role == Role.OWNER,
            ~select(other_owner.user_id)
            .where(
                other_owner.trip_id == Trip.id,
                other_owner.role == Role.OWNER,
                other_owner.user_id != user.id,
            )
            .exists(),
        )
        .order_by(col(Trip.created_at), col(Trip.id))
    ).all()
    if sole:
        raise Blocked(
            f"You are the only owner of {len(sole)} trip(s), listed in `blocking`: make another "
            "member owner (POST /trips/{id}/transfer-ownership) or delete each trip first.",
            code="sole_owner",
            blocking=[Blocker(type="trip", id=trip_id, name=name) for trip_id, name in sole],
        )


def end_memberships_of_deleted_account(*, session: Session, user: User) -> None:
    """The account leaves every trip, as a removed member does: each trip gets a new
    version, the membership's tombstone, an activity entry, and the account's live streams
    are told their access is gone."""
    for trip_id in _trips_of_member(session, user.id):
        lock_trip(session, trip_id)
        session.delete(_member(session, trip_id, user.id))
        announce_access(session, trip_id, AccessChange.REMOVED, user.id)
        hooks.happened(
            session=session,
            trip_id=trip_id,
            actor_id=user.id,
            action="member.account_deleted",
            object_type="user",
            object_id=user.id,
        )
    session.flush()


def exported_memberships(session: Session, user: User) -> Iterator[MembershipExported]:
    """The account's memberships, for its export: the trip's name and nothing of the others."""
    rows = session.exec(
        export.streamed(
            select(TripMember.trip_id, Trip.name, TripMember.role, TripMember.created_at)
            .join(Trip, col(Trip.id) == TripMember.trip_id)
            .where(TripMember.user_id == user.id)
            .order_by(col(TripMember.created_at), col(TripMember.trip_id))
        )
    )
    for trip_id, name, role, joined_at in rows:
        yield MembershipExported(
            trip_id=trip_id, trip_name=name, role=Role(role), joined_at=joined_at
        )


export.register(
    export.ExportSection(
        "memberships",
        MembershipExported,
        exported_memberships,
        "The trips the account is a member of, with its role.",
    )
)
user_hooks.account_deletable.subscribe(refuse_deleting_a_sole_owner)
user_hooks.account_deleting.subscribe(end_memberships_of_deleted_account)
