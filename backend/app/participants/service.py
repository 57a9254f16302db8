"""Participants: members get one on joining; guests are added by name and can be claimed."""

import uuid
from collections.abc import Collection, Iterator

from sqlalchemy import Column, exists
from sqlmodel import Session, SQLModel, and_, col, select

from app.activity.service import record_activity
from app.core.errors import Conflict, NotFound, Unprocessable
from app.core.pagination import PageRequest, Position, keyset_page, split_page
from app.core.preconditions import ExpectedVersion, ensure_version
from app.participants.models import Participant, ParticipantExported, ParticipantPublic
from app.sync.client_ids import Created, find_existing, replay
from app.sync.versions import claim_version
from app.trips import hooks as trip_hooks
from app.trips.models import Trip, TripMember
from app.users import export
from app.users import hooks as user_hooks
from app.users.models import FORMER_MEMBER_NAME, User


def ensure_participant_for_member(
    *, session: Session, trip_id: uuid.UUID, user: User
) -> Participant:
    """The member's participant, created on first join and reused if they join again."""
    participant = session.exec(
        select(Participant).where(Participant.trip_id == trip_id, Participant.user_id == user.id)
    ).first()
    if participant is None:
        participant = Participant(trip_id=trip_id, user_id=user.id, name=user.full_name)
        session.add(participant)
        session.flush()
    return participant


def get_participant(
    *, session: Session, trip_id: uuid.UUID, participant_id: uuid.UUID
) -> Participant:
    participant = session.get(Participant, (trip_id, participant_id))
    if participant is None:
        raise NotFound("Participant not found in this trip.", code="participant_not_found")
    return participant


def require_participants_in_trip(
    *, session: Session, trip_id: uuid.UUID, participant_ids: Collection[uuid.UUID]
) -> None:
    """Refuse references (in a request body) to anyone who is not a participant of this trip."""
    if not participant_ids:
        return
    found = session.exec(
        select(Participant.id).where(
            Participant.trip_id == trip_id, col(Participant.id).in_(participant_ids)
        )
    ).all()
    unknown = set(participant_ids) - set(found)
    if unknown:
        raise Unprocessable(
            "Not a participant of this trip: " + ", ".join(sorted(map(str, unknown))),
            code="participant_not_in_trip",
        )


def participant_public(*, session: Session, participant: Participant) -> ParticipantPublic:
    """One participant as listed: a member's under their account's name."""
    if participant.user_id is None:
        return ParticipantPublic.of(participant, account_name=None, is_member=False)
    user = session.get_one(User, participant.user_id)
    is_member = session.get(TripMember, (participant.trip_id, participant.user_id)) is not None
    return ParticipantPublic.of(participant, account_name=user.full_name, is_member=is_member)


def _get_guest(
    session: Session,
    trip_id: uuid.UUID,
    participant_id: uuid.UUID,
    expected: ExpectedVersion,
) -> Participant:
    """The guest, if it is still at the version the caller expects (checked before the kind)."""
    participant = get_participant(session=session, trip_id=trip_id, participant_id=participant_id)
    ensure_version(
        participant,
        expected,
        lambda: participant_public(session=session, participant=participant),
    )
    if participant.user_id is not None:
        raise Conflict("This participant is a member, not a guest.", code="not_a_guest")
    return participant


def _referencing_columns() -> list[tuple[Column[uuid.UUID], Column[uuid.UUID]]]:
    """(trip_id, participant column) of every table that points at a participant.

    Found from the metadata, so new tables are covered without touching this module.
    """
    return [
        (key.parent.table.c.trip_id, key.parent)
        for table in SQLModel.metadata.sorted_tables
        for key in table.foreign_keys
        if key.column.table.name == Participant.__tablename__ and key.column.name == "id"
    ]


def has_history(*, session: Session, trip_id: uuid.UUID, participant_id: uuid.UUID) -> bool:
    """Whether anything (expenses, shares, items...) refers to this participant."""
    # Filtering on trip_id too lets each check use the table's (trip_id, ...) index.
    return any(
        session.exec(select(exists().where(trip_column == trip_id, column == participant_id))).one()
        for trip_column, column in _referencing_columns()
    )


def list_participants(
    *, session: Session, trip_id: uuid.UUID, page: PageRequest
) -> tuple[list[ParticipantPublic], Position | None]:
    """Members and guests in the order they were added, by keyset on (created_at, id)."""
    statement = (
        select(Participant, User.full_name, TripMember.user_id)
        .outerjoin(User, col(User.id) == Participant.user_id)
        .outerjoin(
            TripMember,
            and_(
                col(TripMember.trip_id) == Participant.trip_id,
                col(TripMember.user_id) == Participant.user_id,
            ),
        )
        .where(Participant.trip_id == trip_id)
    )
    statement = keyset_page(statement, page, Participant.created_at, Participant.id)
    rows = session.exec(statement).all()
    paged, last = split_page(rows, page.limit, lambda row: Position(row[0].created_at, row[0].id))
    return [
        ParticipantPublic.of(
            participant, account_name=full_name, is_member=member_user_id is not None
        )
        for participant, full_name, member_user_id in paged
    ], last


