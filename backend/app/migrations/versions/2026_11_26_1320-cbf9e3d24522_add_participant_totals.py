"""add participant totals: each participant's running sums of the live ledger, backfilled

Revision ID: cbf9e3d24522
Revises: c4a6bc327ec9
Create Date: 2026-11-26 13:20:34.587586+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "cbf9e3d24522"
down_revision: str | None = "c4a6bc327ec9"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The aggregate balances were computed with until now, over every trip at once: a frozen copy
# of the one in app.expenses.service, so this migration does not change when the app does.
BACKFILL = """
INSERT INTO trip_participant_totals (
    trip_id, participant_id,
    paid_minor, owed_minor, settlements_paid_minor, settlements_received_minor
)
SELECT
    entries.trip_id,
    entries.participant_id,
    coalesce(sum(entries.amount) FILTER (WHERE entries.kind = 'paid'), 0),
    coalesce(sum(entries.amount) FILTER (WHERE entries.kind = 'owed'), 0),
    coalesce(sum(entries.amount) FILTER (WHERE entries.kind = 'settlements_paid'), 0),
    coalesce(sum(entries.amount) FILTER (WHERE entries.kind = 'settlements_received'), 0)
FROM (
    SELECT payer.trip_id, payer.participant_id, 'paid' AS kind, payer.base_amount_minor AS amount
    FROM trip_expense_payers AS payer
    JOIN trip_expenses AS expense
        ON expense.trip_id = payer.trip_id
        AND expense.current_revision_id = payer.revision_id
        AND expense.deleted_at IS NULL
    UNION ALL
    SELECT split.trip_id, split.participant_id, 'owed', split.base_amount_minor
    FROM trip_expense_splits AS split
    JOIN trip_expenses AS expense
        ON expense.trip_id = split.trip_id
        AND expense.current_revision_id = split.revision_id
        AND expense.deleted_at IS NULL
    UNION ALL
    SELECT trip_id, from_participant_id, 'settlements_paid', base_amount_minor
    FROM trip_settlements
    WHERE deleted_at IS NULL
    UNION ALL
    SELECT trip_id, to_participant_id, 'settlements_received', base_amount_minor
    FROM trip_settlements
    WHERE deleted_at IS NULL
) AS entries
GROUP BY entries.trip_id, entries.participant_id
"""


def upgrade() -> None:
    op.create_table(
        "trip_participant_totals",
        sa.Column("trip_id", sa.Uuid(), nullable=False),
        sa.Column("participant_id", sa.Uuid(), nullable=False),
        sa.Column("paid_minor", sa.BigInteger(), nullable=False),
        sa.Column("owed_minor", sa.BigInteger(), nullable=False),
        sa.Column("settlements_paid_minor", sa.BigInteger(), nullable=False),
        sa.Column("settlements_received_minor", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["trip_id", "participant_id"],
            ["trip_participants.trip_id", "trip_participants.id"],
            name=op.f("fk_trip_participant_totals_trip_id_trip_participants"),
        ),
        sa.ForeignKeyConstraint(
            ["trip_id"],
            ["trips.id"],
            name=op.f("fk_trip_participant_totals_trip_id_trips"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "trip_id", "participant_id", name=op.f("pk_trip_participant_totals")
        ),
    )
    # No ledger write may slip in between the snapshot the backfill reads and the commit.
    op.execute("LOCK TABLE trip_expenses, trip_settlements IN SHARE MODE")
    op.execute(BACKFILL)


def downgrade() -> None:
    op.drop_table("trip_participant_totals")
