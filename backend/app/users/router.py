"""Routes for accounts: register, log in (with a second step for two-factor sign-in),
refresh, log out, and the caller's own profile, sessions and second factor."""

import time
import uuid
from collections.abc import AsyncIterator
from typing import Annotated

import anyio
from fastapi import APIRouter, Depends, Form, Request, Response, status
from fastapi.responses import StreamingResponse
from fastapi.security import OAuth2PasswordRequestForm

from app.core.admission import HASHING_TURN
from app.core.config import get_settings
from app.core.deps import SessionDep, SnapshotSessionDep, before_session
from app.core.errors import PROBLEM_MEDIA_TYPE, error_responses
from app.core.fields import NAME_PATTERN
from app.core.pagination import Page, PageParams
from app.core.preconditions import location_responses
from app.core.security import decode_access_token
from app.ratelimit import service as rate_limit
from app.users import calendar, export, service, sessions, two_factor
from app.users.deps import BearerToken, CurrentCaller, CurrentUser, authenticate, token_claims
from app.users.models import (
    DEVICE_LABEL_MAX,
    AccountDeletion,
    CalendarFeedTokenCreated,
    EmailVerification,
    MfaRequiredProblem,
    PasswordChange,
    PasswordReset,
    PasswordResetRequest,
    PasswordResetRequested,
    RefreshRequest,
    RegistrationAccepted,
    Token,
    TwoFactorCode,
    TwoFactorEnabled,
    TwoFactorEnrolment,
    TwoFactorEnrolmentRequest,
    TwoFactorLogin,
    TwoFactorRemoval,
    TwoFactorStatus,
    UserCreate,
    UserPublic,
    UserSessionPublic,
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


async def answer_no_sooner_than_the_reset_floor() -> AsyncIterator[None]:
    """Hold a reset request's answer until PASSWORD_RESET_MIN_RESPONSE_MS after it started.

    Solved first (before the session) and so left last: the wait comes after the commit and
    after the database slot is given back, on the event loop, holding nothing.
    """
    started = time.monotonic()
    yield
    floor = get_settings().PASSWORD_RESET_MIN_RESPONSE_MS / 1000
    remaining = floor - (time.monotonic() - started)
    if remaining > 0:
        await anyio.sleep(remaining)


def limit_password_resets(request: Request, data: PasswordResetRequest) -> None:
    """Count the request per client address and per email address typed (429 over either)."""
    settings = get_settings()
    rate_limit.check(
        "password_reset:address",
        _address(request),
        settings.PASSWORD_RESETS_PER_ADDRESS,
        what="password reset requests from this address",
    )
    rate_limit.check(
        "password_reset:account",
        data.email,
        settings.PASSWORD_RESETS_PER_ACCOUNT,
        what="password reset requests for this email address",
    )


@auth_router.post(
    "/password-reset",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=PasswordResetRequested,
    responses=error_responses(422, 429),
    dependencies=[
        before_session(answer_no_sooner_than_the_reset_floor),
        before_session(limit_password_resets),
    ],
)
def request_password_reset(
    session: SessionDep, data: PasswordResetRequest
) -> PasswordResetRequested:
    """Ask for a password reset link by email; the answer is the same whether or not the
    address has an account, and comes no sooner than PASSWORD_RESET_MIN_RESPONSE_MS.

    An active account with this address is mailed a link (`PUBLIC_URL#/reset-password/<token>`)
    that works once, for PASSWORD_RESET_TTL_MINUTES; asking again makes earlier links stop
    working. Limited per email address and per client address (429 with Retry-After).
    """
    service.request_password_reset(session=session, email=data.email)
    minutes = get_settings().PASSWORD_RESET_TTL_MINUTES
    return PasswordResetRequested(
        email=data.email,
        message=(
            "If an account has this address, a link to choose a new password is on its way "
            f"to it. The link works once, for {minutes} minutes."
        ),
    )


@auth_router.post(
    "/password-reset/confirm",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=error_responses(400, 422),
    dependencies=[HASHING_TURN],
)
def confirm_password_reset(session: SessionDep, data: PasswordReset) -> None:
    """Set a new password with the token of a reset mail; then log in with it.

    The token is used up; every session of the account ends (its access and refresh tokens
    stop working), the address counts as verified, and a notice is mailed to it. A token
    that does not work, for whatever reason (unknown, used, expired, superseded by a newer
    request), is `400 invalid_reset_token`.
    """
    service.reset_password(session=session, data=data)


class LoginForm(OAuth2PasswordRequestForm):
    """The OAuth2 password form, saying what it needs: an empty form field counts as missing.

    One field more than OAuth2's: `device_label`, what the session list calls this device
    (else its User-Agent).
    """

    def __init__(
        self,
        *,
        username: Annotated[str, Form(min_length=1)],
        password: Annotated[str, Form(min_length=1, json_schema_extra={"format": "password"})],
        grant_type: Annotated[str | None, Form(pattern="^password$")] = None,
        scope: Annotated[str, Form()] = "",
        client_id: Annotated[str | None, Form()] = None,
        client_secret: Annotated[str | None, Form(json_schema_extra={"format": "password"})] = None,
        device_label: Annotated[
            str | None,
            Form(
                max_length=DEVICE_LABEL_MAX,
                pattern=NAME_PATTERN,
                description="What GET /users/me/sessions calls this device (default: its "
                "User-Agent), e.g. 'Ada's phone'.",
            ),
        ] = None,
    ) -> None:
        super().__init__(
            grant_type=grant_type,
            username=username,
            password=password,
            scope=scope,
            client_id=client_id,
            client_secret=client_secret,
        )
        self.device_label = device_label


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
    responses={
        **error_responses(422, 429),
        401: {"model": MfaRequiredProblem, "content": {PROBLEM_MEDIA_TYPE: {}}},
    },
    dependencies=[before_session(limit_logins), HASHING_TURN],
)
def login(session: SessionDep, request: Request, response: Response, form: LoginFormDep) -> Token:
    """Exchange email and password for a new session of this device: an access token
    (`expires_in` seconds) and a refresh token (never stored for an Idempotency-Key).

    An account with two-factor sign-in gets no tokens here: the right password answers `401
    mfa_required` with an `mfa_token` (valid `mfa_token_expires_in` seconds), which `POST
    /auth/login/2fa` exchanges, with a code, for the tokens. A 200 is always the token
    response. Attempts are limited per account and per client address (429 with
    Retry-After).
    """
    user = service.authenticate(session=session, email=form.username, password=form.password)
    # RFC 6749 section 5.1; it also keeps the tokens out of the idempotency records.
    response.headers["Cache-Control"] = "no-store"
    label = sessions.device_label(form.device_label, request.headers.get("user-agent"))
    two_factor.require_second_factor(session=session, user=user, device_label=label)
    return sessions.start_session(session=session, user=user, label=label)


