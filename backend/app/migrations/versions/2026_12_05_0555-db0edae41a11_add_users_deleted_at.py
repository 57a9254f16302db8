"""add users.deleted_at (a deleted account keeps its row, emptied of personal data)

Revision ID: db0edae41a11
Revises: 66927794d473
Create Date: 2026-12-05 05:55:03.163636+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "db0edae41a11"
down_revision: str | None = "66927794d473"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("users", sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    op.drop_column("users", "deleted_at")
