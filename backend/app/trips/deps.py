"""Trip access as request dependencies: `TripMember`, `TripEditor`, `TripOwner`."""

import uuid
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Path, Request

from app.core.deps import SessionDep
from app.core.errors import Forbidden
from app.trips import service as trip_service
from app.trips.models import Role, Trip
from app.users.deps import BearerToken, authenticate, revoked, token_claims
from app.users.models import User


@dataclass(frozen=True)
class TripAccess:
    trip: Trip
    role: Role
    user: User


_READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def get_trip_member(
    request: Request,
    session: SessionDep,
    token: BearerToken,
    trip_id: Annotated[uuid.UUID, Path(description="The trip's id")],
) -> TripAccess:
    """The caller and their access to the trip: 401 for a bad token, 404 for non-members.

    One query finds the trip, the role and the user of a live session together (the common
    case costs one round trip); only a miss looks further, to tell a revoked token (401)
    from a trip the caller is not in (404). Writes lock the trip first, so the role checked
    here cannot change before the write commits.
    """
    user_id, session_id = token_claims(token)
    found = trip_service.find_member_access(
        session=session,
        trip_id=trip_id,
        user_id=user_id,
        session_id=session_id,
        lock=request.method not in _READ_METHODS,
    )
    if found is None:
        authenticate(session, user_id, session_id)
        raise trip_service.trip_not_found()
    trip, role, user = found
    if not user.is_active:
        raise revoked()
    return TripAccess(trip=trip, role=role, user=user)


def get_trip_editor(access: Annotated[TripAccess, Depends(get_trip_member)]) -> TripAccess:
    if not access.role.can_write:
        raise Forbidden("Viewers cannot change this trip.", code="read_only_member")
    return access


def get_trip_owner(access: Annotated[TripAccess, Depends(get_trip_member)]) -> TripAccess:
    if access.role is not Role.OWNER:
        raise Forbidden("Only an owner of the trip can do this.", code="owner_required")
    return access


TripMember = Annotated[TripAccess, Depends(get_trip_member)]
TripEditor = Annotated[TripAccess, Depends(get_trip_editor)]
TripOwner = Annotated[TripAccess, Depends(get_trip_owner)]