def add_guest(
    *,
    session: Session,
    trip_id: uuid.UUID,
    name: str,
    actor_id: uuid.UUID,
    guest_id: uuid.UUID | None = None,
) -> Created[ParticipantPublic]:
    """A new guest; with a client-chosen id seen before, a replay (or a conflict)."""
    if guest_id is not None:
        existing = find_existing(session, Participant, trip_id=trip_id, row_id=guest_id)
        if existing is not None:
            public = participant_public(session=session, participant=existing)
            same = existing.user_id is None and existing.name == name
            return replay(
                public, version=existing.version, same_content=same, current=lambda: public
            )
    guest = Participant(trip_id=trip_id, name=name)
    if guest_id is not None:
        guest.id = guest_id
    session.add(guest)
    session.flush()
    record_activity(
        session=session,
        trip_id=trip_id,
        actor_id=actor_id,
        action="guest.added",
        object_type="participant",
        object_id=guest.id,
        summary=name,
    )
    return Created(participant_public(session=session, participant=guest))


def rename_guest(
    *,
    session: Session,
    trip_id: uuid.UUID,
    participant_id: uuid.UUID,
    name: str,
    actor_id: uuid.UUID,
    expected: ExpectedVersion,
) -> ParticipantPublic:
    guest = _get_guest(session, trip_id, participant_id, expected)
    guest.name = name
    session.add(guest)
    record_activity(
        session=session,
        trip_id=trip_id,
        actor_id=actor_id,
        action="guest.renamed",
        object_type="participant",
        object_id=guest.id,
        summary=name,
    )
    session.flush()  # stamps the new version
    return participant_public(session=session, participant=guest)


def delete_guest(
    *,
    session: Session,
    trip_id: uuid.UUID,
    participant_id: uuid.UUID,
    actor_id: uuid.UUID,
    expected: ExpectedVersion,
) -> None:
    guest = _get_guest(session, trip_id, participant_id, expected)
    if has_history(session=session, trip_id=trip_id, participant_id=guest.id):
        raise Conflict(
            "This guest appears in the trip's records and cannot be removed.",
            code="participant_has_history",
        )
    session.delete(guest)
    record_activity(
        session=session,
        trip_id=trip_id,
        actor_id=actor_id,
        action="guest.removed",
        object_type="participant",
        object_id=participant_id,
        summary=guest.name,
    )


def claim_guest(
    *,
    session: Session,
    trip_id: uuid.UUID,
    participant_id: uuid.UUID,
    user: User,
    expected: ExpectedVersion,
) -> ParticipantPublic:
    """The member becomes this guest: everything recorded for the guest is now theirs."""
    session.exec(select(Participant.id).where(Participant.trip_id == trip_id).with_for_update())
    guest = _get_guest(session, trip_id, participant_id, expected)
    own = session.exec(
        select(Participant).where(Participant.trip_id == trip_id, Participant.user_id == user.id)
    ).first()
    if own is not None:
        if has_history(session=session, trip_id=trip_id, participant_id=own.id):
            raise Conflict(
                "You already have records in this trip, so a guest cannot be merged in.",
                code="participant_has_history",
            )
        session.delete(own)
        session.flush()
    guest.user_id = user.id
    session.add(guest)
    session.flush()
    record_activity(
        session=session,
        trip_id=trip_id,
        actor_id=user.id,
        action="guest.claimed",
        object_type="participant",
        object_id=guest.id,
        summary=guest.name,
    )
    return participant_public(session=session, participant=guest)


def keep_deleted_accounts_participants_as_guests(*, session: Session, user: User) -> None:
    """In every trip the account was ever in, its participant becomes a guest named
    FORMER_MEMBER_NAME: expenses, shares and settlements stay theirs, so every balance still
    sums to zero, and nothing links them to the account any more. A participant nothing
    refers to is simply removed."""
    participants = session.exec(
        select(Participant)
        .where(Participant.user_id == user.id)
        .order_by(col(Participant.trip_id), col(Participant.id))
    ).all()
    for participant in participants:
        claim_version(session, participant.trip_id)  # the trip's lock first, in trip order
        if has_history(session=session, trip_id=participant.trip_id, participant_id=participant.id):
            participant.user_id = None
            participant.name = FORMER_MEMBER_NAME
            session.add(participant)
        else:
            session.delete(participant)
    session.flush()


def exported_participants(session: Session, user: User) -> Iterator[ParticipantExported]:
    """The account's participants, for its export, in trips it left too (their ledger
    entries are the account's)."""
    rows = session.exec(
        export.streamed(
            select(Participant, Trip.name)
            .join(Trip, col(Trip.id) == Participant.trip_id)
            .where(Participant.user_id == user.id)
            .order_by(col(Participant.created_at), col(Participant.id))
        )
    )
    for participant, trip_name in rows:
        yield ParticipantExported(
            trip_id=participant.trip_id,
            trip_name=trip_name,
            id=participant.id,
            name=participant.name,
            created_at=participant.created_at,
        )


trip_hooks.member_joined.subscribe(ensure_participant_for_member)
export.register(
    export.ExportSection(
        "participants",
        ParticipantExported,
        exported_participants,
        "The account's participants: who pays and owes as the account, in each trip.",
    )
)
user_hooks.account_deleting.subscribe(keep_deleted_accounts_participants_as_guests)
