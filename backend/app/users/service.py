"""Accounts: registration, authentication, profile and password changes."""

import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from app.core.columns import utcnow
from app.core.config import get_settings
from app.core.errors import BadRequest, Conflict, Forbidden, Unauthorized
from app.core.security import (
    create_email_token,
    decode_email_token,
    dummy_password_hash,
    hash_password,
    verify_password,
)
from app.outbox import service as outbox
from app.outbox.models import OutboxMessageExported
from app.users import export, hooks, password_reset, two_factor
from app.users.models import (
    EMAIL_MAX,
    FORMER_MEMBER_NAME,
    PasswordChange,
    PasswordReset,
    User,
    UserCreate,
    UserSession,
    UserUpdate,
)
from app.users.sessions import end_all_sessions

# Matches no Argon2 hash, so no password ever verifies against a deleted account.
_NO_PASSWORD = "!deleted"  # noqa: S105 (not a password: a value no hash check accepts)

# The outbox kind of the notice sent when someone registers an address that has an account.
REGISTRATION_NOTICE = "registration_attempt"
# The outbox kinds of the password reset link and of the notice that the password changed.
PASSWORD_RESET_MAIL = "password_reset"  # noqa: S105 (a template's name, not a password)
PASSWORD_CHANGED_NOTICE = "password_changed"  # noqa: S105 (likewise)


def get_active_user(*, session: Session, user_id: uuid.UUID) -> User | None:
    user = session.get(User, user_id)
    return user if user is not None and user.is_active else None


def signed_in(user_id: uuid.UUID | Any, session_id: uuid.UUID | Any) -> ColumnElement[bool]:
    """True while `session_id` is a live session of `user_id` and the account is active: the
    one rule of a valid bearer token, as a condition another statement can carry (a list that
    authenticates as it reads). The ids are values, or bind parameters of a statement built
    once."""
    return (
        select(UserSession.id)
        .join(User, col(User.id) == UserSession.user_id)
        .where(UserSession.id == session_id, User.id == user_id, col(User.is_active))
        .exists()
    )


def get_signed_in_user(
    *, session: Session, user_id: uuid.UUID, session_id: uuid.UUID
) -> User | None:
    """The active user whose session this is, in one statement; None once the session ended."""
    statement = select(User).where(User.id == user_id, signed_in(user_id, session_id))
    return session.exec(statement).first()


def get_user_by_email(*, session: Session, email: str, lock: bool = False) -> User | None:
    """The account with this address (any case); `lock`: its row locked until the commit."""
    statement = select(User).where(User.email == email.lower())
    return session.exec(statement.with_for_update() if lock else statement).first()


def _email_taken_at_flush(session: Session, user: User) -> bool:
    """Write `user` in a savepoint; True when its address was taken meanwhile (a race), and
    then nothing else of the transaction is lost."""
    try:
        with session.begin_nested():  # flushes what was pending before, outside the savepoint
            session.add(user)
            session.flush()
    except IntegrityError:
        return True
    return False


def _flush_unique_email(session: Session, user: User) -> None:
    if _email_taken_at_flush(session, user):
        raise Conflict("An account with this email already exists.", code="email_taken")


def register_user(*, session: Session, data: UserCreate) -> None:
    """Create the account and queue its verification mail; when the address already has an
    account, change nothing and queue a notice to its owner instead.

    The caller cannot tell the two apart: the route answers the same, and the password is
    hashed in both branches so the time taken does not tell either.
    """
    password_hash = hash_password(data.password)
    existing = get_user_by_email(session=session, email=data.email)
    if existing is None:
        user = User(email=data.email, full_name=data.full_name, password_hash=password_hash)
        if not _email_taken_at_flush(session, user):
            queue_verification_email(session=session, user=user)
            return
        # Another registration of this address committed first (the savepoint's rollback
        # took the losing account out of the session): the same answer as above.
        existing = get_user_by_email(session=session, email=data.email)
    if existing is not None and existing.is_active:
        _queue_registration_notice(session=session, user=existing)


