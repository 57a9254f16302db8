"""Invitations: an owner invites an email; whoever holds that email accepts or declines."""

import uuid
from collections.abc import Iterator
from datetime import timedelta

from sqlalchemy import func, update
from sqlmodel import Session, col, select

from app.activity.service import record_activity
from app.core.columns import utcnow
from app.core.config import get_settings
from app.core.errors import Conflict, Forbidden, NotFound
from app.core.pagination import PageRequest, Position, keyset_page, split_page
from app.invitations.models import (
    Invitation,
    InvitationCreate,
    InvitationPublic,
    InvitationReceivedExported,
    InvitationSentExported,
    InvitationStatus,
    ReceivedInvitation,
)
from app.outbox import service as outbox
from app.trips import service as trip_service
from app.trips.models import Role, Trip, TripMember
from app.users import export
from app.users import hooks as user_hooks
from app.users.models import User
from app.users.service import deleted_address


def _expire_stale(
    session: Session, *, trip_id: uuid.UUID | None = None, email: str | None = None
) -> None:
    """Pending invitations past their date become `expired` (so a new one can be sent).

    Only writes call this; reads work out expiry from `expires_at` instead.
    """
    statement = update(Invitation).where(
        col(Invitation.status) == InvitationStatus.PENDING, col(Invitation.expires_at) <= func.now()
    )
    if trip_id is not None:
        statement = statement.where(col(Invitation.trip_id) == trip_id)
    if email is not None:
        statement = statement.where(col(Invitation.email) == email)
    session.execute(statement.values(status=InvitationStatus.EXPIRED))


def invite(
    *, session: Session, trip_id: uuid.UUID, data: InvitationCreate, inviter: User
) -> Invitation:
    trip_service.lock_trip(session, trip_id)
    already_member = session.exec(
        select(TripMember.user_id)
        .join(User, col(User.id) == TripMember.user_id)
        .where(TripMember.trip_id == trip_id, User.email == data.email)
    ).first()
    if already_member is not None:
        raise Conflict("This person is already a member of the trip.", code="already_member")
    _expire_stale(session, trip_id=trip_id, email=data.email)
    pending = session.exec(
        select(Invitation.id).where(
            Invitation.trip_id == trip_id,
            Invitation.email == data.email,
            Invitation.status == InvitationStatus.PENDING,
        )
    ).first()
    if pending is not None:
        raise Conflict("This email already has an open invitation.", code="already_invited")
    invitation = Invitation(
        trip_id=trip_id,
        email=data.email,
        role=data.role,
        invited_by=inviter.id,
        expires_at=utcnow() + timedelta(days=get_settings().INVITATION_TTL_DAYS),
    )
    session.add(invitation)
    _queue_invitation_email(session, invitation, inviter)
    record_activity(
        session=session,
        trip_id=trip_id,
        actor_id=inviter.id,
        action="invitation.sent",
        object_type="invitation",
        object_id=invitation.id,
        summary=f"as {data.role}",  # no email: every member reads the log
    )
    session.flush()
    return invitation


def _queue_invitation_email(session: Session, invitation: Invitation, inviter: User) -> None:
    """Tell the invitee, with a link to the invitation in the web client."""
    trip = session.get(Trip, invitation.trip_id)  # loaded already by the access check
    assert trip is not None
    outbox.enqueue(
        session=session,
        kind="invitation",
        to=invitation.email,
        subject=f"{inviter.full_name} invites you to {trip.name} on TripSync",
        context={
            "inviter_name": inviter.full_name,
            "trip_name": trip.name,
            "start_date": trip.start_date.isoformat(),
            "end_date": trip.end_date.isoformat(),
            "role": invitation.role,
            "email": invitation.email,
            "expires_on": invitation.expires_at.date().isoformat(),
            "link": outbox.public_link(f"/invitations/{invitation.id}"),
        },
    )


def list_for_trip(
    *, session: Session, trip_id: uuid.UUID, page: PageRequest
) -> tuple[list[Invitation], Position | None]:
    statement = select(Invitation).where(Invitation.trip_id == trip_id)
    statement = keyset_page(statement, page, Invitation.created_at, Invitation.id, descending=True)
    rows = session.exec(statement).all()
    return split_page(rows, page.limit, lambda row: Position(row.created_at, row.id))


def revoke(
    *, session: Session, trip_id: uuid.UUID, invitation_id: uuid.UUID, actor_id: uuid.UUID
) -> None:
    invitation = session.get(Invitation, (trip_id, invitation_id), with_for_update=True)
    if invitation is None:
        raise NotFound("Invitation not found.", code="invitation_not_found")
    _ensure_open(invitation)
    invitation.status = InvitationStatus.REVOKED
    invitation.responded_at = utcnow()
    session.add(invitation)
    record_activity(
        session=session,
        trip_id=trip_id,
        actor_id=actor_id,
        action="invitation.revoked",
        object_type="invitation",
        object_id=invitation.id,
    )


def _require_verified(user: User) -> None:
    """Invitations go to an address: only someone who proved they read it may use them."""
    if user.email_verified_at is None:
        raise Forbidden(
            "Confirm your email address (POST /auth/verify-email) to see invitations sent to it.",
            code="email_not_verified",
        )


