"""Invite links: a trip's shareable links (stored by the hash of their token) and API shapes."""

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Annotated

from annotated_types import Ge, Le
from pydantic import Strict
from sqlalchemy import CheckConstraint, DateTime, Index, String
from sqlmodel import Field, SQLModel

from app.core.columns import timestamp_column, utcnow, uuid_primary_key
from app.core.fields import REJECT_UNKNOWN_FIELDS
from app.core.security import TOKEN_HASH_LENGTH
from app.trips.models import MemberPublic, Role, TripPublic

MAX_LINK_HOURS = 30 * 24  # a link lives at most 30 days
DEFAULT_LINK_HOURS = 7 * 24
MAX_LINK_USES = 1000

LinkHours = Annotated[int, Strict(), Ge(1), Le(MAX_LINK_HOURS)]
LinkUses = Annotated[int, Strict(), Ge(1), Le(MAX_LINK_USES)]


class InviteLinkStatus(StrEnum):
    ACTIVE = "active"
    REVOKED = "revoked"
    EXPIRED = "expired"
    USED_UP = "used_up"
    # Its creator is no longer a member with at least the link's role (left, was removed or
    # demoted, or deleted their account): the link lets nobody in.
    ORPHANED = "orphaned"


class InviteLink(SQLModel, table=True):
    __tablename__ = "trip_invite_links"
    __table_args__ = (
        CheckConstraint("role IN ('owner', 'editor', 'viewer')", name="role"),
        CheckConstraint(f"max_uses BETWEEN 1 AND {MAX_LINK_USES}", name="max_uses_range"),
        # The last line of defence for "no more joins than uses": the count never passes it.
        CheckConstraint("uses BETWEEN 0 AND max_uses", name="uses_within_max"),
        CheckConstraint("expires_at > created_at", name="expiry_after_creation"),
        # Citus: a unique key of a distributed table holds its distribution column (trip_id);
        # token_hash leads, so a look-up by token alone still uses it.
        Index("uq_trip_invite_links_token_hash_trip_id", "token_hash", "trip_id", unique=True),
        Index("ix_trip_invite_links_trip_id_created_at_id", "trip_id", "created_at", "id"),
        Index("ix_trip_invite_links_created_by", "created_by"),
    )

    trip_id: uuid.UUID = Field(foreign_key="trips.id", primary_key=True, ondelete="CASCADE")
    id: uuid.UUID = uuid_primary_key()
    # SHA-256 of the token, hex (app.core.security): the token itself is never stored.
    token_hash: str = Field(min_length=TOKEN_HASH_LENGTH, max_length=TOKEN_HASH_LENGTH)
    role: Role = Field(sa_type=String(16))
    created_by: uuid.UUID | None = Field(default=None, foreign_key="users.id", ondelete="SET NULL")
    created_at: datetime = timestamp_column()
    expires_at: datetime = Field(sa_type=DateTime(timezone=True))
    max_uses: int
    uses: int = 0
    revoked_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))


class InviteLinkCreate(SQLModel):
    model_config = REJECT_UNKNOWN_FIELDS

    role: Role = Field(
        default=Role.VIEWER, description="The role it gives: at most the creator's own."
    )
    expires_in_hours: LinkHours = Field(
        default=DEFAULT_LINK_HOURS, description="Hours until the link stops working."
    )
    max_uses: LinkUses = Field(default=1, description="How many people may join with it.")


class InviteLinkPublic(SQLModel):
    """A link as listed: never its token, which only the creation answer shows."""

    id: uuid.UUID
    trip_id: uuid.UUID
    role: Role
    created_by: uuid.UUID | None
    created_at: datetime
    expires_at: datetime
    uses: int
    max_uses: int
    revoked: bool
    status: InviteLinkStatus

    @classmethod
    def of(cls, link: InviteLink, *, creator_role: Role | None) -> "InviteLinkPublic":
        """The stored link, with its status worked out now; `creator_role`: its creator's
        current role in the trip (None: no longer a member)."""
        return cls(
            id=link.id,
            trip_id=link.trip_id,
            role=Role(link.role),
            created_by=link.created_by,
            created_at=link.created_at,
            expires_at=link.expires_at,
            uses=link.uses,
            max_uses=link.max_uses,
            revoked=link.revoked_at is not None,
            status=status_of(link, creator_role=creator_role),
        )


def status_of(link: InviteLink, *, creator_role: Role | None) -> InviteLinkStatus:
    """The one rule for whether a link lets someone in (`ACTIVE`), and if not, why not."""
    if link.revoked_at is not None:
        return InviteLinkStatus.REVOKED
    if link.expires_at <= utcnow():
        return InviteLinkStatus.EXPIRED
    if link.uses >= link.max_uses:
        return InviteLinkStatus.USED_UP
    if creator_role is None or not creator_role.includes(Role(link.role)):
        return InviteLinkStatus.ORPHANED
    return InviteLinkStatus.ACTIVE


class InviteLinkCreated(InviteLinkPublic):
    """The creation answer: the only time the token is shown (it is stored hashed)."""

    token: str = Field(description="Secret: whoever holds it can join. Shown only now.")
    join_path: str = Field(description="POST it, signed in, to join: /join/{token}")


class JoinedTrip(SQLModel):
    """The caller's membership after following a link, and the trip it opens."""

    trip: TripPublic
    membership: MemberPublic


class InviteLinkExported(SQLModel):
    """An invite link the account created, in its export (never its token: it is not kept)."""

    trip_id: uuid.UUID
    id: uuid.UUID
    role: Role
    created_at: datetime
    expires_at: datetime
    uses: int
    max_uses: int
    revoked_at: datetime | None
