"""Rate limits for logging in, second-factor codes and registering, counted in a store every
worker shares.

Fixed windows: a key (`login:account:<email>`, `login:address:<ip>`, ...) may be hit `limit`
times per window; the next hit is refused with the seconds until the window ends. The
default store is PostgreSQL, which the service needs anyway; Redis is used when
RATE_LIMIT_STORE=redis. Counts are written in their own short transaction, so a refused or
failed request still counts.
"""

import hashlib
import math
import time
from datetime import UTC, datetime
from functools import cache
from typing import Any, Protocol

from sqlalchemy import text
from sqlmodel import Session

from app.core.config import RateLimitStore, get_settings
from app.core.db import get_engine
from app.core.deadlines import deadline_of
from app.core.errors import AppError


class TooManyRequests(AppError):
    status_code, code, title = 429, "rate_limited", "Too Many Requests"

    def __init__(self, detail: str, *, retry_after: int) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


class Store(Protocol):
    def hit(self, key: str, window: int, expires_at: float) -> int:
        """Count one hit of `key` in `window`; return the hits so far in that window."""
        ...


class PostgresStore:
    def hit(self, key: str, window: int, expires_at: float) -> int:
        # Before the request's slot (app.core.deps.before_session): a deadline of its own.
        deadline = get_settings().database_deadline_seconds
        with deadline_of(deadline), get_engine().begin() as connection:
            hits = connection.execute(
                text(
                    "INSERT INTO rate_limit_counters (key, window_number, hits, expires_at)"
                    " VALUES (:key, :window, 1, :expires_at)"
                    " ON CONFLICT (key, window_number)"
                    " DO UPDATE SET hits = rate_limit_counters.hits + 1 RETURNING hits"
                ),
                {
                    "key": key,
                    "window": window,
                    "expires_at": datetime.fromtimestamp(expires_at, UTC),
                },
            ).scalar_one()
        return int(hits)


class RedisStore:
    def __init__(self, url: str) -> None:
        import redis  # only needed when configured

        self._client: Any = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)

    def hit(self, key: str, window: int, expires_at: float) -> int:
        name = f"tripsync:rate:{key}:{window}"
        pipeline = self._client.pipeline()
        pipeline.incr(name)
        pipeline.expireat(name, math.ceil(expires_at))
        hits, _ = pipeline.execute()
        return int(hits)


@cache
def _store() -> Store:
    settings = get_settings()
    if settings.RATE_LIMIT_STORE is RateLimitStore.REDIS:
        return RedisStore(settings.REDIS_URL)
    return PostgresStore()


def _key(kind: str, value: str) -> str:
    # Keys hold addresses and emails: store a digest, not the value.
    return f"{kind}:{hashlib.sha256(value.encode()).hexdigest()[:32]}"


def check(
    kind: str, value: str, limit: int, *, what: str, window_seconds: int | None = None
) -> None:
    """Count a hit; raise TooManyRequests (429) once `limit` hits in the window are exceeded.

    The window is RATE_LIMIT_WINDOW_SECONDS unless `window_seconds` says otherwise (a daily
    limit beside a short one); a kind is always counted in windows of one length.
    """
    window_seconds = window_seconds or get_settings().RATE_LIMIT_WINDOW_SECONDS
    now = time.time()
    window = int(now // window_seconds)
    ends = (window + 1) * window_seconds
    if _store().hit(_key(kind, value), window, ends) > limit:
        retry_after = max(1, math.ceil(ends - now))
        raise TooManyRequests(
            f"Too many {what}; try again in {retry_after} seconds.", retry_after=retry_after
        )


def delete_expired_counters(*, session: Session, now: datetime, limit: int) -> int:
    """For `make cleanup`: drop up to `limit` PostgreSQL counters whose window has ended."""
    result = session.execute(
        text(
            "DELETE FROM rate_limit_counters WHERE (key, window_number) IN ("
            "  SELECT key, window_number FROM rate_limit_counters WHERE expires_at < :now"
            "  LIMIT :limit FOR UPDATE SKIP LOCKED)"
        ),
        {"now": now, "limit": limit},
    )
    return int(result.rowcount)  # type: ignore[attr-defined]
