"""Invite links: editors and owners create them, anyone signed in who holds one joins with it.

Who may do what (docs/api.md, "Invite links"): an editor or owner creates links giving at
most their own role; an owner lists and revokes every link of the trip, an editor only the
links they created (others' are a 404 to them, as for anything they may not see). A link
lets people in only while it is active: not revoked, not expired, not used up, and its
creator still a member with at least the link's role (a member who leaves or is demoted
cannot come back, or bring others, through a link they made before).
"""

import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta

from sqlalchemy import and_, func, update
from sqlalchemy.orm import aliased
from sqlmodel import Session, col, select
from sqlmodel.sql.expression import Select

from app.activity.service import record_activity
from app.core.columns import utcnow
from app.core.errors import Forbidden, NotFound
from app.core.pagination import PageRequest, Position, keyset_page, split_page
from app.core.retention import delete_ended_links_of
from app.core.security import issue_opaque_token, opaque_token_hash
from app.invite_links.models import (
    InviteLink,
    InviteLinkCreate,
    InviteLinkCreated,
    InviteLinkExported,
    InviteLinkPublic,
    JoinedTrip,
)
from app.trips import service as trip_service
from app.trips.models import MemberPublic, Role, TripMember, TripPublic
from app.users import export
from app.users.models import User


def link_not_found() -> NotFound:
    # One answer for a token never issued, revoked, expired, used up or orphaned: a holder
    # learns only that it does not work, an outsider nothing about which tokens existed.
    return NotFound(
        "This invite link does not exist or no longer works; ask for a new one.",
        code="invite_link_not_found",
    )


def create_link(
    *,
    session: Session,
    trip_id: uuid.UUID,
    creator: User,
    creator_role: Role,
    data: InviteLinkCreate,
) -> InviteLinkCreated:
    """A new link (the caller holds the trip lock, as every write does)."""
    if not creator_role.includes(data.role):
        raise Forbidden(
            f"A link can give at most your own role ({creator_role}).", code="role_above_own"
        )
    token, token_hash = issue_opaque_token()
    link = InviteLink(
        trip_id=trip_id,
        token_hash=token_hash,
        role=data.role,
        created_by=creator.id,
        expires_at=utcnow() + timedelta(hours=data.expires_in_hours),
        max_uses=data.max_uses,
    )
    session.add(link)
    record_activity(
        session=session,
        trip_id=trip_id,
        actor_id=creator.id,
        action="invite_link.created",
        object_type="invite_link",
        object_id=link.id,
        summary=f"as {data.role}, up to {data.max_uses} use(s)",
    )
    session.flush()
    public = InviteLinkPublic.of(link, creator_role=creator_role)
    return InviteLinkCreated(**public.model_dump(), token=token, join_path=f"/join/{token}")


def _visible_links(trip_id: uuid.UUID, user_id: uuid.UUID, role: Role) -> Select[InviteLink, str]:
    """The trip's links this member may see, each with its creator's current role (or None)."""
    creator = aliased(TripMember)
    statement = (
        select(InviteLink, creator.role)
        .outerjoin(
            creator,
            and_(
                col(creator.trip_id) == InviteLink.trip_id,
                col(creator.user_id) == InviteLink.created_by,
            ),
        )
        .where(InviteLink.trip_id == trip_id)
    )
    if role is not Role.OWNER:
        statement = statement.where(InviteLink.created_by == user_id)
    return statement


def list_links(
    *, session: Session, trip_id: uuid.UUID, user_id: uuid.UUID, role: Role, page: PageRequest
) -> tuple[list[InviteLinkPublic], Position | None]:
    """Newest first, by keyset on (created_at, id): every link for owners, their own for editors."""
    statement = keyset_page(
        _visible_links(trip_id, user_id, role),
        page,
        InviteLink.created_at,
        InviteLink.id,
        descending=True,
    )
    rows = session.exec(statement).all()
    paged, last = split_page(rows, page.limit, lambda row: Position(row[0].created_at, row[0].id))
    return [
        InviteLinkPublic.of(link, creator_role=None if creator_role is None else Role(creator_role))
        for link, creator_role in paged
    ], last


