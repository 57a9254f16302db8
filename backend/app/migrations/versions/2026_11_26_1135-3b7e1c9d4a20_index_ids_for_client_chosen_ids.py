"""index ids for client-chosen ids

Creates may carry an id chosen by the client; it is checked against every trip's rows and
tombstones, which these indexes make a lookup rather than a scan.

Revision ID: 3b7e1c9d4a20
Revises: 9d19a7df392e
Create Date: 2026-11-26 11:35:00+00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "3b7e1c9d4a20"
down_revision: str | None = "9d19a7df392e"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID_INDEXES = (
    ("ix_trip_participants_id", "trip_participants"),
    ("ix_itinerary_items_id", "itinerary_items"),
    ("ix_checklists_id", "checklists"),
    ("ix_checklist_items_id", "checklist_items"),
    ("ix_trip_expenses_id", "trip_expenses"),
    ("ix_trip_settlements_id", "trip_settlements"),
)


def upgrade() -> None:
    for name, table in _ID_INDEXES:
        op.create_index(name, table, ["id"], unique=False)
    op.create_index(
        "ix_sync_tombstones_entity_entity_id",
        "sync_tombstones",
        ["entity", "entity_id"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("ix_sync_tombstones_entity_entity_id", table_name="sync_tombstones")
    for name, table in reversed(_ID_INDEXES):
        op.drop_index(name, table_name=table)
