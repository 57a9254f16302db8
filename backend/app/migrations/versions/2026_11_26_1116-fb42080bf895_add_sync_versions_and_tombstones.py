"""add sync versions and tombstones

Revision ID: fb42080bf895
Revises: 52d4bf5a6cd0
Create Date: 2026-11-26 11:16:38.627439+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "fb42080bf895"
down_revision: str | None = "52d4bf5a6cd0"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "sync_tombstones",
        sa.Column("trip_id", sa.Uuid(), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("entity", sa.String(length=32), nullable=False),
        sa.Column("entity_id", sa.Uuid(), nullable=False),
        sa.Column(
            "deleted_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint(
            "trip_id", "version", "entity", "entity_id", name=op.f("pk_sync_tombstones")
        ),
    )
    op.create_index(
        "ix_sync_tombstones_deleted_at", "sync_tombstones", ["deleted_at"], unique=False
    )
    op.add_column(
        "checklist_items",
        sa.Column("version", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
    )
    op.create_index(
        "ix_checklist_items_trip_id_version",
        "checklist_items",
        ["trip_id", "version"],
        unique=False,
    )
    op.add_column(
        "checklists",
        sa.Column("version", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
    )
    op.create_index(
        "ix_checklists_trip_id_version", "checklists", ["trip_id", "version"], unique=False
    )
    op.add_column(
        "itinerary_items",
        sa.Column("version", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
    )
    op.create_index(
        "ix_itinerary_items_trip_id_version",
        "itinerary_items",
        ["trip_id", "version"],
        unique=False,
    )
    op.add_column(
        "trip_expenses",
        sa.Column("version", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
    )
    op.create_index(
        "ix_trip_expenses_trip_id_version", "trip_expenses", ["trip_id", "version"], unique=False
    )
    op.add_column(
        "trip_members",
        sa.Column("version", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
    )
    op.create_index(
        "ix_trip_members_trip_id_version", "trip_members", ["trip_id", "version"], unique=False
    )
    op.add_column(
        "trip_participants",
        sa.Column("version", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
    )
    op.create_index(
        "ix_trip_participants_trip_id_version",
        "trip_participants",
        ["trip_id", "version"],
        unique=False,
    )
    op.add_column(
        "trip_settlements",
        sa.Column("version", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
    )
    op.create_index(
        "ix_trip_settlements_trip_id_version",
        "trip_settlements",
        ["trip_id", "version"],
        unique=False,
    )
    op.add_column(
        "trips", sa.Column("version", sa.BigInteger(), server_default=sa.text("0"), nullable=False)
    )
    op.add_column(
        "trips",
        sa.Column("head_version", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
    )
    op.add_column(
        "trips",
        sa.Column("access_version", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
    )
    op.add_column(
        "trips",
        sa.Column("pruned_version", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
    )


def downgrade() -> None:
    op.drop_column("trips", "pruned_version")
    op.drop_column("trips", "access_version")
    op.drop_column("trips", "head_version")
    op.drop_column("trips", "version")
    op.drop_index("ix_trip_settlements_trip_id_version", table_name="trip_settlements")
    op.drop_column("trip_settlements", "version")
    op.drop_index("ix_trip_participants_trip_id_version", table_name="trip_participants")
    op.drop_column("trip_participants", "version")
    op.drop_index("ix_trip_members_trip_id_version", table_name="trip_members")
    op.drop_column("trip_members", "version")
    op.drop_index("ix_trip_expenses_trip_id_version", table_name="trip_expenses")
    op.drop_column("trip_expenses", "version")
    op.drop_index("ix_itinerary_items_trip_id_version", table_name="itinerary_items")
    op.drop_column("itinerary_items", "version")
    op.drop_index("ix_checklists_trip_id_version", table_name="checklists")
    op.drop_column("checklists", "version")
    op.drop_index("ix_checklist_items_trip_id_version", table_name="checklist_items")
    op.drop_column("checklist_items", "version")
    op.drop_index("ix_sync_tombstones_deleted_at", table_name="sync_tombstones")
    op.drop_table("sync_tombstones")
