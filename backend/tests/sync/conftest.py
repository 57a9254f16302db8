"""Fixtures of the sync tests."""

import uuid
from collections.abc import Iterator
from datetime import date

import pytest
from sqlalchemy import Engine, text
from sqlmodel import Session

from app.trips.models import Role, Trip, TripMember
from app.users.models import User
from tests import factories


@pytest.fixture
def committed_trip(engine: Engine) -> Iterator[tuple[uuid.UUID, User]]:
    """A trip and its owner, committed (for tests of real concurrency and notifications)."""
    with Session(engine, expire_on_commit=False) as session:
        owner = factories.make_user(session)
        trip = Trip(name="Committed", start_date=date(2027, 5, 1), end_date=date(2027, 5, 3))
        session.add(trip)
        session.flush()
        session.add(TripMember(trip_id=trip.id, user_id=owner.id, role=Role.OWNER))
        session.commit()
    yield trip.id, owner
    with engine.begin() as connection:
        connection.execute(text("DELETE FROM trips WHERE id = :t"), {"t": trip.id})
        connection.execute(text("DELETE FROM users WHERE id = :u"), {"u": owner.id})
