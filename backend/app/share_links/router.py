"""Routes for share links: owners make, list and revoke them; anyone holding one reads the trip."""

import uuid
from typing import Annotated

from fastapi import APIRouter, Path, Request, Response, status

from app.core.config import get_settings
from app.core.deps import SessionDep, before_session
from app.core.errors import error_responses
from app.core.pagination import Page, PageParams
from app.core.security import OPAQUE_TOKEN_MAX_LENGTH
from app.ratelimit import service as rate_limit
from app.share_links import service
from app.share_links.models import (
    SharedTripPublic,
    ShareLinkCreate,
    ShareLinkCreated,
    ShareLinkPublic,
)
from app.trips.deps import TripOwner

trip_router = APIRouter(
    prefix="/trips/{trip_id}/share-links",
    tags=["share links"],
    responses=error_responses(401, 403, 404, 422),
)
router = APIRouter(prefix="/shared", tags=["share links"], responses=error_responses(422))

Token = Annotated[
    str,
    Path(
        description="The token of a share link, as its creation answered it",
        pattern=f"^[A-Za-z0-9_-]{{1,{OPAQUE_TOKEN_MAX_LENGTH}}}$",
    ),
]


def _address(request: Request) -> str:
    # Behind a proxy, run uvicorn with --proxy-headers so this is the client, not the proxy.
    return request.client.host if request.client else "unknown"


def limit_shared_reads(request: Request) -> None:
    rate_limit.check(
        "shared:address",
        _address(request),
        get_settings().SHARED_READS_PER_ADDRESS,
        what="reads of shared trips from this address",
    )


@trip_router.post("", status_code=status.HTTP_201_CREATED, response_model=ShareLinkCreated)
def create_share_link(
    session: SessionDep, response: Response, access: TripOwner, data: ShareLinkCreate
) -> ShareLinkCreated:
    """A read-only link to the trip for people without an account, until it expires.

    The answer is the only place the token appears (it is stored hashed): it is never
    stored for an Idempotency-Key either, so a retried create makes a second link.
    """
    # RFC 9111 no-store: no cache (nor the idempotency records) keeps the token.
    response.headers["Cache-Control"] = "no-store"
    return service.create_link(
        session=session, trip_id=access.trip.id, creator_id=access.user.id, data=data
    )


@trip_router.get("", response_model=Page[ShareLinkPublic], responses=error_responses(400))
def list_share_links(
    session: SessionDep, access: TripOwner, page: PageParams
) -> Page[ShareLinkPublic]:
    """Every share link of the trip, newest first; never the tokens."""
    items, last = service.list_links(session=session, trip_id=access.trip.id, page=page)
    return Page(items=items, next_cursor=page.cursor_for(last))


@trip_router.delete("/{link_id}", status_code=status.HTTP_204_NO_CONTENT)
def revoke_share_link(session: SessionDep, access: TripOwner, link_id: uuid.UUID) -> None:
    """Revoke a share link: it answers 404 from now on; revoking twice is harmless."""
    service.revoke_link(
        session=session, trip_id=access.trip.id, link_id=link_id, user_id=access.user.id
    )


@router.get(
    "/{token}",
    response_model=SharedTripPublic,
    responses=error_responses(404, 429),
    dependencies=[before_session(limit_shared_reads)],
)
def read_shared_trip(session: SessionDep, token: Token) -> SharedTripPublic:
    """The trip as a viewer sees it, cut to the link's scope; no account needed.

    A token that does not work (unknown, revoked, expired) is `404 share_link_not_found`.
    """
    # Cache-Control: no-store and X-Robots-Tag: noindex are set on every answer of /shared/,
    # errors included (app.api.headers).
    return service.shared_trip(session=session, token=token)