def _limit_second_factor(user_id: str) -> None:
    """Count a check of a password or code for the account's second factor: per window and
    per day, so a 6-digit code cannot be guessed (429 with Retry-After beyond either)."""
    settings = get_settings()
    what = "second-factor attempts for this account"
    rate_limit.check(
        "two-factor:account", user_id, settings.TWO_FACTOR_ATTEMPTS_PER_ACCOUNT, what=what
    )
    rate_limit.check(
        "two-factor:account:day",
        user_id,
        settings.TWO_FACTOR_ATTEMPTS_PER_ACCOUNT_DAILY,
        what=what + " today",
        window_seconds=24 * 60 * 60,
    )


def two_factor_login(data: TwoFactorLogin) -> TwoFactorLogin:
    return data


TwoFactorLoginDep = Annotated[TwoFactorLogin, Depends(two_factor_login)]


def limit_second_steps(request: Request, data: TwoFactorLoginDep) -> None:
    """Count the attempt per client address (with the logins) and per account the token
    names."""
    rate_limit.check(
        "login:address",
        _address(request),
        get_settings().LOGIN_ATTEMPTS_PER_ADDRESS,
        what="login attempts from this address",
    )
    user_id = two_factor.mfa_token_user(data.mfa_token)
    if user_id is not None:
        _limit_second_factor(str(user_id))


@auth_router.post(
    "/login/2fa",
    response_model=Token,
    responses=error_responses(401, 422, 429),
    dependencies=[before_session(limit_second_steps)],
)
def login_second_step(session: SessionDep, response: Response, data: TwoFactorLoginDep) -> Token:
    """Finish a login that answered `401 mfa_required`: its `mfa_token` and the code the
    authenticator app shows now (or an unused recovery code) give the session's tokens.

    `401 invalid_two_factor_code` for a wrong code or one already used (each code works
    once), `401 invalid_mfa_token` once the token expired, was used, or its password
    changed: log in again. Attempts are limited per account (429 with Retry-After).
    """
    response.headers["Cache-Control"] = "no-store"
    return two_factor.finish_login(session=session, mfa_token=data.mfa_token, code=data.code)


