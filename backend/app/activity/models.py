"""The activity log: who did what to which object of a trip, and when."""

import uuid
from datetime import datetime

from sqlalchemy import Index
from sqlmodel import Field, SQLModel

from app.core.columns import timestamp_column, uuid_primary_key


class Activity(SQLModel, table=True):
    __tablename__ = "trip_activity"
    __table_args__ = (
        Index("ix_trip_activity_trip_id_created_at_id", "trip_id", "created_at", "id"),
    )

    trip_id: uuid.UUID = Field(foreign_key="trips.id", primary_key=True, ondelete="CASCADE")
    id: uuid.UUID = uuid_primary_key()
    actor_id: uuid.UUID | None = Field(default=None, foreign_key="users.id", ondelete="SET NULL")
    # Dotted verb such as "trip.updated", "member.added", "expense.created".
    action: str = Field(max_length=64)
    object_type: str = Field(max_length=32)
    object_id: uuid.UUID | None = None
    summary: str = Field(default="", max_length=500)
    # Set for changes to something private (a private checklist item): only that user sees it.
    visible_to: uuid.UUID | None = Field(default=None, foreign_key="users.id", ondelete="CASCADE")
    created_at: datetime = timestamp_column()


class ActivityPublic(SQLModel):
    id: uuid.UUID
    actor_id: uuid.UUID | None
    actor_name: str | None
    action: str
    object_type: str
    object_id: uuid.UUID | None
    summary: str
    created_at: datetime


class ActivityExported(SQLModel):
    """An activity entry of something the account did, in its export."""

    trip_id: uuid.UUID
    id: uuid.UUID
    action: str
    object_type: str
    object_id: uuid.UUID | None
    summary: str
    created_at: datetime
