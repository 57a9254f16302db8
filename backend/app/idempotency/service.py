"""Idempotency keys in the database: the per-key lock, the stored response, expiry.

Knows nothing of HTTP: the route class (app.api.routing) decides what to store and replay.
"""

from datetime import datetime, timedelta

from sqlalchemy import delete, func
from sqlmodel import Session, col, select

from app.core.columns import utcnow
from app.core.config import get_settings
from app.core.retention import delete_batch
from app.idempotency.models import IdempotencyKey, user_scope
from app.users import hooks as user_hooks
from app.users.models import User


def lock_name(scope: str, key: str) -> str:
    return f"idempotency:{scope}:{key}"


def try_lock_key(*, session: Session, scope: str, key: str) -> bool:
    """Hold (scope, key) until this transaction ends; False when another transaction holds it."""
    locked = session.execute(
        select(func.pg_try_advisory_xact_lock(func.hashtextextended(lock_name(scope, key), 0)))
    ).scalar_one()
    return bool(locked)


def find_key(*, session: Session, scope: str, key: str) -> IdempotencyKey | None:
    return session.get(IdempotencyKey, (scope, key))


def record_key(
    *,
    session: Session,
    scope: str,
    key: str,
    method: str,
    path: str,
    fingerprint: str,
    status_code: int,
    response_body: bytes,
    response_headers: dict[str, str],
) -> IdempotencyKey:
    """Store the response in the caller's transaction, so it commits with the write itself."""
    now = utcnow()
    retention = timedelta(days=get_settings().IDEMPOTENCY_RETENTION_DAYS)
    record = IdempotencyKey(
        scope=scope,
        key=key,
        method=method,
        path=path,
        fingerprint=fingerprint,
        status_code=status_code,
        response_body=response_body,
        response_headers=response_headers,
        created_at=now,
        expires_at=now + retention,
    )
    session.add(record)
    session.flush()
    return record


def delete_expired_keys(*, session: Session, now: datetime, limit: int) -> int:
    """Delete up to `limit` keys that expired before `now`; returns how many were deleted."""
    expired = col(IdempotencyKey.expires_at) < now
    return delete_batch(session, IdempotencyKey, expired, limit=limit)


def forget_deleted_accounts_keys(*, session: Session, user: User) -> None:
    """The responses stored for the account's keys go with it (they can hold its data)."""
    session.execute(delete(IdempotencyKey).where(col(IdempotencyKey.scope) == user_scope(user.id)))


user_hooks.account_deleting.subscribe(forget_deleted_accounts_keys)
