"""add the shared expenses ledger: expenses, revisions, payers, splits, settlements

Revision ID: 91d9ee577130
Revises: f259b27db237
Create Date: 2026-11-26 10:46:14.859966+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "91d9ee577130"
down_revision: str | None = "f259b27db237"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "trip_expenses",
        sa.Column("trip_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("current_revision_id", sa.Uuid(), nullable=True),
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
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["created_by"],
            ["users.id"],
            name=op.f("fk_trip_expenses_created_by_users"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["trip_id"],
            ["trips.id"],
            name=op.f("fk_trip_expenses_trip_id_trips"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("trip_id", "id", name=op.f("pk_trip_expenses")),
    )
    op.create_table(
        "trip_expense_revisions",
        sa.Column("trip_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("expense_id", sa.Uuid(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("category", sa.String(length=64), nullable=False),
        sa.Column("notes", sa.String(length=2000), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("exchange_rate", sa.Numeric(precision=24, scale=12), nullable=False),
        sa.Column("base_amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("spent_on", sa.Date(), nullable=False),
        sa.Column("split_mode", sa.String(length=16), nullable=False),
        sa.Column("actor_id", sa.Uuid(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "action IN ('created', 'updated', 'deleted')",
            name=op.f("ck_trip_expense_revisions_action"),
        ),
        sa.CheckConstraint(
            "currency ~ '^[A-Z]{3}$'", name=op.f("ck_trip_expense_revisions_currency")
        ),
        sa.CheckConstraint(
            "split_mode IN ('equal', 'shares', 'percentages', 'exact')",
            name=op.f("ck_trip_expense_revisions_split_mode"),
        ),
        sa.CheckConstraint(
            "amount_minor >= 0", name=op.f("ck_trip_expense_revisions_amount_non_negative")
        ),
        sa.CheckConstraint(
            "base_amount_minor >= 0",
            name=op.f("ck_trip_expense_revisions_base_amount_non_negative"),
        ),
        sa.CheckConstraint(
            "exchange_rate > 0", name=op.f("ck_trip_expense_revisions_exchange_rate_positive")
        ),
        sa.CheckConstraint("number >= 1", name=op.f("ck_trip_expense_revisions_number_positive")),
        sa.ForeignKeyConstraint(
            ["actor_id"],
            ["users.id"],
            name=op.f("fk_trip_expense_revisions_actor_id_users"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["trip_id", "expense_id"],
            ["trip_expenses.trip_id", "trip_expenses.id"],
            name=op.f("fk_trip_expense_revisions_trip_id_trip_expenses"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["trip_id"],
            ["trips.id"],
            name=op.f("fk_trip_expense_revisions_trip_id_trips"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("trip_id", "id", name=op.f("pk_trip_expense_revisions")),
        sa.UniqueConstraint(
            "trip_id",
            "expense_id",
            "number",
            name=op.f("uq_trip_expense_revisions_trip_id_expense_id_number"),
        ),
    )
    # An expense points at its current revision, which points back: added once both exist.
    op.create_foreign_key(
        op.f("fk_trip_expenses_trip_id_trip_expense_revisions"),
        "trip_expenses",
        "trip_expense_revisions",
        ["trip_id", "current_revision_id"],
        ["trip_id", "id"],
        ondelete="CASCADE",
    )
    op.create_table(
        "trip_settlements",
        sa.Column("trip_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("from_participant_id", sa.Uuid(), nullable=False),
        sa.Column("to_participant_id", sa.Uuid(), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("exchange_rate", sa.Numeric(precision=24, scale=12), nullable=False),
        sa.Column("base_amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("settled_on", sa.Date(), nullable=False),
        sa.Column("note", sa.String(length=500), nullable=False),
        sa.Column("created_by", sa.Uuid(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("currency ~ '^[A-Z]{3}$'", name=op.f("ck_trip_settlements_currency")),
        sa.CheckConstraint(
            "amount_minor >= 0", name=op.f("ck_trip_settlements_amount_non_negative")
        ),
        sa.CheckConstraint(
            "base_amount_minor >= 0", name=op.f("ck_trip_settlements_base_amount_non_negative")
        ),
        sa.CheckConstraint(
            "exchange_rate > 0", name=op.f("ck_trip_settlements_exchange_rate_positive")
        ),
        sa.CheckConstraint(
            "from_participant_id <> to_participant_id",
            name=op.f("ck_trip_settlements_distinct_participants"),
        ),
        sa.ForeignKeyConstraint(
            ["created_by"],
            ["users.id"],
            name=op.f("fk_trip_settlements_created_by_users"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["trip_id", "from_participant_id"],
            ["trip_participants.trip_id", "trip_participants.id"],
            name="fk_trip_settlements_from_participant",
        ),
        sa.ForeignKeyConstraint(
            ["trip_id", "to_participant_id"],
            ["trip_participants.trip_id", "trip_participants.id"],
            name="fk_trip_settlements_to_participant",
        ),
        sa.ForeignKeyConstraint(
            ["trip_id"],
            ["trips.id"],
            name=op.f("fk_trip_settlements_trip_id_trips"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("trip_id", "id", name=op.f("pk_trip_settlements")),
    )
    op.create_index(
        "ix_trip_settlements_from_participant_id",
        "trip_settlements",
        ["from_participant_id"],
        unique=False,
    )
    op.create_index(
        "ix_trip_settlements_to_participant_id",
        "trip_settlements",
        ["to_participant_id"],
        unique=False,
    )
    op.create_index(
        "ix_trip_settlements_trip_id_settled_on_id",
        "trip_settlements",
        ["trip_id", "settled_on", "id"],
        unique=False,
    )
    op.create_table(
        "trip_expense_payers",
        sa.Column("trip_id", sa.Uuid(), nullable=False),
        sa.Column("revision_id", sa.Uuid(), nullable=False),
        sa.Column("participant_id", sa.Uuid(), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("base_amount_minor", sa.BigInteger(), nullable=False),
        sa.CheckConstraint(
            "amount_minor >= 0", name=op.f("ck_trip_expense_payers_amount_non_negative")
        ),
        sa.CheckConstraint(
            "base_amount_minor >= 0", name=op.f("ck_trip_expense_payers_base_amount_non_negative")
        ),
        sa.ForeignKeyConstraint(
            ["trip_id", "participant_id"],
            ["trip_participants.trip_id", "trip_participants.id"],
            name=op.f("fk_trip_expense_payers_trip_id_trip_participants"),
        ),
        sa.ForeignKeyConstraint(
            ["trip_id", "revision_id"],
            ["trip_expense_revisions.trip_id", "trip_expense_revisions.id"],
            name=op.f("fk_trip_expense_payers_trip_id_trip_expense_revisions"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["trip_id"],
            ["trips.id"],
            name=op.f("fk_trip_expense_payers_trip_id_trips"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "trip_id", "revision_id", "participant_id", name=op.f("pk_trip_expense_payers")
        ),
    )
    op.create_index(
        "ix_trip_expense_payers_participant_id",
        "trip_expense_payers",
        ["participant_id"],
        unique=False,
    )
    op.create_table(
        "trip_expense_splits",
        sa.Column("trip_id", sa.Uuid(), nullable=False),
        sa.Column("revision_id", sa.Uuid(), nullable=False),
        sa.Column("participant_id", sa.Uuid(), nullable=False),
        sa.Column("shares", sa.Integer(), nullable=True),
        sa.Column("percent", sa.Numeric(precision=9, scale=6), nullable=True),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("base_amount_minor", sa.BigInteger(), nullable=False),
        sa.CheckConstraint(
            "amount_minor >= 0", name=op.f("ck_trip_expense_splits_amount_non_negative")
        ),
        sa.CheckConstraint(
            "base_amount_minor >= 0", name=op.f("ck_trip_expense_splits_base_amount_non_negative")
        ),
        sa.CheckConstraint(
            "percent IS NULL OR percent BETWEEN 0 AND 100",
            name=op.f("ck_trip_expense_splits_percent_range"),
        ),
        sa.CheckConstraint(
            "shares IS NULL OR shares >= 0", name=op.f("ck_trip_expense_splits_shares_non_negative")
        ),
        sa.ForeignKeyConstraint(
            ["trip_id", "participant_id"],
            ["trip_participants.trip_id", "trip_participants.id"],
            name=op.f("fk_trip_expense_splits_trip_id_trip_participants"),
        ),
        sa.ForeignKeyConstraint(
            ["trip_id", "revision_id"],
            ["trip_expense_revisions.trip_id", "trip_expense_revisions.id"],
            name=op.f("fk_trip_expense_splits_trip_id_trip_expense_revisions"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["trip_id"],
            ["trips.id"],
            name=op.f("fk_trip_expense_splits_trip_id_trips"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "trip_id", "revision_id", "participant_id", name=op.f("pk_trip_expense_splits")
        ),
    )
    op.create_index(
        "ix_trip_expense_splits_participant_id",
        "trip_expense_splits",
        ["participant_id"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("ix_trip_expense_splits_participant_id", table_name="trip_expense_splits")
    op.drop_table("trip_expense_splits")
    op.drop_index("ix_trip_expense_payers_participant_id", table_name="trip_expense_payers")
    op.drop_table("trip_expense_payers")
    op.drop_index("ix_trip_settlements_trip_id_settled_on_id", table_name="trip_settlements")
    op.drop_index("ix_trip_settlements_to_participant_id", table_name="trip_settlements")
    op.drop_index("ix_trip_settlements_from_participant_id", table_name="trip_settlements")
    op.drop_table("trip_settlements")
    op.drop_constraint(
        op.f("fk_trip_expenses_trip_id_trip_expense_revisions"), "trip_expenses", type_="foreignkey"
    )
    op.drop_table("trip_expense_revisions")
    op.drop_table("trip_expenses")
