"""Password reset tokens: issued to the address of an account, each works once, for
PASSWORD_RESET_TTL_MINUTES, and only while it is the newest one the account asked for.

The token is mailed and never stored: its row holds the SHA-256 (app.core.security), so a
read of the table gives nobody a way in. Asking for a new reset deletes the account's
earlier unused tokens (only the newest mail works); redeeming one marks it used, under a
row lock, so two requests with one token cannot both reset. Changing the account's address
or deleting the account deletes its tokens; `make cleanup` deletes them once expired.
Which flow uses them (ask, redeem, what a reset ends and mails) is in app.users.service.
"""

import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta

from sqlmodel import Session, col, delete, select

from app.core.columns import utcnow
from app.core.config import get_settings
from app.core.errors import BadRequest
from app.core.retention import delete_batch
from app.core.security import issue_opaque_token, opaque_token_hash
from app.users import export
from app.users.models import PasswordResetExported, PasswordResetToken, User


class InvalidResetToken(BadRequest):
    code = "invalid_reset_token"


def invalid_reset_token() -> InvalidResetToken:
    # One answer for a token never issued, used, expired or superseded: its holder learns
    # only that it does not work.
    return InvalidResetToken(
        "This password reset link is invalid, expired or already used; ask for a new one."
    )


def issue_reset_token(*, session: Session, user: User) -> str:
    """A new reset token of the user (returned to be mailed, never stored); the user's
    earlier unused ones stop working."""
    session.execute(
        delete(PasswordResetToken).where(
            col(PasswordResetToken.user_id) == user.id, col(PasswordResetToken.used_at).is_(None)
        )
    )
    token, token_hash = issue_opaque_token()
    now = utcnow()
    session.add(
        PasswordResetToken(
            user_id=user.id,
            token_hash=token_hash,
            created_at=now,
            expires_at=now + timedelta(minutes=get_settings().PASSWORD_RESET_TTL_MINUTES),
        )
    )
    return token


def redeem_reset_token(*, session: Session, token: str) -> User:
    """The active user a working token belongs to; the token is marked used.

    The row is locked first: of two requests with the same token, the second waits and then
    finds it used. Anything else is the one `400 invalid_reset_token`.
    """
    row = session.exec(
        select(PasswordResetToken, User)
        .join(User, col(User.id) == PasswordResetToken.user_id)
        .where(PasswordResetToken.token_hash == opaque_token_hash(token))
        .with_for_update(of=PasswordResetToken)
    ).first()
    if row is None:
        raise invalid_reset_token()
    reset, user = row
    now = utcnow()
    if reset.used_at is not None or reset.expires_at <= now or not user.is_active:
        raise invalid_reset_token()
    reset.used_at = now
    session.add(reset)
    return user


def forget_reset_tokens(*, session: Session, user_id: uuid.UUID) -> int:
    """Delete every reset token of the user (the address changed, the account is deleted);
    returns how many."""
    deleted = session.execute(
        delete(PasswordResetToken)
        .where(col(PasswordResetToken.user_id) == user_id)
        .returning(col(PasswordResetToken.id))
    ).all()
    return len(deleted)


def delete_expired_reset_tokens(*, session: Session, now: datetime, limit: int) -> int:
    """Delete up to `limit` reset tokens past their expiry, used or not (`make cleanup`)."""
    expired = col(PasswordResetToken.expires_at) < now
    return delete_batch(session, PasswordResetToken, expired, limit=limit)


def exported_resets(session: Session, user: User) -> Iterator[PasswordResetExported]:
    """The password resets the account asked for and that are still kept, for its export."""
    return export.exported_rows(
        session,
        PasswordResetExported,
        select(PasswordResetToken)
        .where(PasswordResetToken.user_id == user.id)
        .order_by(col(PasswordResetToken.created_at), col(PasswordResetToken.id)),
    )


export.register(
    export.ExportSection(
        "password_resets",
        PasswordResetExported,
        exported_resets,
        "Password resets asked for, until `make cleanup` deletes them once expired: when, "
        "until when, whether used.",
    )
)