def _queue_registration_notice(*, session: Session, user: User) -> None:
    """Tell the owner someone tried to register their address: at most one notice per
    REGISTRATION_NOTICE_INTERVAL_MINUTES, so repeated attempts cannot flood their inbox."""
    interval = timedelta(minutes=get_settings().REGISTRATION_NOTICE_INTERVAL_MINUTES)
    if outbox.queued_since(
        session=session, kind=REGISTRATION_NOTICE, to=user.email, since=utcnow() - interval
    ):
        return
    outbox.enqueue(
        session=session,
        kind=REGISTRATION_NOTICE,
        to=user.email,
        subject="Someone tried to register with your address on TripSync",
        context={"full_name": user.full_name, "link": outbox.public_link("/")},
    )


def queue_verification_email(*, session: Session, user: User) -> None:
    """Mail a token to the account's address; presenting it proves the address is theirs."""
    token = create_email_token(user.id, user.email)
    outbox.enqueue(
        session=session,
        kind="email_verification",
        to=user.email,
        subject="Confirm your email address for TripSync",
        context={
            "full_name": user.full_name,
            "token": token,
            "link": outbox.public_link(f"/verify-email/{token}"),
            "valid_hours": get_settings().EMAIL_VERIFICATION_TTL_HOURS,
        },
    )


def verify_email(*, session: Session, token: str) -> User:
    claims = decode_email_token(token)
    user = get_active_user(session=session, user_id=claims[0]) if claims else None
    # A token for an address the account no longer has is as invalid as a forged one.
    if claims is None or user is None or user.email != claims[1]:
        raise BadRequest("The verification token is invalid or expired.", code="invalid_token")
    if user.email_verified_at is None:
        user.email_verified_at = utcnow()
        session.add(user)
    return user


def authenticate(*, session: Session, email: str, password: str) -> User:
    # The login form is not validated like JSON bodies: a value no account can have
    # (too long, control characters such as NUL) is simply an unknown account.
    plausible = len(email) <= EMAIL_MAX and not any(ord(c) < 32 or c == "\x7f" for c in email)
    user = get_user_by_email(session=session, email=email) if plausible else None
    # Hash even when the account is unknown, so timing does not reveal which emails exist.
    password_hash = user.password_hash if user is not None else dummy_password_hash()
    if not verify_password(password, password_hash) or user is None or not user.is_active:
        raise Unauthorized("Incorrect email or password.", code="invalid_credentials")
    return user


def update_profile(*, session: Session, user: User, data: UserUpdate) -> User:
    changes = data.model_dump(exclude_unset=True)
    if "email" in changes and changes["email"] != user.email:
        existing = get_user_by_email(session=session, email=changes["email"])
        if existing is not None:
            raise Conflict("An account with this email already exists.", code="email_taken")
    email_changed = "email" in changes and changes["email"] != user.email
    for field, value in changes.items():
        setattr(user, field, value)
    if email_changed:
        user.email_verified_at = None  # the new address must be proven again
    user.updated_at = utcnow()
    _flush_unique_email(session, user)
    if email_changed:
        queue_verification_email(session=session, user=user)
        # A reset link mailed to the old address no longer gets in.
        password_reset.forget_reset_tokens(session=session, user_id=user.id)
    return user


def change_password(
    *, session: Session, user: User, data: PasswordChange, current_session_id: uuid.UUID
) -> None:
    """Every other session of the user ends (whoever knew the old password is signed out), and
    the owner is mailed that the password changed (a notice of what they did, or of a thief)."""
    if not verify_password(data.current_password, user.password_hash):
        raise BadRequest("The current password is incorrect.", code="wrong_current_password")
    now = utcnow()
    user.password_hash = hash_password(data.new_password)
    user.updated_at = now
    session.add(user)
    end_all_sessions(session=session, user_id=user.id, except_session_id=current_session_id)
    _notify_password_changed(session=session, user=user, now=now, via_reset=False)


