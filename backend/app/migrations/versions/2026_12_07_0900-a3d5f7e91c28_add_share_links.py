"""add share links (trip_share_links: read-only links stored by token hash)

Revision ID: a3d5f7e91c28
Revises: 4f1c2e8b9a37
Create Date: 2026-12-07 09:00:00.000000+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "a3d5f7e91c28"
down_revision: str | None = "4f1c2e8b9a37"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "trip_share_links",
        sa.Column("trip_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("scope", sa.String(length=32), nullable=False),
        sa.Column("hide_amounts", sa.Boolean(), nullable=False),
        sa.Column("created_by", sa.Uuid(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "scope IN ('itinerary', 'itinerary_and_expenses')",
            name=op.f("ck_trip_share_links_scope"),
        ),
        sa.CheckConstraint(
            "expires_at > created_at", name=op.f("ck_trip_share_links_expiry_after_creation")
        ),
        sa.ForeignKeyConstraint(
            ["created_by"],
            ["users.id"],
            name=op.f("fk_trip_share_links_created_by_users"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["trip_id"],
            ["trips.id"],
            name=op.f("fk_trip_share_links_trip_id_trips"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("trip_id", "id", name=op.f("pk_trip_share_links")),
    )
    op.create_index(
        "ix_trip_share_links_created_by", "trip_share_links", ["created_by"], unique=False
    )
    op.create_index(
        "ix_trip_share_links_trip_id_created_at_id",
        "trip_share_links",
        ["trip_id", "created_at", "id"],
        unique=False,
    )
    op.create_index(
        "uq_trip_share_links_token_hash", "trip_share_links", ["token_hash"], unique=True
    )


def downgrade() -> None:
    op.drop_index("uq_trip_share_links_token_hash", table_name="trip_share_links")
    op.drop_index("ix_trip_share_links_trip_id_created_at_id", table_name="trip_share_links")
    op.drop_index("ix_trip_share_links_created_by", table_name="trip_share_links")
    op.drop_table("trip_share_links")