@auth_router.post("/refresh", response_model=Token, responses=error_responses(401, 422))
def refresh(session: SessionDep, response: Response, data: RefreshRequest) -> Token:
    """Exchange the session's refresh token for new tokens; the one sent stops working.

    Sending a refresh token that was already used ends its session (401): a copy of it may
    be in other hands. Never stored for an Idempotency-Key.
    """
    response.headers["Cache-Control"] = "no-store"
    return sessions.refresh_session(session=session, refresh_token=data.refresh_token)


@auth_router.post("/logout", status_code=status.HTTP_204_NO_CONTENT, responses=error_responses(401))
def logout(session: SessionDep, caller: CurrentCaller) -> None:
    """End the caller's session: its access and refresh tokens stop working at once."""
    sessions.end_session(session=session, user_id=caller.user.id, session_id=caller.session_id)


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
def change_my_password(session: SessionDep, caller: CurrentCaller, data: PasswordChange) -> None:
    """Every other session of the caller ends; this one goes on."""
    service.change_password(
        session=session, user=caller.user, data=data, current_session_id=caller.session_id
    )


@users_router.get(
    "/me/sessions", response_model=Page[UserSessionPublic], responses=error_responses(400, 422)
)
def list_my_sessions(
    session: SessionDep, caller: CurrentCaller, page: PageParams
) -> Page[UserSessionPublic]:
    """My sessions (one per signed-in device), newest first; `current` marks this one."""
    rows, last = sessions.list_sessions(session=session, user_id=caller.user.id, page=page)
    return Page(
        items=[
            UserSessionPublic(
                id=row.id,
                device_label=row.device_label,
                created_at=row.created_at,
                last_used_at=row.last_used_at,
                current=row.id == caller.session_id,
            )
            for row in rows
        ],
        next_cursor=page.cursor_for(last),
    )


@users_router.delete(
    "/me/sessions/{session_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=error_responses(404, 422),
)
def revoke_my_session(session: SessionDep, user: CurrentUser, session_id: uuid.UUID) -> None:
    """End one of my sessions (e.g. a lost phone): its tokens stop working at once."""
    sessions.end_session(session=session, user_id=user.id, session_id=session_id)


def limit_second_factor_changes(token: BearerToken) -> None:
    """Count the caller's attempt at a password or code (the token is checked afterwards;
    without a valid one the route answers 401 and nothing is counted)."""
    claims = decode_access_token(token) if token else None
    if claims is not None:
        _limit_second_factor(str(claims[0]))


_CHECKS_SECOND_FACTOR = before_session(limit_second_factor_changes)


@users_router.get("/me/2fa", response_model=TwoFactorStatus)
def read_my_two_factor(session: SessionDep, user: CurrentUser) -> TwoFactorStatus:
    """Whether logging in asks for a second factor, and how many recovery codes are left."""
    return two_factor.status(session=session, user=user)


@users_router.post(
    "/me/2fa",
    response_model=TwoFactorEnrolment,
    responses=error_responses(403, 409, 422, 429),
    dependencies=[_CHECKS_SECOND_FACTOR, HASHING_TURN],
)
def start_two_factor(
    session: SessionDep, user: CurrentUser, response: Response, data: TwoFactorEnrolmentRequest
) -> TwoFactorEnrolment:
    """Start turning on two-factor sign-in, confirmed with the password (`403
    wrong_password`): a new secret for an authenticator app, as text and as an `otpauth://`
    URI (a QR code's content). Nothing changes at login until `POST /users/me/2fa/confirm`;
    starting again replaces the secret. `409 two_factor_enabled` once it is on. Shown once
    (never stored for an Idempotency-Key).
    """
    response.headers["Cache-Control"] = "no-store"
    return two_factor.start_enrolment(session=session, user=user, password=data.password)


