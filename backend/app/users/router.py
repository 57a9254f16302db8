"""Routes for accounts: register, log in, and the caller's own profile."""

from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request, Response, status
from fastapi.security import OAuth2PasswordRequestForm

from app.core.admission import HASHING_TURN
from app.core.config import get_settings
from app.core.deps import SessionDep, before_session
from app.core.errors import error_responses
from app.core.security import create_access_token
from app.ratelimit import service as rate_limit
from app.users import service
from app.users.deps import CurrentUser
from app.users.models import (
    EmailVerification,
    PasswordChange,
    RegistrationAccepted,
    Token,
    UserCreate,
    UserPublic,
    UserUpdate,
)

auth_router = APIRouter(prefix="/auth", tags=["auth"])
users_router = APIRouter(prefix="/users", tags=["users"], responses=error_responses(401))


def _address(request: Request) -> str:
    # Behind a proxy, run uvicorn with --proxy-headers so this is the client, not the proxy.
    return request.client.host if request.client else "unknown"


def limit_registrations(request: Request) -> None:
    rate_limit.check(
        "register:address",
        _address(request),
        get_settings().REGISTRATIONS_PER_ADDRESS,
        what="registrations from this address",
    )


@auth_router.post(
    "/register",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=RegistrationAccepted,
    responses=error_responses(422, 429),
    dependencies=[before_session(limit_registrations), HASHING_TURN],
)
def register(session: SessionDep, data: UserCreate) -> RegistrationAccepted:
    """Register an address; the answer is the same whether or not it already has an account.

    A new address gets an account and a verification mail; an address that has an account is
    left as it was, and its owner is mailed that someone tried. Then log in (`/auth/login`).
    """
    service.register_user(session=session, data=data)
    return RegistrationAccepted(email=data.email)


@auth_router.post("/verify-email", response_model=UserPublic, responses=error_responses(400, 422))
def verify_email(session: SessionDep, data: EmailVerification) -> UserPublic:
    """Confirm the address with the token that was mailed to it."""
    return UserPublic.of(service.verify_email(session=session, token=data.token))


class LoginForm(OAuth2PasswordRequestForm):
    """The OAuth2 password form, saying what it needs: an empty form field counts as missing."""

    def __init__(
        self,
        *,
        username: Annotated[str, Form(min_length=1)],
        password: Annotated[str, Form(min_length=1, json_schema_extra={"format": "password"})],
        grant_type: Annotated[str | None, Form(pattern="^password$")] = None,
        scope: Annotated[str, Form()] = "",
        client_id: Annotated[str | None, Form()] = None,
        client_secret: Annotated[str | None, Form(json_schema_extra={"format": "password"})] = None,
    ) -> None:
        super().__init__(
            grant_type=grant_type,
            username=username,
            password=password,
            scope=scope,
            client_id=client_id,
            client_secret=client_secret,
        )


LoginFormDep = Annotated[LoginForm, Depends()]


def limit_logins(request: Request, form: LoginFormDep) -> None:
    """Count the attempt per client address and per account (429 once over the limit)."""
    settings = get_settings()
    rate_limit.check(
        "login:address",
        _address(request),
        settings.LOGIN_ATTEMPTS_PER_ADDRESS,
        what="login attempts from this address",
    )
    rate_limit.check(
        "login:account",
        form.username.lower()[:320],
        settings.LOGIN_ATTEMPTS_PER_ACCOUNT,
        what="login attempts for this account",
    )


@auth_router.post(
    "/login",
    response_model=Token,
    responses=error_responses(401, 422, 429),
    dependencies=[before_session(limit_logins), HASHING_TURN],
)
def login(session: SessionDep, response: Response, form: LoginFormDep) -> Token:
    """Exchange email and password for a bearer token (never stored for an Idempotency-Key).

    Attempts are limited per account and per client address (429 with Retry-After).
    """
    user = service.authenticate(session=session, email=form.username, password=form.password)
    # RFC 6749 section 5.1; it also keeps the token out of the idempotency records.
    response.headers["Cache-Control"] = "no-store"
    return Token(access_token=create_access_token(user.id, user.token_version))


@users_router.get("/me", response_model=UserPublic)
def read_me(user: CurrentUser) -> UserPublic:
    return UserPublic.of(user)


@users_router.patch("/me", response_model=UserPublic, responses=error_responses(409, 422))
def update_me(session: SessionDep, user: CurrentUser, data: UserUpdate) -> UserPublic:
    """Changing the email address makes it unverified until the new one is confirmed."""
    return UserPublic.of(service.update_profile(session=session, user=user, data=data))


@users_router.post("/me/verification-email", status_code=status.HTTP_202_ACCEPTED)
def resend_verification_email(session: SessionDep, user: CurrentUser) -> None:
    """Mail a new verification token to the current address."""
    service.queue_verification_email(session=session, user=user)


@users_router.put(
    "/me/password",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=error_responses(400, 422),
    dependencies=[HASHING_TURN],
)
def change_my_password(session: SessionDep, user: CurrentUser, data: PasswordChange) -> None:
    service.change_password(session=session, user=user, data=data)
