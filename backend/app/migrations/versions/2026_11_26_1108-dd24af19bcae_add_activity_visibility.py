"""add activity visibility

Revision ID: dd24af19bcae
Revises: 91d9ee577130
Create Date: 2026-11-26 11:08:14.797179+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "dd24af19bcae"
down_revision: str | None = "91d9ee577130"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("trip_activity", sa.Column("visible_to", sa.Uuid(), nullable=True))
    op.create_foreign_key(
        op.f("fk_trip_activity_visible_to_users"),
        "trip_activity",
        "users",
        ["visible_to"],
        ["id"],
        ondelete="CASCADE",
    )


def downgrade() -> None:
    op.drop_constraint(
        op.f("fk_trip_activity_visible_to_users"), "trip_activity", type_="foreignkey"
    )
    op.drop_column("trip_activity", "visible_to")
