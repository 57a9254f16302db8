"""The PostgreSQL store's table: hits of one key in one fixed window."""

from datetime import datetime

from sqlalchemy import BigInteger, DateTime, Index, Integer, String
from sqlmodel import Field, SQLModel

import app.core.columns  # noqa: F401  (the naming convention, before this table is made)


class RateLimitCounter(SQLModel, table=True):
    """Hits of one key in one window (the PostgreSQL store)."""

    __tablename__ = "rate_limit_counters"
    __table_args__ = (Index("ix_rate_limit_counters_expires_at", "expires_at"),)

    key: str = Field(sa_type=String(200), primary_key=True)
    window_number: int = Field(sa_type=BigInteger, primary_key=True)
    hits: int = Field(sa_type=Integer)
    expires_at: datetime = Field(sa_type=DateTime(timezone=True))
