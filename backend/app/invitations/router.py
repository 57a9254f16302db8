"""Routes for invitations: owners send and revoke; the invitee lists, accepts or declines."""

import uuid

from fastapi import APIRouter, status

from app.core.deps import SessionDep
from app.core.errors import error_responses
from app.core.pagination import Page, PageParams
from app.invitations import service
from app.invitations.models import InvitationCreate, InvitationPublic, ReceivedInvitation
from app.trips.deps import TripOwner
from app.trips.models import TripPublic
from app.users.deps import CurrentUser

trip_router = APIRouter(
    prefix="/trips/{trip_id}/invitations",
    tags=["invitations"],
    responses=error_responses(401, 403, 404, 422),
)
router = APIRouter(
    prefix="/invitations", tags=["invitations"], responses=error_responses(401, 403, 422)
)


@trip_router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=InvitationPublic,
    responses=error_responses(409),
)
def send_invitation(
    session: SessionDep, access: TripOwner, data: InvitationCreate
) -> InvitationPublic:
    invitation = service.invite(
        session=session, trip_id=access.trip.id, data=data, inviter=access.user
    )
    return InvitationPublic.of(invitation)


@trip_router.get("", response_model=Page[InvitationPublic], responses=error_responses(400))
def list_trip_invitations(
    session: SessionDep, access: TripOwner, page: PageParams
) -> Page[InvitationPublic]:
    rows, last = service.list_for_trip(session=session, trip_id=access.trip.id, page=page)
    return Page(
        items=[InvitationPublic.of(row) for row in rows],
        next_cursor=page.cursor_for(last),
    )


@trip_router.delete(
    "/{invitation_id}", status_code=status.HTTP_204_NO_CONTENT, responses=error_responses(409)
)
def revoke_invitation(session: SessionDep, access: TripOwner, invitation_id: uuid.UUID) -> None:
    service.revoke(
        session=session,
        trip_id=access.trip.id,
        invitation_id=invitation_id,
        actor_id=access.user.id,
    )


@router.get("", response_model=Page[ReceivedInvitation], responses=error_responses(400))
def list_my_invitations(
    session: SessionDep, user: CurrentUser, page: PageParams
) -> Page[ReceivedInvitation]:
    items, last = service.list_received(session=session, user=user, page=page)
    return Page(items=items, next_cursor=page.cursor_for(last))


@router.post(
    "/{invitation_id}/accept", response_model=TripPublic, responses=error_responses(404, 409)
)
def accept_invitation(
    session: SessionDep, user: CurrentUser, invitation_id: uuid.UUID
) -> TripPublic:
    trip, role = service.accept(session=session, user=user, invitation_id=invitation_id)
    return TripPublic.of(trip, role)


@router.post(
    "/{invitation_id}/decline",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=error_responses(404, 409),
)
def decline_invitation(session: SessionDep, user: CurrentUser, invitation_id: uuid.UUID) -> None:
    service.decline(session=session, user=user, invitation_id=invitation_id)