def list_received(
    *, session: Session, user: User, page: PageRequest
) -> tuple[list[ReceivedInvitation], Position | None]:
    """Open invitations for the user's verified email, including ones sent before they
    registered."""
    _require_verified(user)
    inviter = select(User.id, User.full_name).subquery()
    statement = (
        select(Invitation, Trip, inviter.c.full_name)
        .join(Trip, col(Trip.id) == Invitation.trip_id)
        .outerjoin(inviter, inviter.c.id == Invitation.invited_by)
        .where(
            Invitation.email == user.email,
            Invitation.status == InvitationStatus.PENDING,
            col(Invitation.expires_at) > func.now(),
        )
    )
    statement = keyset_page(statement, page, Invitation.created_at, Invitation.id, descending=True)
    rows = session.exec(statement).all()
    paged, last = split_page(rows, page.limit, lambda row: Position(row[0].created_at, row[0].id))
    return [
        ReceivedInvitation.model_validate(
            {
                **InvitationPublic.of(invitation).model_dump(),
                "trip_name": trip.name,
                "trip_start_date": trip.start_date,
                "trip_end_date": trip.end_date,
                "invited_by_name": inviter_name,
            }
        )
        for invitation, trip, inviter_name in paged
    ], last


def _received(session: Session, user: User, invitation_id: uuid.UUID) -> Invitation:
    """The invitation, locked, if it was sent to this user's email; 404 for anyone else."""
    _require_verified(user)
    addressed = (Invitation.id == invitation_id, Invitation.email == user.email)
    # The route has no trip: find it first (a read every shard answers; a lock there is
    # refused on Citus), then lock the row within its trip.
    trip_id = session.exec(select(Invitation.trip_id).where(*addressed)).first()
    if trip_id is None:
        raise NotFound("Invitation not found.", code="invitation_not_found")
    invitation = session.exec(
        select(Invitation).where(Invitation.trip_id == trip_id, *addressed).with_for_update()
    ).first()
    if invitation is None:
        raise NotFound("Invitation not found.", code="invitation_not_found")
    return invitation


def _ensure_open(invitation: Invitation) -> None:
    if invitation.status == InvitationStatus.PENDING and invitation.expires_at <= utcnow():
        raise Conflict("This invitation has expired; ask for a new one.", code="invitation_expired")
    if invitation.status != InvitationStatus.PENDING:
        raise Conflict(f"This invitation is already {invitation.status}.", code="invitation_closed")


def accept(*, session: Session, user: User, invitation_id: uuid.UUID) -> tuple[Trip, Role]:
    invitation = _received(session, user, invitation_id)
    _ensure_open(invitation)
    trip_service.lock_trip(session, invitation.trip_id)
    if session.get(TripMember, (invitation.trip_id, user.id)) is not None:
        raise Conflict("You are already a member of this trip.", code="already_member")
    role = Role(invitation.role)
    trip_service.join_trip(
        session=session, trip_id=invitation.trip_id, user=user, role=role, actor_id=user.id
    )
    invitation.status = InvitationStatus.ACCEPTED
    invitation.responded_at = utcnow()
    session.add(invitation)
    return trip_service.get_trip_for_member(
        session=session, trip_id=invitation.trip_id, user_id=user.id
    )


def decline(*, session: Session, user: User, invitation_id: uuid.UUID) -> None:
    invitation = _received(session, user, invitation_id)
    _ensure_open(invitation)
    invitation.status = InvitationStatus.DECLINED
    invitation.responded_at = utcnow()
    session.add(invitation)
    record_activity(
        session=session,
        trip_id=invitation.trip_id,
        actor_id=user.id,
        action="invitation.declined",
        object_type="invitation",
        object_id=invitation.id,
    )


# --- the account: its export and its deletion ------------------------------------------------


def exported_sent(session: Session, user: User) -> Iterator[InvitationSentExported]:
    """The invitations the account sent, for its export."""
    return export.exported_rows(
        session,
        InvitationSentExported,
        select(Invitation)
        .where(Invitation.invited_by == user.id)
        .order_by(col(Invitation.created_at), col(Invitation.id)),
    )


def exported_received(session: Session, user: User) -> Iterator[InvitationReceivedExported]:
    """The invitations to the account's current address, for its export."""
    rows = session.exec(
        export.streamed(
            select(Invitation, Trip.name)
            .join(Trip, col(Trip.id) == Invitation.trip_id)
            .where(Invitation.email == user.email)
            .order_by(col(Invitation.created_at), col(Invitation.id))
        )
    )
    for invitation, trip_name in rows:
        yield InvitationReceivedExported(
            trip_id=invitation.trip_id,
            trip_name=trip_name,
            id=invitation.id,
            role=Role(invitation.role),
            status=InvitationStatus(invitation.status),
            created_at=invitation.created_at,
            expires_at=invitation.expires_at,
            responded_at=invitation.responded_at,
        )


def forget_deleted_accounts_address(*, session: Session, user: User) -> None:
    """The invitations the account answered no longer show its address. Open ones stay as
    they are: they were sent to an address, which someone may register again."""
    session.execute(
        update(Invitation)
        .where(
            col(Invitation.email) == user.email,
            col(Invitation.status).in_([InvitationStatus.ACCEPTED, InvitationStatus.DECLINED]),
        )
        .values(email=deleted_address(user.id))
    )


export.register(
    export.ExportSection(
        "invitations_sent",
        InvitationSentExported,
        exported_sent,
        "The invitations the account sent.",
    )
)
export.register(
    export.ExportSection(
        "invitations_received",
        InvitationReceivedExported,
        exported_received,
        "The invitations to the account's address.",
    )
)
user_hooks.account_deleting.subscribe(forget_deleted_accounts_address)
