"""Share links: owners create, list and revoke them; anyone holding one reads the trip.

What a link shows (docs/api.md, "Share links") is a viewer's snapshot of the trip
(app.feed.service.snapshot, the one rule for what a viewer sees), cut down to the rows its
scope covers, with amounts masked when the link asks for it or the trip hides them from
viewers. The reader is nobody in particular: no private checklist item is anyone's, and no
member row (account emails) is shown.
"""

import json
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta

from sqlmodel import Session, col, select
from sqlmodel.sql.expression import SelectOfScalar

from app.activity.service import record_activity
from app.core.columns import utcnow
from app.core.errors import NotFound
from app.core.pagination import PageRequest, Position, keyset_page, split_page
from app.core.retention import delete_ended_links_of
from app.core.security import issue_opaque_token, opaque_token_hash
from app.feed import service as feed_service
from app.share_links.models import (
    SCOPE_ENTITIES,
    SharedTripPublic,
    ShareLink,
    ShareLinkCreate,
    ShareLinkCreated,
    ShareLinkExported,
    ShareLinkPublic,
    ShareLinkStatus,
    ShareScope,
    status_of,
)
from app.trips.models import Role, Trip
from app.users import export
from app.users.models import User

# The reader of a shared trip: an id no account has, so the snapshot's "own" rows are none.
SHARED_READER = uuid.UUID(int=0)


def share_link_not_found() -> NotFound:
    # One answer for a token never issued, revoked or expired: a holder learns only that it
    # does not work, an outsider nothing about which tokens existed.
    return NotFound(
        "This share link does not exist or no longer works; ask for a new one.",
        code="share_link_not_found",
    )


def create_link(
    *, session: Session, trip_id: uuid.UUID, creator_id: uuid.UUID, data: ShareLinkCreate
) -> ShareLinkCreated:
    """A new share link (the caller holds the trip lock, as every write does)."""
    token, token_hash = issue_opaque_token()
    link = ShareLink(
        trip_id=trip_id,
        token_hash=token_hash,
        scope=data.scope,
        hide_amounts=data.hide_amounts,
        created_by=creator_id,
        expires_at=utcnow() + timedelta(hours=data.expires_in_hours),
    )
    session.add(link)
    record_activity(
        session=session,
        trip_id=trip_id,
        actor_id=creator_id,
        action="share_link.created",
        object_type="share_link",
        object_id=link.id,
        summary=f"{data.scope}{', amounts hidden' if data.hide_amounts else ''}",
    )
    session.flush()
    public = ShareLinkPublic.of(link)
    return ShareLinkCreated(**public.model_dump(), token=token, shared_path=f"/shared/{token}")


def _trip_links(trip_id: uuid.UUID) -> SelectOfScalar[ShareLink]:
    return select(ShareLink).where(ShareLink.trip_id == trip_id)


def list_links(
    *, session: Session, trip_id: uuid.UUID, page: PageRequest
) -> tuple[list[ShareLinkPublic], Position | None]:
    """Newest first, by keyset on (created_at, id); never the tokens."""
    statement = keyset_page(
        _trip_links(trip_id), page, ShareLink.created_at, ShareLink.id, descending=True
    )
    links = session.exec(statement).all()
    paged, last = split_page(links, page.limit, lambda link: Position(link.created_at, link.id))
    return [ShareLinkPublic.of(link) for link in paged], last


def revoke_link(
    *, session: Session, trip_id: uuid.UUID, link_id: uuid.UUID, user_id: uuid.UUID
) -> None:
    """Revoke one of the trip's share links; revoking it again changes nothing."""
    statement = _trip_links(trip_id).where(ShareLink.id == link_id).with_for_update()
    link = session.exec(statement).first()
    if link is None:
        raise NotFound("Share link not found.", code="share_link_not_found")
    if link.revoked_at is not None:
        return
    link.revoked_at = utcnow()
    session.add(link)
    record_activity(
        session=session,
        trip_id=trip_id,
        actor_id=user_id,
        action="share_link.revoked",
        object_type="share_link",
        object_id=link.id,
    )


def shared_trip(*, session: Session, token: str) -> SharedTripPublic:
    """The trip as the link shows it: 404 for a token that does not work, at once (the link
    is read in this request, nothing is cached)."""
    link = session.exec(
        select(ShareLink).where(col(ShareLink.token_hash) == opaque_token_hash(token))
    ).first()
    if link is None or status_of(link) is not ShareLinkStatus.ACTIVE:
        raise share_link_not_found()
    trip = session.get_one(Trip, link.trip_id)
    viewer = feed_service.Viewer(
        trip=trip, user_id=SHARED_READER, role=Role.VIEWER, hide_amounts=link.hide_amounts
    )
    snapshot = json.loads(feed_service.snapshot(session=session, viewer=viewer))
    scope = ShareScope(link.scope)
    shown = SCOPE_ENTITIES[scope]
    return SharedTripPublic(
        trip_id=trip.id,
        version=snapshot["version"],
        scope=scope,
        amounts_hidden=viewer.amounts_hidden,
        expires_at=link.expires_at,
        rows=[row for row in snapshot["rows"] if row["entity"] in shown],
    )


def exported_links(session: Session, user: User) -> Iterator[ShareLinkExported]:
    """The share links the account created, for its export."""
    links = session.exec(
        export.streamed(
            select(ShareLink)
            .where(ShareLink.created_by == user.id)
            .order_by(col(ShareLink.created_at), col(ShareLink.id))
        )
    )
    for link in links:
        yield ShareLinkExported.model_validate(link, from_attributes=True)


export.register(
    export.ExportSection(
        "share_links", ShareLinkExported, exported_links, "The share links the account created."
    )
)


def delete_ended_links(*, session: Session, now: datetime, limit: int) -> int:
    """Delete up to `limit` links ended past LINK_RETENTION_DAYS (`make cleanup`)."""
    return delete_ended_links_of(ShareLink, session=session, now=now, limit=limit)
