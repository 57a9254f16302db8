"""Checklists (packing and to-do lists) of a trip and their items: tables and API shapes."""

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import StrictBool
from sqlalchemy import CheckConstraint, ForeignKeyConstraint, Index, String
from sqlmodel import Field, SQLModel, col, or_

from app.core.columns import timestamp_column, uuid_primary_key, version_column
from app.core.fields import CLIENT_ID_DESCRIPTION, REJECT_UNKNOWN_FIELDS, Name, PartialUpdate


class ChecklistKind(StrEnum):
    PACKING = "packing"
    TODO = "todo"


class Checklist(SQLModel, table=True):
    __tablename__ = "checklists"
    __table_args__ = (
        Index("ix_checklists_trip_id_version", "trip_id", "version"),
        # Client-chosen ids are checked across trips (app.sync.client_ids).
        Index("ix_checklists_id", "id"),
        CheckConstraint("kind IN ('packing', 'todo')", name="kind"),
        Index("ix_checklists_trip_id_created_at_id", "trip_id", "created_at", "id"),
    )

    trip_id: uuid.UUID = Field(foreign_key="trips.id", primary_key=True, ondelete="CASCADE")
    id: uuid.UUID = uuid_primary_key()
    kind: ChecklistKind = Field(sa_type=String(16))
    title: str = Field(max_length=200)
    created_by: uuid.UUID | None = Field(default=None, foreign_key="users.id", ondelete="SET NULL")
    created_at: datetime = timestamp_column()
    version: int = version_column()
    updated_at: datetime = timestamp_column()


class ChecklistItem(SQLModel, table=True):
    """One line of a checklist. A private item exists only for its creator."""

    __tablename__ = "checklist_items"
    __table_args__ = (
        Index("ix_checklist_items_trip_id_version", "trip_id", "version"),
        Index("ix_checklist_items_id", "id"),
        ForeignKeyConstraint(
            ["trip_id", "checklist_id"],
            ["checklists.trip_id", "checklists.id"],
            ondelete="CASCADE",
        ),
        ForeignKeyConstraint(
            ["trip_id", "assignee_id"],
            ["trip_participants.trip_id", "trip_participants.id"],
        ),
        Index(
            "ix_checklist_items_trip_id_checklist_id_created_at_id",
            "trip_id",
            "checklist_id",
            "created_at",
            "id",
        ),
        Index("ix_checklist_items_trip_id_assignee_id", "trip_id", "assignee_id"),
    )

    trip_id: uuid.UUID = Field(foreign_key="trips.id", primary_key=True, ondelete="CASCADE")
    id: uuid.UUID = uuid_primary_key()
    checklist_id: uuid.UUID
    text: str = Field(max_length=500)
    # A participant of the same trip (the composite key makes any other impossible).
    assignee_id: uuid.UUID | None = None
    done: StrictBool = False
    private: StrictBool = False
    created_by: uuid.UUID | None = Field(default=None, foreign_key="users.id", ondelete="SET NULL")
    created_at: datetime = timestamp_column()
    version: int = version_column()
    updated_at: datetime = timestamp_column()


# --- API shapes ----------------------------------------------------------------------------


def visible_to(user_id: Any) -> Any:
    """The one visibility rule for checklist items: a private item is its creator's alone.

    The REST reads filter with it; the sync feed sends what it excludes as deletions.
    """
    return or_(
        ~col(ChecklistItem.private), col(ChecklistItem.created_by).is_not_distinct_from(user_id)
    )


class ChecklistCreate(SQLModel):
    model_config = REJECT_UNKNOWN_FIELDS

    id: uuid.UUID | None = Field(default=None, description=CLIENT_ID_DESCRIPTION)
    kind: ChecklistKind
    title: Name = Field(max_length=200)


class ChecklistUpdate(PartialUpdate):
    kind: ChecklistKind | None = None
    title: Name | None = Field(default=None, max_length=200)


class ChecklistPublic(SQLModel):
    id: uuid.UUID
    kind: ChecklistKind
    title: str
    # Counted over the items the caller can see (others' private items are not counted).
    item_count: int
    done_count: int
    created_by: uuid.UUID | None
    created_at: datetime
    updated_at: datetime
    version: int


class ChecklistItemCreate(SQLModel):
    model_config = REJECT_UNKNOWN_FIELDS

    id: uuid.UUID | None = Field(default=None, description=CLIENT_ID_DESCRIPTION)
    text: Name = Field(max_length=500)
    assignee_id: uuid.UUID | None = None
    done: StrictBool = False
    private: StrictBool = False


class ChecklistItemUpdate(PartialUpdate):
    CLEARABLE = frozenset({"assignee_id"})  # null unassigns

    text: Name | None = Field(default=None, max_length=500)
    assignee_id: uuid.UUID | None = None
    done: StrictBool | None = None
    private: StrictBool | None = None


class ChecklistItemPublic(SQLModel):
    id: uuid.UUID
    checklist_id: uuid.UUID
    text: str
    assignee_id: uuid.UUID | None
    done: bool
    private: bool
    created_by: uuid.UUID | None
    created_at: datetime
    updated_at: datetime
    version: int


class ChecklistExported(SQLModel):
    """A checklist the account created, in its export."""

    trip_id: uuid.UUID
    id: uuid.UUID
    kind: ChecklistKind
    title: str
    created_at: datetime
    updated_at: datetime


class ChecklistItemExported(SQLModel):
    """A checklist item the account created, private ones included, in its export."""

    trip_id: uuid.UUID
    checklist_id: uuid.UUID
    id: uuid.UUID
    text: str
    done: bool
    private: bool
    created_at: datetime
    updated_at: datetime
