"""Access tokens for the benchmarks' users: a session for each, as a login would make, and a
token of it, valid for the whole run."""

import os
import uuid
from collections.abc import Sequence

import psycopg2
from psycopg2.extras import execute_values

# Sessions of bench users have ids derived from their user's, so a reused database has them.
_BENCH_SESSIONS = uuid.UUID("be4c4000-5e55-4000-8000-000000000000")
# A run lasts longer than the default 15 minutes; tokens are minted once, before it.
RUN_MINUTES = "1440"


def signed_in(url: str, user_ids: Sequence[uuid.UUID], secret: str) -> list[str]:
    """An access token for each user (signed with `secret`), of a session made if missing."""
    session_ids = [uuid.uuid5(_BENCH_SESSIONS, str(user_id)) for user_id in user_ids]
    connection = psycopg2.connect(url.replace("postgresql+psycopg2://", "postgresql://"))
    with connection, connection.cursor() as cursor:
        execute_values(
            cursor,
            "INSERT INTO user_sessions (id, user_id, device_label, refresh_key, refresh_hash,"
            " expires_at) VALUES %s ON CONFLICT (id) DO NOTHING",
            [
                (str(session_id), str(user_id), "bench", str(uuid.uuid4()), b"")
                for session_id, user_id in zip(session_ids, user_ids, strict=True)
            ],
            template="(%s, %s, %s, %s, %s, now() + interval '30 days')",
            page_size=1000,
        )
    connection.close()
    os.environ["SECRET_KEY"] = secret
    os.environ["ACCESS_TOKEN_EXPIRE_MINUTES"] = RUN_MINUTES
    from app.core.config import get_settings
    from app.core.security import create_access_token

    get_settings.cache_clear()
    return [
        create_access_token(user_id, session_id)
        for user_id, session_id in zip(user_ids, session_ids, strict=True)
    ]
