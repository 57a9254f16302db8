"""Routes for a trip's participants: list everyone, manage and claim guests."""

import uuid

from fastapi import APIRouter, status

from app.core.deps import SessionDep, TripEditor, TripMember
from app.core.errors import error_responses
from app.core.pagination import Page, PageParams
from app.core.routing import AppRoute
from app.participants import service
from app.participants.models import GuestCreate, Participant, ParticipantPublic

router = APIRouter(
    prefix="/trips/{trip_id}",
    tags=["participants"],
    responses=error_responses(401, 404, 422),
    route_class=AppRoute,
)
_writes = error_responses(403, 409)


def _public(participant: Participant, *, name: str | None = None) -> ParticipantPublic:
    return ParticipantPublic(
        id=participant.id,
        name=name or participant.name,
        user_id=participant.user_id,
        is_guest=participant.user_id is None,
        is_member=participant.user_id is not None,
    )


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
    responses=_writes,
)
def add_guest(session: SessionDep, access: TripEditor, data: GuestCreate) -> ParticipantPublic:
    guest = service.add_guest(
        session=session, trip_id=access.trip.id, name=data.name, actor_id=access.user.id
    )
    return _public(guest)


@router.patch("/guests/{participant_id}", response_model=ParticipantPublic, responses=_writes)
def rename_guest(
    session: SessionDep, access: TripEditor, participant_id: uuid.UUID, data: GuestCreate
) -> ParticipantPublic:
    guest = service.rename_guest(
        session=session,
        trip_id=access.trip.id,
        participant_id=participant_id,
        name=data.name,
        actor_id=access.user.id,
    )
    return _public(guest)


@router.delete(
    "/guests/{participant_id}", status_code=status.HTTP_204_NO_CONTENT, responses=_writes
)
def delete_guest(session: SessionDep, access: TripEditor, participant_id: uuid.UUID) -> None:
    service.delete_guest(
        session=session,
        trip_id=access.trip.id,
        participant_id=participant_id,
        actor_id=access.user.id,
    )


@router.post("/guests/{participant_id}/claim", response_model=ParticipantPublic, responses=_writes)
def claim_guest(
    session: SessionDep, access: TripEditor, participant_id: uuid.UUID
) -> ParticipantPublic:
    """The caller becomes this guest and inherits everything recorded for it."""
    participant = service.claim_guest(
        session=session, trip_id=access.trip.id, participant_id=participant_id, user=access.user
    )
    return _public(participant, name=access.user.full_name)