def revoke_link(
    *, session: Session, trip_id: uuid.UUID, link_id: uuid.UUID, user_id: uuid.UUID, role: Role
) -> None:
    """Revoke a link this member may see; revoking it again changes nothing."""
    statement = _visible_links(trip_id, user_id, role).where(InviteLink.id == link_id)
    row = session.exec(statement.with_for_update(of=InviteLink)).first()
    if row is None:
        raise NotFound("Invite link not found.", code="invite_link_not_found")
    link = row[0]
    if link.revoked_at is not None:
        return
    link.revoked_at = utcnow()
    session.add(link)
    record_activity(
        session=session,
        trip_id=trip_id,
        actor_id=user_id,
        action="invite_link.revoked",
        object_type="invite_link",
        object_id=link.id,
    )


def _count_use(session: Session, link: InviteLink) -> bool:
    """Take one use of the link if it is still open: one UPDATE, so two joins racing for the
    last use cannot both get it (the second re-reads the row after the first commits)."""
    used = session.execute(
        update(InviteLink)
        .where(
            col(InviteLink.trip_id) == link.trip_id,
            col(InviteLink.id) == link.id,
            col(InviteLink.revoked_at).is_(None),
            col(InviteLink.expires_at) > func.now(),
            col(InviteLink.uses) < col(InviteLink.max_uses),
        )
        .values(uses=col(InviteLink.uses) + 1)
        .returning(col(InviteLink.uses))
        .execution_options(synchronize_session=False)
    ).first()
    return used is not None


def _membership(session: Session, trip_id: uuid.UUID, user: User) -> JoinedTrip:
    trip, role = trip_service.get_trip_for_member(session=session, trip_id=trip_id, user_id=user.id)
    member = session.get_one(TripMember, (trip_id, user.id))
    return JoinedTrip(trip=TripPublic.of(trip, role), membership=MemberPublic.of(member, user))


def join_with_token(*, session: Session, user: User, token: str) -> tuple[JoinedTrip, bool]:
    """Make the caller a member with the link's role; True when they joined just now.

    Someone already a member gets their membership as it is (no role change, no use
    counted) for any token of that trip, so a retried join answers the same. Joining is
    what accepting an invitation does (`trip_service.join_trip`): the participant, the
    activity entry, the trip version and the access announcement to live streams.
    """
    link = session.exec(
        select(InviteLink).where(InviteLink.token_hash == opaque_token_hash(token))
    ).first()
    if link is None:
        raise link_not_found()
    trip_id = link.trip_id
    if session.get(TripMember, (trip_id, user.id)) is None:
        trip_service.lock_trip(session, trip_id)  # joins of one trip queue here
        # Re-read under the lock: the same user may have joined in the meantime.
        if session.get(TripMember, (trip_id, user.id)) is None:
            role = Role(link.role)
            creator_role = session.exec(
                select(TripMember.role).where(
                    TripMember.trip_id == trip_id, TripMember.user_id == link.created_by
                )
            ).first()
            if creator_role is None or not Role(creator_role).includes(role):
                raise link_not_found()
            if not _count_use(session, link):
                raise link_not_found()
            trip_service.join_trip(
                session=session, trip_id=trip_id, user=user, role=role, actor_id=user.id
            )
            return _membership(session, trip_id, user), True
    return _membership(session, trip_id, user), False


def exported_links(session: Session, user: User) -> Iterator[InviteLinkExported]:
    """The invite links the account created, for its export."""
    return export.exported_rows(
        session,
        InviteLinkExported,
        select(InviteLink)
        .where(InviteLink.created_by == user.id)
        .order_by(col(InviteLink.created_at), col(InviteLink.id)),
    )


export.register(
    export.ExportSection(
        "invite_links", InviteLinkExported, exported_links, "The invite links the account created."
    )
)


def delete_ended_links(*, session: Session, now: datetime, limit: int) -> int:
    """Delete up to `limit` links ended past LINK_RETENTION_DAYS (`make cleanup`)."""
    return delete_ended_links_of(InviteLink, session=session, now=now, limit=limit)
