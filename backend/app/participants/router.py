"""Routes for a trip's participants: list everyone, manage and claim guests."""

import uuid

from fastapi import APIRouter, Response, status

from app.core.deps import IfMatch, OptionalIfMatch, SessionDep
from app.core.errors import error_responses
from app.core.pagination import Page, PageParams
from app.core.preconditions import conditional_write_responses, create_responses, set_etag
from app.participants import service
from app.participants.models import GuestCreate, GuestUpdate, ParticipantPublic
from app.trips.deps import TripEditor, TripMember

router = APIRouter(
    prefix="/trips/{trip_id}", tags=["participants"], responses=error_responses(401, 404, 422)
)
_writes = error_responses(403, 409)


@router.get("/participants", response_model=Page[ParticipantPublic], responses=error_responses(400))
def list_participants(
    session: SessionDep, access: TripMember, page: PageParams
) -> Page[ParticipantPublic]:
    items, last = service.list_participants(session=session, trip_id=access.trip.id, page=page)
    return Page(items=items, next_cursor=page.cursor_for(last))


@router.post(
    "/guests",
    status_code=status.HTTP_201_CREATED,
    response_model=ParticipantPublic,
    responses={**_writes, **create_responses(ParticipantPublic)},
)
def add_guest(
    session: SessionDep, access: TripEditor, data: GuestCreate, response: Response
) -> ParticipantPublic:
    created = service.add_guest(
        session=session,
        trip_id=access.trip.id,
        name=data.name,
        actor_id=access.user.id,
        guest_id=data.id,
    )
    if created.replayed:
        response.status_code = status.HTTP_200_OK
    set_etag(response, created.value.version)
    return created.value


@router.patch(
    "/guests/{participant_id}",
    response_model=ParticipantPublic,
    responses={**_writes, **conditional_write_responses()},
)
def rename_guest(
    session: SessionDep,
    access: TripEditor,
    participant_id: uuid.UUID,
    expected: IfMatch,
    data: GuestUpdate,
    response: Response,
) -> ParticipantPublic:
    guest = service.rename_guest(
        session=session,
        trip_id=access.trip.id,
        participant_id=participant_id,
        name=data.name,
        actor_id=access.user.id,
        expected=expected,
    )
    set_etag(response, guest.version)
    return guest


@router.delete(
    "/guests/{participant_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={**_writes, **conditional_write_responses(None)},
)
def delete_guest(
    session: SessionDep, access: TripEditor, participant_id: uuid.UUID, expected: IfMatch
) -> None:
    service.delete_guest(
        session=session,
        trip_id=access.trip.id,
        participant_id=participant_id,
        actor_id=access.user.id,
        expected=expected,
    )


@router.post(
    "/guests/{participant_id}/claim",
    response_model=ParticipantPublic,
    responses={**_writes, **conditional_write_responses(required=False)},
)
def claim_guest(
    session: SessionDep,
    access: TripEditor,
    participant_id: uuid.UUID,
    expected: OptionalIfMatch,
    response: Response,
) -> ParticipantPublic:
    """The caller becomes this guest and inherits everything recorded for it.

    If-Match is optional here; when sent, the guest must still be at that version.
    """
    participant = service.claim_guest(
        session=session,
        trip_id=access.trip.id,
        participant_id=participant_id,
        user=access.user,
        expected=expected,
    )
    set_etag(response, participant.version)
    return participant
