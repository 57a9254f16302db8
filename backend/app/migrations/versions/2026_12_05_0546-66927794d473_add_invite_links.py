"""add invite links (trip_invite_links: shareable links stored by token hash)

Revision ID: 66927794d473
Revises: e7a9d08aa761
Create Date: 2026-12-05 05:46:06.329493+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "66927794d473"
down_revision: str | None = "e7a9d08aa761"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "trip_invite_links",
        sa.Column("trip_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("created_by", sa.Uuid(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("max_uses", sa.Integer(), nullable=False),
        sa.Column("uses", sa.Integer(), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "role IN ('owner', 'editor', 'viewer')", name=op.f("ck_trip_invite_links_role")
        ),
        sa.CheckConstraint(
            "expires_at > created_at", name=op.f("ck_trip_invite_links_expiry_after_creation")
        ),
        sa.CheckConstraint(
            "max_uses BETWEEN 1 AND 1000", name=op.f("ck_trip_invite_links_max_uses_range")
        ),
        sa.CheckConstraint(
            "uses BETWEEN 0 AND max_uses", name=op.f("ck_trip_invite_links_uses_within_max")
        ),
        sa.ForeignKeyConstraint(
            ["created_by"],
            ["users.id"],
            name=op.f("fk_trip_invite_links_created_by_users"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["trip_id"],
            ["trips.id"],
            name=op.f("fk_trip_invite_links_trip_id_trips"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("trip_id", "id", name=op.f("pk_trip_invite_links")),
    )
    op.create_index(
        "ix_trip_invite_links_created_by", "trip_invite_links", ["created_by"], unique=False
    )
    op.create_index(
        "ix_trip_invite_links_trip_id_created_at_id",
        "trip_invite_links",
        ["trip_id", "created_at", "id"],
        unique=False,
    )
    op.create_index(
        "uq_trip_invite_links_token_hash", "trip_invite_links", ["token_hash"], unique=True
    )


def downgrade() -> None:
    op.drop_index("uq_trip_invite_links_token_hash", table_name="trip_invite_links")
    op.drop_index("ix_trip_invite_links_trip_id_created_at_id", table_name="trip_invite_links")
    op.drop_index("ix_trip_invite_links_created_by", table_name="trip_invite_links")
    op.drop_table("trip_invite_links")
