"""Routes for invite links: editors and owners make, list and revoke them; members join by token."""

import uuid
from typing import Annotated

from fastapi import APIRouter, Path, Response, status

from app.core.deps import SessionDep
from app.core.errors import error_responses
from app.core.pagination import Page, PageParams
from app.core.preconditions import location_responses
from app.core.security import OPAQUE_TOKEN_MAX_LENGTH
from app.invite_links import service
from app.invite_links.models import (
    InviteLinkCreate,
    InviteLinkCreated,
    InviteLinkPublic,
    JoinedTrip,
)
from app.trips.deps import TripEditor
from app.users.deps import CurrentUser

trip_router = APIRouter(
    prefix="/trips/{trip_id}/invite-links",
    tags=["invite links"],
    responses=error_responses(401, 403, 404, 422),
)
router = APIRouter(prefix="/join", tags=["invite links"], responses=error_responses(401, 422))

Token = Annotated[
    str,
    Path(
        description="The token of an invite link, as its creation answered it",
        pattern=f"^[A-Za-z0-9_-]{{1,{OPAQUE_TOKEN_MAX_LENGTH}}}$",
    ),
]


@trip_router.post("", status_code=status.HTTP_201_CREATED, response_model=InviteLinkCreated)
def create_invite_link(
    session: SessionDep, response: Response, access: TripEditor, data: InviteLinkCreate
) -> InviteLinkCreated:
    """A link that lets up to `max_uses` people join with `role` until it expires.

    The answer is the only place the token appears (it is stored hashed): it is never
    stored for an Idempotency-Key either, so a retried create makes a second link.
    """
    # RFC 9111 no-store: no cache (nor the idempotency records) keeps the token.
    response.headers["Cache-Control"] = "no-store"
    return service.create_link(
        session=session,
        trip_id=access.trip.id,
        creator=access.user,
        creator_role=access.role,
        data=data,
    )


@trip_router.get("", response_model=Page[InviteLinkPublic], responses=error_responses(400))
def list_invite_links(
    session: SessionDep, access: TripEditor, page: PageParams
) -> Page[InviteLinkPublic]:
    """Owners see every link of the trip, editors the ones they made; never the tokens."""
    items, last = service.list_links(
        session=session,
        trip_id=access.trip.id,
        user_id=access.user.id,
        role=access.role,
        page=page,
    )
    return Page(items=items, next_cursor=page.cursor_for(last))


@trip_router.delete("/{link_id}", status_code=status.HTTP_204_NO_CONTENT)
def revoke_invite_link(session: SessionDep, access: TripEditor, link_id: uuid.UUID) -> None:
    """Owners revoke any link of the trip, editors their own; revoking twice is harmless."""
    service.revoke_link(
        session=session,
        trip_id=access.trip.id,
        link_id=link_id,
        user_id=access.user.id,
        role=access.role,
    )


@router.post(
    "/{token}",
    status_code=status.HTTP_201_CREATED,
    response_model=JoinedTrip,
    responses={
        status.HTTP_200_OK: {
            "model": JoinedTrip,
            "description": "Already a member: the membership as it is, nothing changed",
        },
        **error_responses(404),
        **location_responses("The trip joined, `/trips/{trip_id}`: `GET` reads it."),
    },
)
def join_with_invite_link(
    session: SessionDep, response: Response, user: CurrentUser, token: Token
) -> JoinedTrip:
    """Join the link's trip with its role (201); a member already gets 200 and no change.

    A token that does not work, for whatever reason (unknown, revoked, expired, used up),
    is `404 invite_link_not_found`.
    """
    joined, new = service.join_with_token(session=session, user=user, token=token)
    if new:
        response.headers["Location"] = f"/trips/{joined.trip.id}"
    else:
        response.status_code = status.HTTP_200_OK
    return joined
