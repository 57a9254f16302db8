"""Trips and their members: tables and API shapes."""

import uuid
from datetime import date, datetime
from enum import StrEnum
from typing import Any, Self

from pydantic import StrictBool, model_validator
from sqlalchemy import CheckConstraint, Index, String, text
from sqlmodel import Field, SQLModel

from app.core.columns import timestamp_column, uuid_primary_key, version_column
from app.core.fields import (
    CLIENT_ID_DESCRIPTION,
    REJECT_UNKNOWN_FIELDS,
    Currency,
    Day,
    Name,
    PartialUpdate,
    Text,
    TimeZone,
)
from app.users.models import User

MAX_TRIP_DAYS = 366


class Role(StrEnum):
    OWNER = "owner"
    EDITOR = "editor"
    VIEWER = "viewer"

    @property
    def can_write(self) -> bool:
        return self is not Role.VIEWER

    @property
    def rank(self) -> int:
        """Roles are ranked owner > editor > viewer: each may do all the next one may."""
        return _ROLE_RANKS[self]

    def includes(self, other: "Role") -> bool:
        """Whether this role grants at least what `other` grants (an owner includes an editor)."""
        return self.rank >= other.rank


_ROLE_RANKS = {Role.VIEWER: 0, Role.EDITOR: 1, Role.OWNER: 2}


def _check_dates(start: date | None, end: date | None) -> None:
    if start is None or end is None:
        return
    if end < start:
        raise ValueError("end_date must not be before start_date")
    if (end - start).days >= MAX_TRIP_DAYS:
        raise ValueError(f"a trip lasts at most {MAX_TRIP_DAYS} days")


class TripBase(SQLModel):
    name: Name = Field(max_length=200)
    destination: Text = Field(default="", max_length=200)
    start_date: Day
    end_date: Day
    timezone: TimeZone = Field(default="UTC", max_length=64)
    description: Text = Field(default="", max_length=5000)
    # Balances are computed in this currency; expenses in others store their rate to it.
    base_currency: Currency = Field(
        default="EUR", max_length=3, sa_column_kwargs={"server_default": "EUR"}
    )
    # When set, viewers see expenses without their amounts.
    hide_amounts_from_viewers: StrictBool = Field(
        default=False, sa_column_kwargs={"server_default": text("false")}
    )


class TripCreate(TripBase):
    model_config = REJECT_UNKNOWN_FIELDS

    id: uuid.UUID | None = Field(default=None, description=CLIENT_ID_DESCRIPTION)

    @model_validator(mode="after")
    def _dates_in_order(self) -> Self:
        _check_dates(self.start_date, self.end_date)
        return self


class TripUpdate(PartialUpdate):
    """The fields a member with write access may change; unknown fields are rejected."""

    name: Name | None = Field(default=None, max_length=200)
    destination: Text | None = Field(default=None, max_length=200)
    start_date: Day | None = None
    end_date: Day | None = None
    timezone: TimeZone | None = Field(default=None, max_length=64)
    description: Text | None = Field(default=None, max_length=5000)
    base_currency: Currency | None = Field(default=None, max_length=3)
    hide_amounts_from_viewers: StrictBool | None = None

    @model_validator(mode="after")
    def _dates_in_order(self) -> Self:
        _check_dates(self.start_date, self.end_date)
        return self


class Trip(TripBase, table=True):
    __tablename__ = "trips"
    __table_args__ = (
        CheckConstraint("end_date >= start_date", name="dates_in_order"),
        CheckConstraint(f"end_date - start_date < {MAX_TRIP_DAYS}", name="length"),
        CheckConstraint("base_currency ~ '^[A-Z]{3}$'", name="base_currency"),
        Index("ix_trips_created_at_id", "created_at", "id"),
    )

    id: uuid.UUID = uuid_primary_key()
    created_by: uuid.UUID | None = Field(default=None, foreign_key="users.id", ondelete="SET NULL")
    created_at: datetime = timestamp_column()
    updated_at: datetime = timestamp_column()
    version: int = version_column()
    # The trip's sync clock: every write transaction on the trip (or anything in it) takes
    # the next value while holding this row's lock; rows it writes carry that value.
    head_version: int = version_column()
    # The last version that changed what some members may see (e.g. hiding amounts):
    # their clients must reset rather than apply changes on top of a copy made before it.
    access_version: int = version_column()
    # Tombstones up to this version have been pruned: older cursors must reset.
    pruned_version: int = version_column()

    def is_valid_dates(self) -> bool:
        try:
            _check_dates(self.start_date, self.end_date)
        except ValueError:
            return False
        return True

    def hides_amounts_from(self, role: Role) -> bool:
        """The one rule for money: viewers see no amounts when the trip hides them.

        The REST reads, the balances and the sync feed all ask this.
        """
        return role == Role.VIEWER and self.hide_amounts_from_viewers


class TripPublic(TripBase):
    id: uuid.UUID
    role: Role
    created_at: datetime
    updated_at: datetime
    version: int

    @classmethod
    def of(cls, trip: Trip, role: Role) -> "TripPublic":
        # Stored values were validated on the way in; re-validating them on the way out would
        # turn a later change of the zone or currency lists into errors on every read.
        data: dict[str, Any] = trip.model_dump()
        return cls.model_construct(**data, role=role)


class TripUpdatedPublic(TripPublic):
    """The trip after an edit, with the itinerary items its new dates moved to unscheduled."""

    unscheduled_item_ids: list[uuid.UUID]


class TripMember(SQLModel, table=True):
    __tablename__ = "trip_members"
    __table_args__ = (
        Index("ix_trip_members_trip_id_version", "trip_id", "version"),
        CheckConstraint("role IN ('owner', 'editor', 'viewer')", name="role"),
        Index("ix_trip_members_user_id_trip_id", "user_id", "trip_id"),
    )

    trip_id: uuid.UUID = Field(foreign_key="trips.id", primary_key=True, ondelete="CASCADE")
    user_id: uuid.UUID = Field(foreign_key="users.id", primary_key=True, ondelete="CASCADE")
    # Stored as text with a check constraint: adding a role later is a one-line migration.
    role: Role = Field(sa_type=String(16))
    created_at: datetime = timestamp_column()
    version: int = version_column()


class MemberUpdate(SQLModel):
    model_config = REJECT_UNKNOWN_FIELDS

    role: Role


class MemberPublic(SQLModel):
    user_id: uuid.UUID
    email: str
    full_name: str
    role: Role
    joined_at: datetime
    version: int

    @classmethod
    def of(cls, member: TripMember, user: User) -> "MemberPublic":
        return cls(
            user_id=member.user_id,
            email=user.email,
            full_name=user.full_name,
            role=Role(member.role),
            joined_at=member.created_at,
            version=member.version,
        )


class OwnershipTransfer(SQLModel):
    model_config = REJECT_UNKNOWN_FIELDS

    user_id: uuid.UUID


class MembershipExported(SQLModel):
    """A trip the account is a member of, in its export."""

    trip_id: uuid.UUID
    trip_name: str
    role: Role
    joined_at: datetime
