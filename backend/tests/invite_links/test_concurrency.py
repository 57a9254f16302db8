"""Joins racing for a link's last use, on committed data with real concurrent transactions;
and what a committed join announces to the live sync listeners."""

import threading
import time
import uuid
from collections.abc import Iterator
from datetime import date

import psycopg2
import psycopg2.extensions
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text
from sqlmodel import Session, col
from sqlmodel import select as select_rows

from app.invite_links.models import InviteLink
from app.main import create_app
from app.sync import live
from app.trips.models import Role, Trip, TripMember
from app.users.models import User
from tests import factories, support


@pytest.fixture
def committed_trip(engine: Engine) -> Iterator[tuple[uuid.UUID, User, User, User]]:
    """A trip with its owner, and two people who are not in it yet, all committed."""
    with Session(engine, expire_on_commit=False) as session:
        owner, ana, ben = (factories.make_user(session) for _ in range(3))
        trip = Trip(name="Race", start_date=date(2027, 1, 1), end_date=date(2027, 1, 2))
        session.add(trip)
        session.flush()
        session.add(TripMember(trip_id=trip.id, user_id=owner.id, role=Role.OWNER))
        session.commit()
    yield trip.id, owner, ana, ben
    with engine.begin() as connection:
        connection.execute(text("DELETE FROM trips WHERE id = :t"), {"t": trip.id})
        for user in (owner, ana, ben):
            connection.execute(text("DELETE FROM users WHERE id = :u"), {"u": user.id})


def test_two_joins_racing_for_the_last_use_let_exactly_one_in(
    engine: Engine,
    committed_trip: tuple[uuid.UUID, User, User, User],
    listening_connection: psycopg2.extensions.connection,
) -> None:
    trip_id, owner, ana, ben = committed_trip
    app = create_app()
    link = factories.create_invite_link(TestClient(app), owner, str(trip_id), max_uses=1)
    support.received(listening_connection, 0.3)  # the link's own commit
    answers: dict[uuid.UUID, int] = {}

    def join(user: User) -> None:
        # A client (and so an event loop and a connection) per thread, as two devices would.
        client = TestClient(app, raise_server_exceptions=False)
        response = client.post(f"/join/{link['token']}", headers=support.auth(user))
        answers[user.id] = response.status_code

    with engine.connect() as blocker:
        transaction = blocker.begin()
        # Hold the trip, so both joins are in flight together when it is let go.
        blocker.execute(text("SELECT id FROM trips WHERE id = :t FOR UPDATE"), {"t": trip_id})
        threads = [threading.Thread(target=join, args=(user,)) for user in (ana, ben)]
        for thread in threads:
            thread.start()
        time.sleep(1.0)
        assert all(thread.is_alive() for thread in threads), "a join did not wait for the trip"
        transaction.rollback()
        for thread in threads:
            thread.join(timeout=15)

    assert sorted(answers.values()) == [201, 404], answers
    winner = next(user_id for user_id, status in answers.items() if status == 201)
    with Session(engine) as session:
        members = session.exec(
            select_rows(TripMember.user_id).where(TripMember.trip_id == trip_id)
        ).all()
        uses = session.exec(
            select_rows(InviteLink.uses).where(col(InviteLink.id) == uuid.UUID(link["id"]))
        ).one()
        head = session.get_one(Trip, trip_id).head_version
    assert set(members) == {owner.id, winner}
    assert uses == 1
    # Announced as an invitation's acceptance is: the trip's new version, and access for the
    # one who joined, so their other devices' streams start following the trip.
    assert sorted(support.received(listening_connection, 2)) == sorted(
        [live.payload(trip_id, head), live.access_payload(trip_id, live.AccessChange.ADDED, winner)]
    )
