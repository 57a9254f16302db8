"""Sessions: one per signed-in device, with a short-lived access token and a refresh token
that is replaced at each use.

A session ends at logout, when its user revokes it, when the password changes on another
session (`end_all_sessions`), when an old refresh token of it is presented again (whoever
holds a copy of it is not to be trusted, so neither copy keeps working), and when it stays
unused for REFRESH_TOKEN_TTL_DAYS. Ending it deletes the row: its refresh token stops
working at once, and so do its access tokens, which name it and are checked against it in
the statement that authenticates every request (app.users.service.get_signed_in_user).
"""

import hmac
import logging
import re
import uuid
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta

from sqlmodel import Session, col, delete, select

from app.core.columns import utcnow
from app.core.config import get_settings
from app.core.errors import NotFound, Unauthorized
from app.core.pagination import PageRequest, Position, keyset_page, split_page
from app.core.security import create_access_token, issue_refresh_token, read_refresh_token
from app.users import export, hooks
from app.users.models import DEVICE_LABEL_MAX, Token, User, UserSession, UserSessionExported

logger = logging.getLogger(__name__)

UNKNOWN_DEVICE = "Unknown device"
# Control characters (C0, DEL, C1) and runs of white space become one space in a label.
_UNPRINTABLE_OR_SPACE = re.compile(r"[\x00-\x20\x7f-\x9f]+")


class InvalidRefreshToken(Unauthorized):
    code = "invalid_refresh_token"


class RefreshTokenReused(InvalidRefreshToken):
    """An earlier refresh token of a session was presented: the session was ended."""

    keeps_writes = True  # the ending of the session commits, although the request fails


def _invalid_refresh_token() -> InvalidRefreshToken:
    return InvalidRefreshToken(
        "The refresh token is invalid or expired, or its session has ended: log in again."
    )


def device_label(requested: str | None, user_agent: str | None) -> str:
    """The label the session list shows: the one the client sent, else its User-Agent, on one
    line and cut to DEVICE_LABEL_MAX characters."""
    for candidate in (requested, user_agent):
        label = _UNPRINTABLE_OR_SPACE.sub(" ", candidate or "").strip()
        if label:
            return label[:DEVICE_LABEL_MAX].rstrip()
    return UNKNOWN_DEVICE


def _expiry(now: datetime) -> datetime:
    return now + timedelta(days=get_settings().REFRESH_TOKEN_TTL_DAYS)


def _tokens(user_session: UserSession) -> Token:
    """New tokens for the session: its refresh token is replaced (the old one now counts as
    reuse), and its use is recorded."""
    refresh_token, refresh_hash = issue_refresh_token(user_session.refresh_key)
    now = utcnow()
    user_session.refresh_hash = refresh_hash
    user_session.last_used_at = now
    user_session.expires_at = _expiry(now)
    return Token(
        access_token=create_access_token(user_session.user_id, user_session.id),
        expires_in=get_settings().ACCESS_TOKEN_EXPIRE_MINUTES * 60,
        refresh_token=refresh_token,
    )


def start_session(*, session: Session, user: User, label: str) -> Token:
    """A new session of the user (a login), and its first tokens."""
    user_session = UserSession(
        user_id=user.id, device_label=label, refresh_hash=b"", expires_at=_expiry(utcnow())
    )
    tokens = _tokens(user_session)
    session.add(user_session)
    return tokens


def refresh_session(*, session: Session, refresh_token: str) -> Token:
    """New tokens for the current refresh token of a session, which stops working.

    The session's row is locked first, so of two requests with the same token one rotates
    it and the other finds it already used. A refresh token of the session that is not its
    current one is reuse: the session ends (committed although the answer is 401), and the
    event is logged.
    """
    presented = read_refresh_token(refresh_token)
    if presented is None:
        raise _invalid_refresh_token()
    refresh_key, presented_hash = presented
    row = session.exec(
        select(UserSession, User)
        .join(User, col(User.id) == UserSession.user_id)
        .where(UserSession.refresh_key == refresh_key)
        .with_for_update(of=UserSession)
    ).first()
    if row is None:
        raise _invalid_refresh_token()
    user_session, user = row
    if user_session.expires_at <= utcnow() or not user.is_active:
        raise _invalid_refresh_token()
    if not hmac.compare_digest(presented_hash, user_session.refresh_hash):
        session.delete(user_session)
        hooks.sessions_ended(session=session, session_ids=[user_session.id])
        logger.warning("refresh token reuse: ended session %s of user %s", user_session.id, user.id)
        raise RefreshTokenReused(
            "This refresh token was already used, so a copy of it may be in other hands: its "
            "session has been ended. Log in again."
        )
    tokens = _tokens(user_session)
    session.add(user_session)
    return tokens


def end_session(*, session: Session, user_id: uuid.UUID, session_id: uuid.UUID) -> None:
    """End one session of the user: 404 for a session that is not theirs, as for a missing one."""
    ended = session.execute(
        delete(UserSession)
        .where(col(UserSession.id) == session_id, col(UserSession.user_id) == user_id)
        .returning(col(UserSession.id))
    ).first()
    if ended is None:
        raise NotFound("No such session.", code="session_not_found")
    hooks.sessions_ended(session=session, session_ids=[session_id])


def end_all_sessions(
    *, session: Session, user_id: uuid.UUID, except_session_id: uuid.UUID | None = None
) -> int:
    """End every session of the user (but `except_session_id`, when given): for a password
    change (the caller's own session stays), a reset or a deactivation. Returns how many."""
    statement = delete(UserSession).where(col(UserSession.user_id) == user_id)
    if except_session_id is not None:
        statement = statement.where(col(UserSession.id) != except_session_id)
    ended = [row[0] for row in session.execute(statement.returning(col(UserSession.id)))]
    if ended:
        hooks.sessions_ended(session=session, session_ids=ended)
    return len(ended)


def list_sessions(
    *, session: Session, user_id: uuid.UUID, page: PageRequest
) -> tuple[list[UserSession], Position | None]:
    """The user's sessions, newest first, by keyset on (created_at, id)."""
    statement = select(UserSession).where(UserSession.user_id == user_id)
    statement = keyset_page(
        statement, page, UserSession.created_at, UserSession.id, descending=True
    )
    rows: Sequence[UserSession] = session.exec(statement).all()
    return split_page(rows, page.limit, lambda row: Position(row.created_at, row.id))


def delete_expired_sessions(*, session: Session, now: datetime, limit: int) -> int:
    """Delete up to `limit` sessions unused past their expiry; returns how many (`make cleanup`)."""
    expired = (
        select(UserSession.id)
        .where(col(UserSession.expires_at) < now)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    deleted = [
        row[0]
        for row in session.execute(
            delete(UserSession)
            .where(col(UserSession.id).in_(expired))
            .returning(col(UserSession.id))
        )
    ]
    if deleted:
        hooks.sessions_ended(session=session, session_ids=deleted)
    return len(deleted)


def exported_sessions(session: Session, user: User) -> Iterator[UserSessionExported]:
    """The account's sessions (signed-in devices), for its export."""
    return export.exported_rows(
        session,
        UserSessionExported,
        select(UserSession)
        .where(UserSession.user_id == user.id)
        .order_by(col(UserSession.created_at), col(UserSession.id)),
    )


export.register(
    export.ExportSection(
        "sessions",
        UserSessionExported,
        exported_sessions,
        "The account's signed-in devices: label, when each signed in and was last used.",
    )
)
