"""The itinerary: items placed on the trip's days (or unscheduled), their people, API shapes."""

import uuid
from datetime import date, datetime
from enum import StrEnum
from typing import Annotated, Self

from pydantic import Field as PydanticField
from pydantic import Strict, model_validator
from sqlalchemy import (
    CheckConstraint,
    DateTime,
    Float,
    ForeignKeyConstraint,
    Index,
    String,
    UniqueConstraint,
)
from sqlmodel import Field, SQLModel

from app.core.columns import timestamp_column, uuid_primary_key, version_column
from app.core.fields import (
    CLIENT_ID_DESCRIPTION,
    REJECT_UNKNOWN_FIELDS,
    Day,
    LocalDateTime,
    Name,
    PartialUpdate,
    Text,
    TimeZone,
)
from app.itinerary.order_keys import MAX_KEY_LENGTH

MAX_PARTICIPANTS_PER_ITEM = 200


class ItemKind(StrEnum):
    ACTIVITY = "activity"
    LODGING = "lodging"
    TRANSPORT = "transport"
    MEAL = "meal"
    NOTE = "note"


# JSON numbers only: "48.85" and true are refused rather than coerced.
Latitude = Annotated[float, Strict(), PydanticField(ge=-90, le=90, allow_inf_nan=False)]
Longitude = Annotated[float, Strict(), PydanticField(ge=-180, le=180, allow_inf_nan=False)]


class ItineraryItem(SQLModel, table=True):
    """One thing on the plan. `day` NULL means unscheduled (or trip-wide).

    Times are kept as the traveller reads them (local wall-clock value + IANA zone) and as
    UTC instants, which the database compares; a flight may leave and land in other zones.
    """

    __tablename__ = "itinerary_items"
    __table_args__ = (
        Index("ix_itinerary_items_trip_id_version", "trip_id", "version"),
        # Client-chosen ids are checked across trips (app.sync.client_ids).
        Index("ix_itinerary_items_id", "id"),
        CheckConstraint(
            "kind IN ('activity', 'lodging', 'transport', 'meal', 'note')", name="kind"
        ),
        # Base-62 digits without a trailing zero (see order_keys.py).
        CheckConstraint("order_key ~ '^[0-9A-Za-z]*[1-9A-Za-z]$'", name="order_key_format"),
        CheckConstraint(
            "(start_local IS NULL) = (start_timezone IS NULL)"
            " AND (start_local IS NULL) = (start_utc IS NULL)",
            name="start_complete",
        ),
        CheckConstraint(
            "(end_local IS NULL) = (end_timezone IS NULL)"
            " AND (end_local IS NULL) = (end_utc IS NULL)",
            name="end_complete",
        ),
        CheckConstraint(
            "end_utc IS NULL OR (start_utc IS NOT NULL AND end_utc >= start_utc)",
            name="end_not_before_start",
        ),
        CheckConstraint("latitude BETWEEN -90 AND 90", name="latitude_range"),
        CheckConstraint("longitude BETWEEN -180 AND 180", name="longitude_range"),
        CheckConstraint("(latitude IS NULL) = (longitude IS NULL)", name="coordinates_paired"),
        CheckConstraint(
            "place_name IS NOT NULL OR (place_address IS NULL AND latitude IS NULL"
            " AND place_external_id IS NULL)",
            name="place_named",
        ),
        # One order per day; NULLS NOT DISTINCT makes the unscheduled items one list too.
        UniqueConstraint("trip_id", "day", "order_key", postgresql_nulls_not_distinct=True),
    )

    trip_id: uuid.UUID = Field(foreign_key="trips.id", primary_key=True, ondelete="CASCADE")
    id: uuid.UUID = uuid_primary_key()
    kind: ItemKind = Field(sa_type=String(16))
    title: str = Field(max_length=200)
    notes: str = Field(default="", max_length=5000)
    day: date | None = None
    # Byte order, whatever the database's default collation: keys are compared as ASCII.
    order_key: str = Field(sa_type=String(MAX_KEY_LENGTH, collation="C"))
    start_local: datetime | None = Field(default=None, sa_type=DateTime(timezone=False))
    start_timezone: str | None = Field(default=None, max_length=64)
    start_utc: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    end_local: datetime | None = Field(default=None, sa_type=DateTime(timezone=False))
    end_timezone: str | None = Field(default=None, max_length=64)
    end_utc: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    place_name: str | None = Field(default=None, max_length=200)
    place_address: str | None = Field(default=None, max_length=500)
    latitude: float | None = Field(default=None, sa_type=Float)
    longitude: float | None = Field(default=None, sa_type=Float)
    place_external_id: str | None = Field(default=None, max_length=255)
    booking_reference: str = Field(default="", max_length=200)
    created_by: uuid.UUID | None = Field(default=None, foreign_key="users.id", ondelete="SET NULL")
    created_at: datetime = timestamp_column()
    version: int = version_column()
    updated_at: datetime = timestamp_column()


