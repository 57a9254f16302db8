"""add calendar feed tokens: the SHA-256 of each user's calendar feed token, never the token

Revision ID: 9c4d2f7a1e53
Revises: a3d5f7e91c28
Create Date: 2026-12-07 09:00:00.000000+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "9c4d2f7a1e53"
down_revision: str | None = "a3d5f7e91c28"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "calendar_feed_tokens",
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_calendar_feed_tokens_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_calendar_feed_tokens")),
    )
    op.create_index(
        "uq_calendar_feed_tokens_token_hash", "calendar_feed_tokens", ["token_hash"], unique=True
    )


def downgrade() -> None:
    op.drop_index("uq_calendar_feed_tokens_token_hash", table_name="calendar_feed_tokens")
    op.drop_table("calendar_feed_tokens")
