"""The caller: the bearer token, checked against the account and the session it names
(`CurrentUser`, and `CurrentCaller` for routes that need the session too)."""

import uuid
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends
from fastapi.security import OAuth2PasswordBearer
from sqlmodel import Session

from app.core.deps import SessionDep
from app.core.errors import Unauthorized
from app.core.security import decode_access_token
from app.users import service as user_service
from app.users.models import User

_bearer = OAuth2PasswordBearer(tokenUrl="/auth/login", auto_error=False)


BearerToken = Annotated[str | None, Depends(_bearer)]


@dataclass(frozen=True)
class Caller:
    """Who sends the request: the user, and the session (device) their access token belongs to."""

    user: User
    session_id: uuid.UUID


def token_claims(token: str | None) -> tuple[uuid.UUID, uuid.UUID]:
    """The user id and session id a bearer token carries: 401 when missing or invalid."""
    if not token:
        raise Unauthorized("Authentication required: send 'Authorization: Bearer <token>'.")
    claims = decode_access_token(token)
    if claims is None:
        raise Unauthorized("The access token is invalid or expired.", code="invalid_token")
    return claims


def revoked() -> Unauthorized:
    return Unauthorized("The access token is no longer valid.", code="invalid_token")


def authenticate(session: Session, user_id: uuid.UUID, session_id: uuid.UUID) -> User:
    """The active user of a live session, in one statement: 401 once the account is
    deactivated or the session has ended (logout, revocation, password change)."""
    user = user_service.get_signed_in_user(session=session, user_id=user_id, session_id=session_id)
    if user is None:
        raise revoked()
    return user


def get_caller(session: SessionDep, token: BearerToken) -> Caller:
    user_id, session_id = token_claims(token)
    return Caller(user=authenticate(session, user_id, session_id), session_id=session_id)


def get_current_user(session: SessionDep, token: BearerToken) -> User:
    return get_caller(session, token).user


CurrentCaller = Annotated[Caller, Depends(get_caller)]
CurrentUser = Annotated[User, Depends(get_current_user)]
