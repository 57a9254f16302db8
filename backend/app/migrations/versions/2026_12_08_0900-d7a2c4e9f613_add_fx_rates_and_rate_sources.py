"""add fx_rates (ECB reference rates) and the rate source and date of ledger entries

Existing revisions and settlements get `base` when their currency is the trip's base currency
(a trip's base currency cannot change once it has entries), else `client`: until now every
foreign rate was sent by the client.

Revision ID: d7a2c4e9f613
Revises: 9c4d2f7a1e53
Create Date: 2026-12-08 09:00:00.000000+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "d7a2c4e9f613"
down_revision: str | None = "9c4d2f7a1e53"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_LEDGER_TABLES = ("trip_expense_revisions", "trip_settlements")


def upgrade() -> None:
    op.create_table(
        "fx_rates",
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("per_eur", sa.Numeric(24, 12), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column(
            "imported_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint("per_eur > 0", name=op.f("ck_fx_rates_per_eur_positive")),
        sa.CheckConstraint("currency ~ '^[A-Z]{3}$'", name=op.f("ck_fx_rates_currency")),
        sa.CheckConstraint("source IN ('ecb')", name=op.f("ck_fx_rates_source")),
        sa.PrimaryKeyConstraint("currency", "day", name=op.f("pk_fx_rates")),
    )
    for table in _LEDGER_TABLES:
        op.add_column(table, sa.Column("rate_source", sa.String(length=8), nullable=True))
        op.add_column(table, sa.Column("rate_date", sa.Date(), nullable=True))
        op.execute(
            f"UPDATE {table} AS entry SET rate_source = CASE WHEN entry.currency = "  # noqa: S608
            "trip.base_currency THEN 'base' ELSE 'client' END "
            "FROM trips AS trip WHERE trip.id = entry.trip_id"
        )
        op.alter_column(table, "rate_source", nullable=False)
        op.create_check_constraint(
            op.f(f"ck_{table}_rate_source"),
            table,
            "rate_source IN ('base', 'client', 'ecb')",
        )
        op.create_check_constraint(
            op.f(f"ck_{table}_rate_date_iff_ecb"),
            table,
            "(rate_source = 'ecb') = (rate_date IS NOT NULL)",
        )


def downgrade() -> None:
    for table in _LEDGER_TABLES:
        op.drop_constraint(op.f(f"ck_{table}_rate_date_iff_ecb"), table, type_="check")
        op.drop_constraint(op.f(f"ck_{table}_rate_source"), table, type_="check")
        op.drop_column(table, "rate_date")
        op.drop_column(table, "rate_source")
    op.drop_table("fx_rates")
