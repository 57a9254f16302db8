"""add itinerary items (with participants and order keys) and checklists

Revision ID: f259b27db237
Revises: 5c54842add72
Create Date: 2026-11-26 10:45:08.052292+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "f259b27db237"
down_revision: str | None = "5c54842add72"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "checklists",
        sa.Column("trip_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("created_by", sa.Uuid(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint("kind IN ('packing', 'todo')", name=op.f("ck_checklists_kind")),
        sa.ForeignKeyConstraint(
            ["created_by"],
            ["users.id"],
            name=op.f("fk_checklists_created_by_users"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["trip_id"], ["trips.id"], name=op.f("fk_checklists_trip_id_trips"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("trip_id", "id", name=op.f("pk_checklists")),
    )
    op.create_index(
        "ix_checklists_trip_id_created_at_id",
        "checklists",
        ["trip_id", "created_at", "id"],
        unique=False,
    )
    op.create_table(
        "checklist_items",
        sa.Column("trip_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("checklist_id", sa.Uuid(), nullable=False),
        sa.Column("text", sa.String(length=500), nullable=False),
        sa.Column("assignee_id", sa.Uuid(), nullable=True),
        sa.Column("done", sa.Boolean(), nullable=False),
        sa.Column("private", sa.Boolean(), nullable=False),
        sa.Column("created_by", sa.Uuid(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["created_by"],
            ["users.id"],
            name=op.f("fk_checklist_items_created_by_users"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["trip_id", "assignee_id"],
            ["trip_participants.trip_id", "trip_participants.id"],
            name=op.f("fk_checklist_items_trip_id_trip_participants"),
        ),
        sa.ForeignKeyConstraint(
            ["trip_id", "checklist_id"],
            ["checklists.trip_id", "checklists.id"],
            name=op.f("fk_checklist_items_trip_id_checklists"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["trip_id"],
            ["trips.id"],
            name=op.f("fk_checklist_items_trip_id_trips"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("trip_id", "id", name=op.f("pk_checklist_items")),
    )
    op.create_index(
        "ix_checklist_items_trip_id_assignee_id",
        "checklist_items",
        ["trip_id", "assignee_id"],
        unique=False,
    )
    op.create_index(
        "ix_checklist_items_trip_id_checklist_id_created_at_id",
        "checklist_items",
        ["trip_id", "checklist_id", "created_at", "id"],
        unique=False,
    )
    op.create_table(
        "itinerary_items",
        sa.Column("trip_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("notes", sa.String(length=5000), nullable=False),
        sa.Column("day", sa.Date(), nullable=True),
        sa.Column("order_key", sa.String(length=1024, collation="C"), nullable=False),
        sa.Column("start_local", sa.DateTime(), nullable=True),
        sa.Column("start_timezone", sa.String(length=64), nullable=True),
        sa.Column("start_utc", sa.DateTime(timezone=True), nullable=True),
        sa.Column("end_local", sa.DateTime(), nullable=True),
        sa.Column("end_timezone", sa.String(length=64), nullable=True),
        sa.Column("end_utc", sa.DateTime(timezone=True), nullable=True),
        sa.Column("place_name", sa.String(length=200), nullable=True),
        sa.Column("place_address", sa.String(length=500), nullable=True),
        sa.Column("latitude", sa.Float(), nullable=True),
        sa.Column("longitude", sa.Float(), nullable=True),
        sa.Column("place_external_id", sa.String(length=255), nullable=True),
        sa.Column("booking_reference", sa.String(length=200), nullable=False),
        sa.Column("created_by", sa.Uuid(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "kind IN ('activity', 'lodging', 'transport', 'meal', 'note')",
            name=op.f("ck_itinerary_items_kind"),
        ),
        sa.CheckConstraint(
            "order_key ~ '^[0-9A-Za-z]*[1-9A-Za-z]$'",
            name=op.f("ck_itinerary_items_order_key_format"),
        ),
        sa.CheckConstraint(
            "(end_local IS NULL) = (end_timezone IS NULL)"
            " AND (end_local IS NULL) = (end_utc IS NULL)",
            name=op.f("ck_itinerary_items_end_complete"),
        ),
        sa.CheckConstraint(
            "(latitude IS NULL) = (longitude IS NULL)",
            name=op.f("ck_itinerary_items_coordinates_paired"),
        ),
        sa.CheckConstraint(
            "(start_local IS NULL) = (start_timezone IS NULL)"
            " AND (start_local IS NULL) = (start_utc IS NULL)",
            name=op.f("ck_itinerary_items_start_complete"),
        ),
        sa.CheckConstraint(
            "end_utc IS NULL OR (start_utc IS NOT NULL AND end_utc >= start_utc)",
            name=op.f("ck_itinerary_items_end_not_before_start"),
        ),
        sa.CheckConstraint(
            "latitude BETWEEN -90 AND 90", name=op.f("ck_itinerary_items_latitude_range")
        ),
        sa.CheckConstraint(
            "longitude BETWEEN -180 AND 180", name=op.f("ck_itinerary_items_longitude_range")
        ),
        sa.CheckConstraint(
            "place_name IS NOT NULL OR (place_address IS NULL AND latitude IS NULL"
            " AND place_external_id IS NULL)",
            name=op.f("ck_itinerary_items_place_named"),
        ),
        sa.ForeignKeyConstraint(
            ["created_by"],
            ["users.id"],
            name=op.f("fk_itinerary_items_created_by_users"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["trip_id"],
            ["trips.id"],
            name=op.f("fk_itinerary_items_trip_id_trips"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("trip_id", "id", name=op.f("pk_itinerary_items")),
        sa.UniqueConstraint(
            "trip_id",
            "day",
            "order_key",
            name=op.f("uq_itinerary_items_trip_id_day_order_key"),
            postgresql_nulls_not_distinct=True,
        ),
    )
    op.create_table(
        "itinerary_item_participants",
        sa.Column("trip_id", sa.Uuid(), nullable=False),
        sa.Column("item_id", sa.Uuid(), nullable=False),
        sa.Column("participant_id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["trip_id", "item_id"],
            ["itinerary_items.trip_id", "itinerary_items.id"],
            name=op.f("fk_itinerary_item_participants_trip_id_itinerary_items"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["trip_id", "participant_id"],
            ["trip_participants.trip_id", "trip_participants.id"],
            name=op.f("fk_itinerary_item_participants_trip_id_trip_participants"),
        ),
        sa.ForeignKeyConstraint(
            ["trip_id"],
            ["trips.id"],
            name=op.f("fk_itinerary_item_participants_trip_id_trips"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "trip_id", "item_id", "participant_id", name=op.f("pk_itinerary_item_participants")
        ),
    )
    op.create_index(
        "ix_itinerary_item_participants_trip_id_participant_id",
        "itinerary_item_participants",
        ["trip_id", "participant_id"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index(
        "ix_itinerary_item_participants_trip_id_participant_id",
        table_name="itinerary_item_participants",
    )
    op.drop_table("itinerary_item_participants")
    op.drop_table("itinerary_items")
    op.drop_index(
        "ix_checklist_items_trip_id_checklist_id_created_at_id", table_name="checklist_items"
    )
    op.drop_index("ix_checklist_items_trip_id_assignee_id", table_name="checklist_items")
    op.drop_table("checklist_items")
    op.drop_index("ix_checklists_trip_id_created_at_id", table_name="checklists")
    op.drop_table("checklists")