class ItemParticipant(SQLModel, table=True):
    """Who takes part in an item. Both keys include trip_id: no link can cross trips."""

    __tablename__ = "itinerary_item_participants"
    __table_args__ = (
        ForeignKeyConstraint(
            ["trip_id", "item_id"],
            ["itinerary_items.trip_id", "itinerary_items.id"],
            ondelete="CASCADE",
        ),
        ForeignKeyConstraint(
            ["trip_id", "participant_id"],
            ["trip_participants.trip_id", "trip_participants.id"],
        ),
        Index("ix_itinerary_item_participants_trip_id_participant_id", "trip_id", "participant_id"),
    )

    trip_id: uuid.UUID = Field(foreign_key="trips.id", primary_key=True, ondelete="CASCADE")
    item_id: uuid.UUID = Field(primary_key=True)
    participant_id: uuid.UUID = Field(primary_key=True)


# --- API shapes ----------------------------------------------------------------------------


class Place(SQLModel):
    model_config = REJECT_UNKNOWN_FIELDS

    name: Name = Field(max_length=200)
    address: Text = Field(default="", max_length=500)
    latitude: Latitude | None = None
    longitude: Longitude | None = None
    # The place's id in a maps provider, e.g. a Google or OpenStreetMap place id.
    external_id: Text | None = Field(default=None, max_length=255)

    @model_validator(mode="after")
    def _coordinates_paired(self) -> Self:
        if (self.latitude is None) != (self.longitude is None):
            raise ValueError("latitude and longitude go together")
        return self


class ItemCreate(SQLModel):
    """A new item. Zones default to the trip's (the end's to the start's)."""

    model_config = REJECT_UNKNOWN_FIELDS

    id: uuid.UUID | None = Field(default=None, description=CLIENT_ID_DESCRIPTION)
    kind: ItemKind
    title: Name = Field(max_length=200)
    notes: Text = Field(default="", max_length=5000)
    day: Day | None = None
    start_local: LocalDateTime | None = None
    start_timezone: TimeZone | None = Field(default=None, max_length=64)
    end_local: LocalDateTime | None = None
    end_timezone: TimeZone | None = Field(default=None, max_length=64)
    place: Place | None = None
    booking_reference: Text = Field(default="", max_length=200)
    participant_ids: list[uuid.UUID] = Field(
        default_factory=list, max_length=MAX_PARTICIPANTS_PER_ITEM
    )


class ItemUpdate(PartialUpdate):
    """What an edit may change; placement (day, order) changes through the move route."""

    # Times and the place may be cleared with null; everything else may only be omitted.
    CLEARABLE = frozenset({"start_local", "end_local", "place"})

    kind: ItemKind | None = None
    title: Name | None = Field(default=None, max_length=200)
    notes: Text | None = Field(default=None, max_length=5000)
    start_local: LocalDateTime | None = None
    start_timezone: TimeZone | None = Field(default=None, max_length=64)
    end_local: LocalDateTime | None = None
    end_timezone: TimeZone | None = Field(default=None, max_length=64)
    place: Place | None = None
    booking_reference: Text | None = Field(default=None, max_length=200)
    participant_ids: list[uuid.UUID] | None = Field(
        default=None, max_length=MAX_PARTICIPANTS_PER_ITEM
    )


class ItemMove(SQLModel):
    """Where to put an item: on `day` (null: unscheduled), after or before a neighbour.

    Neither neighbour: at the end of the day. Both: right after `after_id`, which must still
    sort before `before_id`.
    """

    model_config = REJECT_UNKNOWN_FIELDS

    day: Day | None
    after_id: uuid.UUID | None = None
    before_id: uuid.UUID | None = None


class ItemPublic(SQLModel):
    id: uuid.UUID
    kind: ItemKind
    title: str
    notes: str
    day: date | None
    order_key: str
    start_local: LocalDateTime | None
    start_timezone: str | None
    start_utc: datetime | None
    end_local: LocalDateTime | None
    end_timezone: str | None
    end_utc: datetime | None
    place: Place | None
    booking_reference: str
    participant_ids: list[uuid.UUID]
    created_by: uuid.UUID | None
    created_at: datetime
    updated_at: datetime
    version: int


class DayPublic(SQLModel):
    day: date
    day_number: int
    item_count: int


class ItemExported(SQLModel):
    """An itinerary item the account created, in its export: as it is now."""

    trip_id: uuid.UUID
    id: uuid.UUID
    kind: ItemKind
    title: str
    notes: str
    day: date | None
    start_local: LocalDateTime | None
    start_timezone: str | None
    end_local: LocalDateTime | None
    end_timezone: str | None
    place_name: str | None
    place_address: str | None
    latitude: float | None
    longitude: float | None
    booking_reference: str
    created_at: datetime
    updated_at: datetime
