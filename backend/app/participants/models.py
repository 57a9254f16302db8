"""Participants: who can pay or owe in a trip, members and guests alike."""

import uuid
from datetime import datetime

from sqlalchemy import Index, UniqueConstraint
from sqlmodel import Field, SQLModel

from app.core.columns import timestamp_column, uuid_primary_key, version_column
from app.core.fields import CLIENT_ID_DESCRIPTION, REJECT_UNKNOWN_FIELDS, Name


class Participant(SQLModel, table=True):
    """Someone who can pay or owe in the trip: a member (user_id set) or a guest (no account).

    Members get one when they join; a guest can later be claimed by a member, who then
    inherits its history. Rows stay when a member leaves, so the ledger keeps its meaning.
    """

    __tablename__ = "trip_participants"
    __table_args__ = (
        Index("ix_trip_participants_trip_id_version", "trip_id", "version"),
        # Client-chosen ids are checked across trips (app.sync.client_ids).
        Index("ix_trip_participants_id", "id"),
        UniqueConstraint("trip_id", "user_id"),
    )

    trip_id: uuid.UUID = Field(foreign_key="trips.id", primary_key=True, ondelete="CASCADE")
    id: uuid.UUID = uuid_primary_key()
    user_id: uuid.UUID | None = Field(default=None, foreign_key="users.id", ondelete="SET NULL")
    # A guest's name; members are shown with their account's name.
    name: str = Field(max_length=200)
    created_at: datetime = timestamp_column()
    version: int = version_column()


class GuestCreate(SQLModel):
    model_config = REJECT_UNKNOWN_FIELDS

    id: uuid.UUID | None = Field(default=None, description=CLIENT_ID_DESCRIPTION)
    name: Name = Field(max_length=200)


class GuestUpdate(SQLModel):
    model_config = REJECT_UNKNOWN_FIELDS

    name: Name = Field(max_length=200)


class ParticipantPublic(SQLModel):
    id: uuid.UUID
    name: str
    user_id: uuid.UUID | None
    is_guest: bool
    is_member: bool
    version: int

    @classmethod
    def of(
        cls, participant: Participant, *, account_name: str | None, is_member: bool
    ) -> "ParticipantPublic":
        """Members are shown with their account's name, guests with theirs."""
        return cls(
            id=participant.id,
            name=account_name if account_name is not None else participant.name,
            user_id=participant.user_id,
            is_guest=participant.user_id is None,
            is_member=is_member,
            version=participant.version,
        )


class ParticipantExported(SQLModel):
    """A participant linked to the account (in any trip it was ever in), in its export."""

    trip_id: uuid.UUID
    trip_name: str
    id: uuid.UUID
    name: str
    created_at: datetime
