"""Every table, imported in one place for Alembic and init_db."""

from app.activity.models import Activity
from app.checklists.models import Checklist, ChecklistItem
from app.core.rate_limit import RateLimitCounter
from app.expenses.models import (
    Expense,
    ExpensePayer,
    ExpenseRevision,
    ExpenseSplit,
    ParticipantTotals,
    Settlement,
)
from app.idempotency.models import IdempotencyKey
from app.invitations.models import Invitation
from app.itinerary.models import ItemParticipant, ItineraryItem
from app.participants.models import Participant
from app.sync import versions as _versions  # noqa: F401  (stamps versions on every flush)
from app.sync.models import Tombstone
from app.trips.models import Trip, TripMember
from app.users.models import User

__all__ = [
    "Activity",
    "Checklist",
    "ChecklistItem",
    "Expense",
    "ExpensePayer",
    "ExpenseRevision",
    "ExpenseSplit",
    "IdempotencyKey",
    "Invitation",
    "ItemParticipant",
    "ItineraryItem",
    "Participant",
    "ParticipantTotals",
    "RateLimitCounter",
    "Settlement",
    "Tombstone",
    "Trip",
    "TripMember",
    "User",
]
