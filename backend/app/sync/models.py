"""Tombstones (what was deleted from a trip, at which version, so clients can be told) and
the shape of one change in the feed."""

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel
from sqlalchemy import BigInteger, Index
from sqlmodel import Field, SQLModel

from app.core.columns import timestamp_column


class Tombstone(SQLModel, table=True):
    """A deleted synced row. No foreign key to trips: a deleted trip keeps its tombstone."""

    __tablename__ = "sync_tombstones"
    __table_args__ = (
        Index("ix_sync_tombstones_deleted_at", "deleted_at"),
        # Is this id deleted? (a create with a client-chosen id must not bring it back)
        Index("ix_sync_tombstones_entity_entity_id", "entity", "entity_id"),
    )

    trip_id: uuid.UUID = Field(primary_key=True)
    version: int = Field(sa_type=BigInteger, primary_key=True)
    entity: str = Field(max_length=32, primary_key=True)
    entity_id: uuid.UUID = Field(primary_key=True)
    deleted_at: datetime = timestamp_column()


class ChangePublic(BaseModel):
    entity: str
    id: uuid.UUID
    version: int
    op: str
    data: dict[str, Any] | None
