"""link token keys include trip_id: the unique token index of invite and share links becomes
(token_hash, trip_id)

Revision ID: 4e8b1c2d9f70
Revises: 2d7fbf5caa09
Create Date: 2026-12-09 09:00:00.000000+00:00

Citus refuses a unique key on a distributed table that leaves out its distribution column,
and both link tables are distributed by trip_id (app.core.distribution). token_hash stays
first, so a look-up by token alone still uses the index; a token is 256 random bits, so
uniqueness per trip loses nothing in practice. The new index is built before the old one
goes, so no moment is without one.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "4e8b1c2d9f70"
down_revision: str | None = "2d7fbf5caa09"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("trip_invite_links", "trip_share_links")


def upgrade() -> None:
    for table in TABLES:
        op.create_index(
            f"uq_{table}_token_hash_trip_id", table, ["token_hash", "trip_id"], unique=True
        )
        op.drop_index(f"uq_{table}_token_hash", table_name=table)


def downgrade() -> None:
    for table in TABLES:
        op.create_index(f"uq_{table}_token_hash", table, ["token_hash"], unique=True)
        op.drop_index(f"uq_{table}_token_hash_trip_id", table_name=table)
