"""add participants invitations activity and trip currency

Revision ID: 5c54842add72
Revises: 10db4ad832d5
Create Date: 2026-11-26 10:38:09.854895+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "5c54842add72"
down_revision: str | None = "10db4ad832d5"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "trip_activity",
        sa.Column("trip_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("actor_id", sa.Uuid(), nullable=True),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("object_type", sa.String(length=32), nullable=False),
        sa.Column("object_id", sa.Uuid(), nullable=True),
        sa.Column("summary", sa.String(length=500), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["actor_id"],
            ["users.id"],
            name=op.f("fk_trip_activity_actor_id_users"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["trip_id"],
            ["trips.id"],
            name=op.f("fk_trip_activity_trip_id_trips"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("trip_id", "id", name=op.f("pk_trip_activity")),
    )
    op.create_index(
        "ix_trip_activity_trip_id_created_at_id",
        "trip_activity",
        ["trip_id", "created_at", "id"],
        unique=False,
    )
    op.create_table(
        "trip_invitations",
        sa.Column("trip_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("invited_by", sa.Uuid(), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("responded_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "role IN ('owner', 'editor', 'viewer')", name=op.f("ck_trip_invitations_role")
        ),
        sa.CheckConstraint(
            "status IN ('pending', 'accepted', 'declined', 'revoked', 'expired')",
            name=op.f("ck_trip_invitations_status"),
        ),
        sa.CheckConstraint(
            "expires_at > created_at", name=op.f("ck_trip_invitations_expiry_after_creation")
        ),
        sa.ForeignKeyConstraint(
            ["invited_by"],
            ["users.id"],
            name=op.f("fk_trip_invitations_invited_by_users"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["trip_id"],
            ["trips.id"],
            name=op.f("fk_trip_invitations_trip_id_trips"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("trip_id", "id", name=op.f("pk_trip_invitations")),
    )
    op.create_index(
        "ix_trip_invitations_email_status", "trip_invitations", ["email", "status"], unique=False
    )
    op.create_index(
        "uq_trip_invitations_pending_email",
        "trip_invitations",
        ["trip_id", "email"],
        unique=True,
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.create_table(
        "trip_participants",
        sa.Column("trip_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=True),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["trip_id"],
            ["trips.id"],
            name=op.f("fk_trip_participants_trip_id_trips"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_trip_participants_user_id_users"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("trip_id", "id", name=op.f("pk_trip_participants")),
        sa.UniqueConstraint(
            "trip_id", "user_id", name=op.f("uq_trip_participants_trip_id_user_id")
        ),
    )
    op.add_column(
        "trips",
        sa.Column("base_currency", sa.String(length=3), server_default="EUR", nullable=False),
    )
    op.add_column(
        "trips",
        sa.Column(
            "hide_amounts_from_viewers",
            sa.Boolean(),
            server_default=sa.text("false"),
            nullable=False,
        ),
    )
    # Autogenerate does not see check constraints added to an existing table.
    op.create_check_constraint(
        op.f("ck_trips_base_currency"), "trips", "base_currency ~ '^[A-Z]{3}$'"
    )


def downgrade() -> None:
    op.drop_constraint(op.f("ck_trips_base_currency"), "trips", type_="check")
    op.drop_column("trips", "hide_amounts_from_viewers")
    op.drop_column("trips", "base_currency")
    op.drop_table("trip_participants")
    op.drop_index(
        "uq_trip_invitations_pending_email",
        table_name="trip_invitations",
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.drop_index("ix_trip_invitations_email_status", table_name="trip_invitations")
    op.drop_table("trip_invitations")
    op.drop_index("ix_trip_activity_trip_id_created_at_id", table_name="trip_activity")
    op.drop_table("trip_activity")
