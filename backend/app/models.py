"""Every table and every synced entity, imported in one place: for Alembic, init_db
(`metadata`) and the app. A new feature adds its `models` (and `synced`) module here.
"""

from sqlmodel import SQLModel

from app.activity.models import Activity

# Each registers its synced entities with app.sync.registry (the version stamping needs them).
from app.checklists import synced as _checklists_synced  # noqa: F401
from app.checklists.models import Checklist, ChecklistItem
from app.expenses import synced as _expenses_synced  # noqa: F401
from app.expenses.models import (
    Expense,
    ExpensePayer,
    ExpenseRevision,
    ExpenseSplit,
    ParticipantTotals,
    Settlement,
)
from app.fx.models import FxRate
from app.idempotency.models import IdempotencyKey
from app.invitations.models import Invitation
from app.invite_links.models import InviteLink
from app.itinerary import synced as _itinerary_synced  # noqa: F401
from app.itinerary.models import ItemParticipant, ItineraryItem
from app.outbox.models import OutboxMessage
from app.participants import synced as _participants_synced  # noqa: F401
from app.participants.models import Participant
from app.ratelimit.models import RateLimitCounter
from app.share_links.models import ShareLink
from app.sync.models import Tombstone
from app.trips import synced as _trips_synced  # noqa: F401
from app.trips.models import Trip, TripMember
from app.users.models import User, UserRecoveryCode, UserSession, UserTwoFactor

metadata = SQLModel.metadata

__all__ = [
    "Activity",
    "Checklist",
    "ChecklistItem",
    "Expense",
    "ExpensePayer",
    "ExpenseRevision",
    "ExpenseSplit",
    "FxRate",
    "IdempotencyKey",
    "Invitation",
    "InviteLink",
    "ItemParticipant",
    "ItineraryItem",
    "OutboxMessage",
    "Participant",
    "ParticipantTotals",
    "RateLimitCounter",
    "Settlement",
    "ShareLink",
    "Tombstone",
    "Trip",
    "TripMember",
    "User",
    "UserRecoveryCode",
    "UserSession",
    "UserTwoFactor",
]
