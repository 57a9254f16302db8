"""Every table, imported in one place for Alembic and init_db."""

from app.activity.models import Activity
from app.expenses.models import Expense, ExpensePayer, ExpenseRevision, ExpenseSplit, Settlement
from app.invitations.models import Invitation
from app.participants.models import Participant
from app.trips.models import Trip, TripMember
from app.users.models import User

__all__ = [
    "Activity",
    "Expense",
    "ExpensePayer",
    "ExpenseRevision",
    "ExpenseSplit",
    "Invitation",
    "Participant",
    "Settlement",
    "Trip",
    "TripMember",
    "User",
]
