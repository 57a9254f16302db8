"""add email verification

Revision ID: 52d4bf5a6cd0
Revises: dd24af19bcae
Create Date: 2026-11-26 11:11:04.376462+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "52d4bf5a6cd0"
down_revision: str | None = "dd24af19bcae"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "users", sa.Column("email_verified_at", sa.DateTime(timezone=True), nullable=True)
    )


def downgrade() -> None:
    op.drop_column("users", "email_verified_at")
