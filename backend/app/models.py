"""Every table, imported in one place for Alembic and init_db."""

from app.activity.models import Activity
from app.invitations.models import Invitation
from app.participants.models import Participant
from app.trips.models import Trip, TripMember
from app.users.models import User

__all__ = ["Activity", "Invitation", "Participant", "Trip", "TripMember", "User"]
