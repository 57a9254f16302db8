"""Every table, imported in one place for Alembic and init_db."""

from app.trips.models import Trip, TripMember
from app.users.models import User

__all__ = ["Trip", "TripMember", "User"]