def request_password_reset(*, session: Session, email: str) -> None:
    """Mail a reset link to the address if an active account has it; otherwise do nothing.

    The caller cannot tell the two apart: the route answers the same, no sooner than
    PASSWORD_RESET_MIN_RESPONSE_MS either way. An unverified address may ask: reading the
    mail is the proof a reset needs. The account's row is locked, so two requests at once
    leave one working token.
    """
    user = get_user_by_email(session=session, email=email, lock=True)
    if user is None or not user.is_active:
        return
    token = password_reset.issue_reset_token(session=session, user=user)
    outbox.enqueue(
        session=session,
        kind=PASSWORD_RESET_MAIL,
        to=user.email,
        subject="Reset your TripSync password",
        context={
            "full_name": user.full_name,
            "token": token,
            "link": outbox.public_link(f"/reset-password/{token}"),
            "valid_minutes": get_settings().PASSWORD_RESET_TTL_MINUTES,
        },
    )


def reset_password(*, session: Session, data: PasswordReset) -> User:
    """Set a new password with a mailed reset token, which is used up.

    Every session of the account ends (whoever knew the old password, or held a device, is
    signed out), the address counts as verified (the token was mailed to it, and an address
    change deletes the tokens), and the owner is mailed that the password changed.
    """
    user = password_reset.redeem_reset_token(session=session, token=data.token)
    now = utcnow()
    user.password_hash = hash_password(data.new_password)
    if user.email_verified_at is None:
        user.email_verified_at = now
    user.updated_at = now
    session.add(user)
    end_all_sessions(session=session, user_id=user.id)
    _notify_password_changed(session=session, user=user, now=now, via_reset=True)
    return user


def _notify_password_changed(
    *, session: Session, user: User, now: datetime, via_reset: bool
) -> None:
    outbox.enqueue(
        session=session,
        kind=PASSWORD_CHANGED_NOTICE,
        to=user.email,
        subject="Your TripSync password was changed",
        context={
            "full_name": user.full_name,
            "changed_at": now.strftime("%Y-%m-%d %H:%M UTC"),
            "via_reset": via_reset,
            "link": outbox.public_link("/"),
        },
    )


def deleted_address(user_id: uuid.UUID) -> str:
    """The unique, undeliverable address (RFC 2606 `.invalid`) a deleted account keeps, so
    its real address is free to register again."""
    return f"deleted-{user_id.hex}@deleted.invalid"


def delete_account(*, session: Session, user: User, password: str) -> None:
    """Delete the account, confirmed with its password; refused while it solely owns a trip.

    Every feature that refers to the account ends or anonymises that (app.users.hooks: the
    memberships end and are announced, the participants become "former member" guests so
    the ledger keeps its sums, private rows go), then the row itself is emptied of personal
    data: it stays, so what others recorded (an expense's author, an activity entry) still
    points somewhere, shown as FORMER_MEMBER_NAME. It can never sign in again: inactive, no
    password, no second factor, and every session ended, so its access and refresh tokens are
    refused.
    """
    if not verify_password(password, user.password_hash):
        raise Forbidden(
            "The password is incorrect; the account was not deleted.", code="wrong_password"
        )
    # One deletion of an account at a time: a second one waits here, then finds it gone.
    session.refresh(user, with_for_update=True)
    if user.deleted_at is not None or not user.is_active:
        raise Unauthorized("The access token is no longer valid.", code="invalid_token")
    hooks.account_deletable(session=session, user=user)
    hooks.account_deleting(session=session, user=user)
    outbox.forget_recipient(session=session, address=user.email)  # unsent mail is not sent
    two_factor.forget(session=session, user_id=user.id)  # its secret and recovery codes
    now = utcnow()
    user.email = deleted_address(user.id)
    user.full_name = FORMER_MEMBER_NAME
    user.password_hash = _NO_PASSWORD
    user.email_verified_at = None
    user.is_active = False
    user.deleted_at = user.updated_at = now
    session.add(user)
    end_all_sessions(session=session, user_id=user.id)  # its access and refresh tokens stop
    password_reset.forget_reset_tokens(session=session, user_id=user.id)
    session.flush()


def exported_mail(session: Session, user: User) -> Iterator[OutboxMessageExported]:
    """The mail queued for the account's address (until the outbox's retention), for its export."""
    return export.exported_rows(session, OutboxMessageExported, outbox.messages_to(user.email))


export.register(
    export.ExportSection(
        "mail",
        OutboxMessageExported,
        exported_mail,
        "Mail to the account's address still kept by the outbox: its kind, state and times.",
    )
)
