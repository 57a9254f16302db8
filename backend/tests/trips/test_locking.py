"""A write checks the caller's role under the trip lock, so a role change cannot race it."""

import threading
import uuid
from collections.abc import Iterator
from datetime import date

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text
from sqlmodel import Session, select

from app.main import create_app
from app.trips.models import Role, Trip, TripMember
from app.users.models import User
from tests import factories, support


@pytest.fixture
def committed_trip(engine: Engine) -> Iterator[tuple[uuid.UUID, User, User, User]]:
    with Session(engine, expire_on_commit=False) as session:
        owner, co_owner, friend = (factories.make_user(session) for _ in range(3))
        trip = Trip(name="Race", start_date=date(2027, 1, 1), end_date=date(2027, 1, 2))
        session.add(trip)
        session.flush()
        session.add_all(
            [
                TripMember(trip_id=trip.id, user_id=owner.id, role=Role.OWNER),
                TripMember(trip_id=trip.id, user_id=co_owner.id, role=Role.OWNER),
                TripMember(trip_id=trip.id, user_id=friend.id, role=Role.VIEWER),
            ]
        )
        session.commit()
    yield trip.id, owner, co_owner, friend
    with engine.begin() as connection:
        connection.execute(text("DELETE FROM trips WHERE id = :t"), {"t": trip.id})
        for user in (owner, co_owner, friend):
            connection.execute(text("DELETE FROM users WHERE id = :u"), {"u": user.id})


def test_an_owner_demoted_while_waiting_cannot_act_as_owner(
    engine: Engine, committed_trip: tuple[uuid.UUID, User, User, User]
) -> None:
    trip_id, owner, co_owner, friend = committed_trip
    client = TestClient(create_app(), raise_server_exceptions=False)
    results: list[int] = []

    with engine.connect() as blocker:
        transaction = blocker.begin()
        # Another request (the co-owner's) holds the trip while it demotes the owner.
        blocker.execute(text("SELECT id FROM trips WHERE id = :t FOR UPDATE"), {"t": trip_id})

        def transfer() -> None:
            response = client.post(
                f"/trips/{trip_id}/transfer-ownership",
                headers=support.auth(owner),
                json={"user_id": str(friend.id)},
            )
            results.append(response.status_code)

        waiting = threading.Thread(target=transfer)
        waiting.start()
        waiting.join(timeout=1.0)
        assert waiting.is_alive(), "the write did not wait for the trip lock"
        blocker.execute(
            text("UPDATE trip_members SET role = 'viewer' WHERE trip_id = :t AND user_id = :u"),
            {"t": trip_id, "u": owner.id},
        )
        transaction.commit()
        waiting.join(timeout=10)

    assert results == [403]
    with Session(engine) as session:
        members = session.exec(select(TripMember).where(TripMember.trip_id == trip_id)).all()
        roles = {member.user_id: member.role for member in members}
    assert roles == {owner.id: "viewer", co_owner.id: "owner", friend.id: "viewer"}
