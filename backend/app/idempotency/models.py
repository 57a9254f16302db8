"""The idempotency key table: one row per (scope, key) with the first 2xx response to replay."""

import uuid
from datetime import datetime

from sqlalchemy import CheckConstraint, DateTime, LargeBinary, SmallInteger
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel

from app.core.columns import timestamp_column

# The scope of requests sent without a valid bearer token (register, verify-email).
ANONYMOUS_SCOPE = "anonymous"


def user_scope(user_id: uuid.UUID) -> str:
    return f"user:{user_id}"


class IdempotencyKey(SQLModel, table=True):
    __tablename__ = "idempotency_keys"
    # Only successes are stored: a failed request wrote nothing, so its retry runs again.
    __table_args__ = (CheckConstraint("status_code BETWEEN 200 AND 299", name="status_2xx"),)

    # "user:<id>" for an authenticated caller, ANONYMOUS_SCOPE otherwise.
    scope: str = Field(primary_key=True, max_length=64)
    key: str = Field(primary_key=True, max_length=255)
    method: str = Field(max_length=16)
    path: str  # with the query string, as the client sent it
    # HMAC-SHA256 (hex) of method, path, query and body: bodies may hold passwords.
    fingerprint: str = Field(max_length=64)
    status_code: int = Field(sa_type=SmallInteger)
    response_body: bytes = Field(sa_type=LargeBinary)
    # Only the headers a replay must repeat: content-type, location, etag.
    response_headers: dict[str, str] = Field(sa_type=JSONB)
    created_at: datetime = timestamp_column()
    expires_at: datetime = Field(sa_type=DateTime(timezone=True), index=True)
