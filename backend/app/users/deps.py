"""The caller: the bearer token, checked against the account it names (`CurrentUser`)."""

import uuid
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


def token_claims(token: str | None) -> tuple[uuid.UUID, int]:
    """The user id and token version a bearer token carries: 401 when missing or invalid."""
    if not token:
        raise Unauthorized("Authentication required: send 'Authorization: Bearer <token>'.")
    claims = decode_access_token(token)
    if claims is None:
        raise Unauthorized("The access token is invalid or expired.", code="invalid_token")
    return claims


def revoked() -> Unauthorized:
    return Unauthorized("The access token is no longer valid.", code="invalid_token")


def authenticate(session: Session, user_id: uuid.UUID, token_version: int) -> User:
    """The active user a valid token names: 401 when the account or the token was revoked."""
    user = user_service.get_active_user(session=session, user_id=user_id)
    if user is None or user.token_version != token_version:
        raise revoked()
    return user


def get_current_user(session: SessionDep, token: BearerToken) -> User:
    user_id, token_version = token_claims(token)
    return authenticate(session, user_id, token_version)


CurrentUser = Annotated[User, Depends(get_current_user)]
