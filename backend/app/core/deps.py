"""Request dependencies, each defined once as an `Annotated` alias: session, user, trip access."""

import uuid
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Header, Path, Request
from fastapi.security import OAuth2PasswordBearer
from sqlmodel import Session

from app.core.db import get_session
from app.core.errors import Forbidden, Unauthorized
from app.core.preconditions import (
    ANY_VERSION,
    IF_MATCH_PATTERN,
    ExpectedVersion,
    parse_if_match,
)
from app.core.security import decode_access_token
from app.trips import service as trip_service
from app.trips.models import Role, Trip
from app.users import service as user_service
from app.users.models import User

# Function scope: commit and close happen before the response is sent (see get_session).
SessionDep = Annotated[Session, Depends(get_session, scope="function")]

_bearer = OAuth2PasswordBearer(tokenUrl="/auth/login", auto_error=False)


BearerToken = Annotated[str | None, Depends(_bearer)]


def _token_claims(token: str | None) -> tuple[uuid.UUID, int]:
    if not token:
        raise Unauthorized("Authentication required: send 'Authorization: Bearer <token>'.")
    claims = decode_access_token(token)
    if claims is None:
        raise Unauthorized("The access token is invalid or expired.", code="invalid_token")
    return claims


def _revoked() -> Unauthorized:
    return Unauthorized("The access token is no longer valid.", code="invalid_token")


def _authenticate(session: Session, user_id: uuid.UUID, token_version: int) -> User:
    user = user_service.get_active_user(session=session, user_id=user_id)
    if user is None or user.token_version != token_version:
        raise _revoked()
    return user


def get_current_user(session: SessionDep, token: BearerToken) -> User:
    user_id, token_version = _token_claims(token)
    return _authenticate(session, user_id, token_version)


CurrentUser = Annotated[User, Depends(get_current_user)]


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

    One query finds the trip, the role and the user together (the common case costs one
    round trip); only a miss looks further, to tell a revoked token (401) from a trip the
    caller is not in (404). Writes lock the trip first, so the role checked here cannot
    change before the write commits.
    """
    user_id, token_version = _token_claims(token)
    found = trip_service.find_member_access(
        session=session,
        trip_id=trip_id,
        user_id=user_id,
        lock=request.method not in _READ_METHODS,
    )
    if found is None:
        _authenticate(session, user_id, token_version)
        raise trip_service.trip_not_found()
    trip, role, user = found
    if not user.is_active or user.token_version != token_version:
        raise _revoked()
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


_IF_MATCH = (
    'The ETag of the version this change is based on, e.g. "42" (or * for any version). '
    "Another version is refused with 412 and the current one."
)

# Documented only: parse_if_match checks it and answers 400 invalid_if_match.
_IF_MATCH_SCHEMA: dict[str, Any] = {"pattern": IF_MATCH_PATTERN}


def get_expected_version(
    if_match: Annotated[
        str,
        Header(
            alias="If-Match",
            description=_IF_MATCH + " Required: 428 without it.",
            json_schema_extra=_IF_MATCH_SCHEMA,
        ),
    ],
) -> ExpectedVersion:
    # Missing, it is a validation error that the error handler answers with 428.
    return parse_if_match(if_match)


def get_optional_expected_version(
    if_match: Annotated[
        str | None,
        Header(
            alias="If-Match",
            description=_IF_MATCH + " Optional.",
            json_schema_extra=_IF_MATCH_SCHEMA,
        ),
    ] = None,
) -> ExpectedVersion:
    return ANY_VERSION if if_match is None else parse_if_match(if_match)


# Declare after the trip access dependency: the access rule answers first (401/404/403).
IfMatch = Annotated[ExpectedVersion, Depends(get_expected_version)]
OptionalIfMatch = Annotated[ExpectedVersion, Depends(get_optional_expected_version)]
