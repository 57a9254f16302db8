"""Invitations by email: the table and its API shapes."""

import uuid
from datetime import date, datetime
from enum import StrEnum

from sqlalchemy import CheckConstraint, DateTime, Index, String, text
from sqlmodel import Field, SQLModel

from app.core.columns import timestamp_column, utcnow, uuid_primary_key
from app.core.fields import REJECT_UNKNOWN_FIELDS, Email
from app.trips.models import Role


class InvitationStatus(StrEnum):
    PENDING = "pending"
    ACCEPTED = "accepted"
    DECLINED = "declined"
    REVOKED = "revoked"
    EXPIRED = "expired"


class Invitation(SQLModel, table=True):
    __tablename__ = "trip_invitations"
    __table_args__ = (
        CheckConstraint("role IN ('owner', 'editor', 'viewer')", name="role"),
        CheckConstraint(
            "status IN ('pending', 'accepted', 'declined', 'revoked', 'expired')", name="status"
        ),
        CheckConstraint("expires_at > created_at", name="expiry_after_creation"),
        # At most one open invitation per email and trip.
        Index(
            "uq_trip_invitations_pending_email",
            "trip_id",
            "email",
            unique=True,
            postgresql_where=text("status = 'pending'"),
        ),
        Index("ix_trip_invitations_email_status", "email", "status"),
    )

    trip_id: uuid.UUID = Field(foreign_key="trips.id", primary_key=True, ondelete="CASCADE")
    id: uuid.UUID = uuid_primary_key()
    email: str = Field(max_length=320)
    role: Role = Field(sa_type=String(16))
    status: InvitationStatus = Field(default=InvitationStatus.PENDING, sa_type=String(16))
    invited_by: uuid.UUID | None = Field(default=None, foreign_key="users.id", ondelete="SET NULL")
    expires_at: datetime = Field(sa_type=DateTime(timezone=True))
    created_at: datetime = timestamp_column()
    responded_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))


class InvitationCreate(SQLModel):
    model_config = REJECT_UNKNOWN_FIELDS

    email: Email = Field(max_length=320)
    role: Role = Role.VIEWER


class InvitationPublic(SQLModel):
    id: uuid.UUID
    trip_id: uuid.UUID
    email: str
    role: Role
    status: InvitationStatus
    expires_at: datetime
    created_at: datetime

    @classmethod
    def of(cls, invitation: Invitation) -> "InvitationPublic":
        """The stored row, with a pending invitation past its date shown as expired."""
        public = cls.model_validate(invitation, from_attributes=True)
        if public.status == InvitationStatus.PENDING and public.expires_at <= utcnow():
            public.status = InvitationStatus.EXPIRED
        return public


class ReceivedInvitation(InvitationPublic):
    """What the invitee sees: enough about the trip to decide."""

    trip_name: str
    trip_start_date: date
    trip_end_date: date
    invited_by_name: str | None


class InvitationSentExported(SQLModel):
    """An invitation the account sent, in its export (with the address the account typed)."""

    trip_id: uuid.UUID
    id: uuid.UUID
    email: str
    role: Role
    status: InvitationStatus
    created_at: datetime
    expires_at: datetime
    responded_at: datetime | None


class InvitationReceivedExported(SQLModel):
    """An invitation to the account's address, in its export: the trip's name, not who sent it."""

    trip_id: uuid.UUID
    trip_name: str
    id: uuid.UUID
    role: Role
    status: InvitationStatus
    created_at: datetime
    expires_at: datetime
    responded_at: datetime | None