@users_router.post(
    "/me/2fa/confirm",
    response_model=TwoFactorEnabled,
    responses=error_responses(403, 409, 422, 429),
    dependencies=[_CHECKS_SECOND_FACTOR],
)
def confirm_two_factor(
    session: SessionDep, caller: CurrentCaller, response: Response, data: TwoFactorCode
) -> TwoFactorEnabled:
    """Turn two-factor sign-in on with the code the app shows now (`403
    invalid_two_factor_code` otherwise). Answers the recovery codes, shown this once (never
    stored for an Idempotency-Key). Every other session of the caller ends; a notice is
    mailed.
    """
    response.headers["Cache-Control"] = "no-store"
    codes = two_factor.confirm_enrolment(
        session=session, user=caller.user, code=data.code, current_session_id=caller.session_id
    )
    return TwoFactorEnabled(recovery_codes=codes)


@users_router.delete(
    "/me/2fa",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=error_responses(403, 409, 422, 429),
    dependencies=[_CHECKS_SECOND_FACTOR, HASHING_TURN],
)
def disable_two_factor(session: SessionDep, caller: CurrentCaller, data: TwoFactorRemoval) -> None:
    """Turn two-factor sign-in off, with the password (`403 wrong_password`) and a code or a
    recovery code (`403 invalid_two_factor_code`); `409 two_factor_not_enabled` when it is
    off. Every other session of the caller ends; a notice is mailed.
    """
    two_factor.disable(
        session=session,
        user=caller.user,
        password=data.password,
        code=data.code,
        current_session_id=caller.session_id,
    )


@users_router.post(
    "/me/calendar-token",
    status_code=status.HTTP_201_CREATED,
    response_model=CalendarFeedTokenCreated,
    responses=location_responses(
        "`/users/me/calendar-token`, the caller's one token: it has no GET (the token is "
        "shown once); DELETE revokes it there."
    ),
)
def create_calendar_token(
    session: SessionDep, user: CurrentUser, response: Response
) -> CalendarFeedTokenCreated:
    """A calendar feed token, shown this once (only its hash is kept): `GET
    /trips/{trip_id}/calendar.ics?token=...` then serves any trip the caller is a member of.
    Asking again replaces the token; addresses holding the old one stop working at once.
    """
    response.headers["Cache-Control"] = "no-store"
    response.headers["Location"] = "/users/me/calendar-token"
    return calendar.issue_token(session=session, user=user)


@users_router.delete("/me/calendar-token", status_code=status.HTTP_204_NO_CONTENT)
def revoke_calendar_token(session: SessionDep, user: CurrentUser) -> None:
    """Revoke the caller's calendar feed token (nothing to do without one): every feed
    address holding it answers 404 from now on."""
    calendar.revoke_token(session=session, user=user)


@users_router.delete(
    "/me",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=error_responses(403, 409, 422),
    dependencies=[HASHING_TURN],
)
def delete_me(session: SessionDep, user: CurrentUser, data: AccountDeletion) -> None:
    """Delete the account, confirmed with its password (`403 wrong_password` otherwise).

    Refused with `409 sole_owner` while the account is the only owner of a trip: the
    problem's `blocking` lists those trips (id, name); make another member owner (`POST
    /trips/{id}/transfer-ownership`) or delete each first. The ledger keeps the account's
    entries under a "Former member" guest, so every balance still sums to zero; its
    memberships end (announced to live sync), its personal data is erased, its tokens stop
    working and its email address can register again.
    """
    service.delete_account(session=session, user=user, password=data.password)


def export_router() -> APIRouter:
    """`GET /users/me/export`: declared when the app is assembled, once every feature has
    registered its section (app.users.export), so the OpenAPI document describes them all."""
    router = APIRouter(prefix="/users", tags=["users"], responses=error_responses(401))

    @router.get("/me/export", response_model=export.document_model())
    def export_me(session: SnapshotSessionDep, token: BearerToken) -> StreamingResponse:
        """Everything stored about the caller, as one JSON document, streamed as it is read.

        One consistent snapshot of the database; other people appear only as far as the
        caller's own records need them (docs/api.md, "Account export"). A download cut
        short is not valid JSON: fetch it again.
        """
        user = authenticate(session, *token_claims(token))
        return StreamingResponse(
            export.stream_document(session, user),
            media_type="application/json",
            headers={
                "Cache-Control": "no-store",
                "Content-Disposition": 'attachment; filename="tripsync-export.json"',
            },
        )

    return router
