"""The feed's documents: a snapshot of a trip, and the changes after a version."""

import uuid

from pydantic import BaseModel

from app.sync.models import ChangePublic
from app.trips.models import Role


class SnapshotPublic(BaseModel):
    trip_id: uuid.UUID
    version: int
    role: Role
    rows: list[ChangePublic]


class ChangesPublic(BaseModel):
    since: int
    version: int
    has_more: bool
    changes: list[ChangePublic]
