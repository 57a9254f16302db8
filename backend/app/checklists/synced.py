"""Checklists and their items in the sync feed: others' private items are deletions."""

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Select
from sqlmodel import SQLModel, col

from app.checklists.models import Checklist, ChecklistItem, ChecklistItemPublic, visible_to
from app.core.json_sql import json_object
from app.sync.feed_sql import (
    feed_rows,
    trip_id_param,
    upsert,
    upsert_unless,
    user_id_param,
    with_deletions,
)
from app.sync.registry import SyncedEntity, Versions, register


class SyncedChecklist(SQLModel):
    """A checklist as synced: no counts, which the client derives from its items."""

    id: uuid.UUID
    kind: str
    title: str
    created_by: uuid.UUID | None
    created_at: datetime
    updated_at: datetime
    version: int


def _checklists(versions: Versions, hidden: bool, deletions: bool) -> Select[Any]:
    data = json_object(SyncedChecklist, Checklist)
    change = upsert("checklist", Checklist.id, Checklist.version, data)
    return feed_rows("checklist", Checklist.id, Checklist.version, change).where(
        col(Checklist.trip_id) == trip_id_param(), versions(Checklist.version)
    )


def _checklist_items(versions: Versions, hidden: bool, deletions: bool) -> Select[Any]:
    item = ChecklistItem
    # Others' private items: sent as deletions, so a copy that had one drops it.
    private = ~visible_to(user_id_param())
    data = json_object(ChecklistItemPublic, item)
    change = upsert_unless(private, "checklist_item", item.id, item.version, data)
    rows = feed_rows("checklist_item", item.id, item.version, change).where(
        col(item.trip_id) == trip_id_param(), versions(item.version)
    )
    return with_deletions(rows, private, deletions)


register(SyncedEntity("checklist", Checklist, position=4, reader=_checklists))
register(SyncedEntity("checklist_item", ChecklistItem, position=5, reader=_checklist_items))
