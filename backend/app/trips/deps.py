"""Trip access as request dependencies: `TripMember`, `TripEditor`, `TripOwner`."""

import uuid
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Path, Request
from sqlmodel import Session

from app.core.admission import DatabaseSlotDep
from app.core.deps import SessionDep
from app.core.errors import AppError, Forbidden
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


@dataclass(frozen=True)
class TripReader:
    """For a read answered in one statement that checks access itself (app.core.db's
    `read_session`, on the route's thread): the caller's claims as that statement's
    parameters, and the answer when it finds nothing, told as `get_trip_member` tells it
    (401 for an ended session, else 404). The request holds a database slot meanwhile."""

    trip_id: uuid.UUID
    user_id: uuid.UUID
    session_id: uuid.UUID

    def parameters(self) -> dict[str, str]:
        """The values of trip_service.caller_parameters()."""
        values = (self.trip_id, self.user_id, self.session_id)
        return {name: str(value) for name, value in zip(trip_service.CALLER, values, strict=True)}

    def refused(self, session: Session, found: bool | None) -> AppError:
        """The error of a read whose access check answered `found`: None (no row: not a
        member, or no such session) or False (an account deactivated since)."""
        if found is None:
            authenticate(session, self.user_id, self.session_id)
            return trip_service.trip_not_found()
        return revoked()


async def get_trip_reader(
    _slot: DatabaseSlotDep,
    token: BearerToken,
    trip_id: Annotated[uuid.UUID, Path(description="The trip's id")],
) -> TripReader:
    """Async: it only checks the token's signature, and the read itself runs on the route's
    thread, so the whole request costs one trip through the thread pool."""
    user_id, session_id = token_claims(token)
    return TripReader(trip_id=trip_id, user_id=user_id, session_id=session_id)


TripMember = Annotated[TripAccess, Depends(get_trip_member)]
TripRead = Annotated[TripReader, Depends(get_trip_reader)]
TripEditor = Annotated[TripAccess, Depends(get_trip_editor)]
TripOwner = Annotated[TripAccess, Depends(get_trip_owner)]
