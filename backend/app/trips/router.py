"""Routes for trips and their members; access rules come from the TripMember/Editor/Owner deps."""

import uuid

from fastapi import APIRouter, Response, status

from app.core.admission import DatabaseSlotDep
from app.core.db import read_session
from app.core.deps import IfMatch, SessionDep
from app.core.errors import error_responses
from app.core.json_sql import json_response
from app.core.pagination import Page, PageParams
from app.core.preconditions import (
    conditional_write_responses,
    create_responses,
    etag_responses,
    set_etag,
)
from app.trips import service
from app.trips.deps import TripEditor, TripMember, TripOwner, TripRead
from app.trips.models import (
    MemberPublic,
    MemberUpdate,
    OwnershipTransfer,
    TripCreate,
    TripPublic,
    TripUpdate,
    TripUpdatedPublic,
)
from app.users.deps import BearerToken, CurrentUser, revoked, token_claims

router = APIRouter(prefix="/trips", tags=["trips"], responses=error_responses(401, 422))
_in_trip = error_responses(404)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=TripPublic,
    responses=create_responses(TripPublic),
)
def create_trip(
    session: SessionDep, user: CurrentUser, data: TripCreate, response: Response
) -> TripPublic:
    """Create a trip; the caller becomes its owner. A client-chosen `id` makes it replayable."""
    created = service.create_trip(session=session, owner=user, data=data)
    if created.replayed:
        response.status_code = status.HTTP_200_OK
    set_etag(response, created.value.version)
    return created.value


@router.get("", response_model=Page[TripPublic], responses=error_responses(400))
def list_my_trips(_slot: DatabaseSlotDep, token: BearerToken, page: PageParams) -> Response:
    """The caller's trips, newest first. One statement checks the caller's session and
    writes the page's JSON (two round trips with the pool's pre-ping)."""
    user_id, session_id = token_claims(token)
    with read_session() as session:
        body = service.read_my_trips_page(
            session=session, user_id=user_id, session_id=session_id, page=page
        )
    if body is None:
        raise revoked()
    return json_response(body)


@router.get("/{trip_id}", response_model=TripPublic, responses={**_in_trip, **etag_responses()})
def get_trip(reader: TripRead) -> Response:
    """The trip with the caller's role, from one statement that checks the caller's access."""
    with read_session() as session:
        found = service.read_trip_document(session, reader.parameters())
        if found is None or not found.active:
            raise reader.refused(session, found.active if found else None)
    return json_response(found.json, version=found.version)


@router.patch(
    "/{trip_id}",
    response_model=TripUpdatedPublic,
    responses={**error_responses(403, 404), **conditional_write_responses()},
)
def update_trip(
    session: SessionDep,
    access: TripEditor,
    expected: IfMatch,
    data: TripUpdate,
    response: Response,
) -> TripUpdatedPublic:
    """Edit the trip. Items on days outside new dates become unscheduled and are listed."""
    updated = service.update_trip(
        session=session,
        trip=access.trip,
        role=access.role,
        data=data,
        actor_id=access.user.id,
        expected=expected,
    )
    set_etag(response, updated.trip.version)
    return TripUpdatedPublic.model_construct(
        **TripPublic.of(updated.trip, access.role).model_dump(),
        unscheduled_item_ids=updated.unscheduled_item_ids,
    )


@router.delete(
    "/{trip_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={**error_responses(403, 404), **conditional_write_responses(None)},
)
def delete_trip(session: SessionDep, access: TripOwner, expected: IfMatch) -> None:
    service.delete_trip(session=session, trip=access.trip, expected=expected)


@router.get(
    "/{trip_id}/members", response_model=Page[MemberPublic], responses=error_responses(400, 404)
)
def list_members(session: SessionDep, access: TripMember, page: PageParams) -> Page[MemberPublic]:
    rows, last = service.list_members(session=session, trip_id=access.trip.id, page=page)
    return Page(
        items=[MemberPublic.of(member, user) for member, user in rows],
        next_cursor=page.cursor_for(last),
    )


@router.patch(
    "/{trip_id}/members/{user_id}",
    response_model=MemberPublic,
    responses={**error_responses(403, 404, 409), **conditional_write_responses()},
)
def change_member_role(
    session: SessionDep,
    access: TripOwner,
    user_id: uuid.UUID,
    expected: IfMatch,
    data: MemberUpdate,
    response: Response,
) -> MemberPublic:
    """Change a member's role; If-Match is the ETag (`version`) of the membership."""
    member = service.change_role(
        session=session,
        trip_id=access.trip.id,
        user_id=user_id,
        role=data.role,
        actor_id=access.user.id,
        expected=expected,
    )
    set_etag(response, member.version)
    return member


@router.delete(
    "/{trip_id}/members/{user_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={**error_responses(403, 404, 409), **conditional_write_responses(None)},
)
def remove_member(
    session: SessionDep, access: TripMember, user_id: uuid.UUID, expected: IfMatch
) -> None:
    """An owner removes anyone; any member may remove themselves (leave the trip).

    If-Match is the ETag (`version`) of the membership.
    """
    service.remove_member(
        session=session,
        trip_id=access.trip.id,
        user_id=user_id,
        actor_id=access.user.id,
        actor_role=access.role,
        expected=expected,
    )


@router.post(
    "/{trip_id}/transfer-ownership",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=error_responses(403, 404, 409, 422),
)
def transfer_ownership(session: SessionDep, access: TripOwner, data: OwnershipTransfer) -> None:
    """Make another member the owner; the caller stays on as an editor."""
    service.transfer_ownership(
        session=session,
        trip_id=access.trip.id,
        from_user_id=access.user.id,
        to_user_id=data.user_id,
    )
