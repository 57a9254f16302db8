"""Share links: read-only links to a trip for people without an account (stored by the hash
of their token), and their API shapes."""

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Annotated

from annotated_types import Ge, Le
from pydantic import BaseModel, Strict, StrictBool
from sqlalchemy import CheckConstraint, DateTime, Index, String
from sqlmodel import Field, SQLModel

from app.core.columns import timestamp_column, utcnow, uuid_primary_key
from app.core.fields import REJECT_UNKNOWN_FIELDS
from app.core.security import TOKEN_HASH_LENGTH
from app.sync.models import ChangePublic

MAX_SHARE_HOURS = 90 * 24  # a share link lives at most 90 days
DEFAULT_SHARE_HOURS = 14 * 24

ShareHours = Annotated[int, Strict(), Ge(1), Le(MAX_SHARE_HOURS)]


class ShareScope(StrEnum):
    """What a share link shows: the plan only, or the plan and the money."""

    ITINERARY = "itinerary"
    ITINERARY_AND_EXPENSES = "itinerary_and_expenses"


# The feed's kinds of rows each scope shows (app.sync.registry names). Never members (their
# emails are for members only) nor checklists (not part of either scope).
SCOPE_ENTITIES: dict[ShareScope, frozenset[str]] = {
    ShareScope.ITINERARY: frozenset({"trip", "item"}),
    ShareScope.ITINERARY_AND_EXPENSES: frozenset(
        {"trip", "item", "participant", "expense", "settlement"}
    ),
}


class ShareLinkStatus(StrEnum):
    ACTIVE = "active"
    REVOKED = "revoked"
    EXPIRED = "expired"


class ShareLink(SQLModel, table=True):
    __tablename__ = "trip_share_links"
    __table_args__ = (
        CheckConstraint("scope IN ('itinerary', 'itinerary_and_expenses')", name="scope"),
        CheckConstraint("expires_at > created_at", name="expiry_after_creation"),
        # Citus: a unique key of a distributed table holds its distribution column (trip_id);
        # token_hash leads, so a look-up by token alone still uses it.
        Index("uq_trip_share_links_token_hash_trip_id", "token_hash", "trip_id", unique=True),
        Index("ix_trip_share_links_trip_id_created_at_id", "trip_id", "created_at", "id"),
        Index("ix_trip_share_links_created_by", "created_by"),
    )

    trip_id: uuid.UUID = Field(foreign_key="trips.id", primary_key=True, ondelete="CASCADE")
    id: uuid.UUID = uuid_primary_key()
    # SHA-256 of the token, hex (app.core.security): the token itself is never stored.
    token_hash: str = Field(min_length=TOKEN_HASH_LENGTH, max_length=TOKEN_HASH_LENGTH)
    scope: ShareScope = Field(sa_type=String(32))
    hide_amounts: bool = False
    created_by: uuid.UUID | None = Field(default=None, foreign_key="users.id", ondelete="SET NULL")
    created_at: datetime = timestamp_column()
    expires_at: datetime = Field(sa_type=DateTime(timezone=True))
    revoked_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))


class ShareLinkCreate(SQLModel):
    model_config = REJECT_UNKNOWN_FIELDS

    scope: ShareScope = Field(
        default=ShareScope.ITINERARY,
        description="`itinerary`: the plan only; `itinerary_and_expenses`: the money too.",
    )
    hide_amounts: StrictBool = Field(
        default=False,
        description="Mask every amount, as the trip's own setting does for viewers.",
    )
    expires_in_hours: ShareHours = Field(
        default=DEFAULT_SHARE_HOURS, description="Hours until the link stops working."
    )


class ShareLinkPublic(SQLModel):
    """A share link as listed: never its token, which only the creation answer shows."""

    id: uuid.UUID
    trip_id: uuid.UUID
    scope: ShareScope
    hide_amounts: bool
    created_by: uuid.UUID | None
    created_at: datetime
    expires_at: datetime
    revoked: bool
    status: ShareLinkStatus

    @classmethod
    def of(cls, link: ShareLink) -> "ShareLinkPublic":
        return cls(
            id=link.id,
            trip_id=link.trip_id,
            scope=ShareScope(link.scope),
            hide_amounts=link.hide_amounts,
            created_by=link.created_by,
            created_at=link.created_at,
            expires_at=link.expires_at,
            revoked=link.revoked_at is not None,
            status=status_of(link),
        )


def status_of(link: ShareLink) -> ShareLinkStatus:
    """The one rule for whether a share link shows anything (`ACTIVE`), and if not, why not."""
    if link.revoked_at is not None:
        return ShareLinkStatus.REVOKED
    if link.expires_at <= utcnow():
        return ShareLinkStatus.EXPIRED
    return ShareLinkStatus.ACTIVE


class ShareLinkCreated(ShareLinkPublic):
    """The creation answer: the only time the token is shown (it is stored hashed)."""

    token: str = Field(description="Secret: whoever holds it can read the trip. Shown only now.")
    shared_path: str = Field(description="GET it, with no account: /shared/{token}")


class ShareLinkExported(SQLModel):
    """A share link the account created, in its export (never its token: it is not kept)."""

    trip_id: uuid.UUID
    id: uuid.UUID
    scope: ShareScope
    hide_amounts: bool
    created_at: datetime
    expires_at: datetime
    revoked_at: datetime | None


class SharedTripPublic(BaseModel):
    """A trip as a share link shows it: the rows of a viewer's snapshot that its scope
    covers, amounts masked when the link or the trip hides them."""

    trip_id: uuid.UUID
    version: int
    scope: ShareScope
    amounts_hidden: bool
    expires_at: datetime
    rows: list[ChangePublic]
