"""Cursor pagination with committed rows arriving from another connection between pages."""

import threading
import uuid
from collections.abc import Iterator
from datetime import date

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text
from sqlmodel import Session

from app.main import create_app
from app.trips import service
from app.trips.models import TripCreate
from app.users.models import User
from tests import factories, support


@pytest.fixture
def committed_user(engine: Engine) -> Iterator[User]:
    with Session(engine, expire_on_commit=False) as session:
        user = factories.make_user(session)
    yield user
    with engine.begin() as connection:
        connection.execute(text("DELETE FROM trips WHERE created_by = :u"), {"u": user.id})
        connection.execute(text("DELETE FROM users WHERE id = :u"), {"u": user.id})


def _add_trip(engine: Engine, user: User, name: str) -> uuid.UUID:
    with Session(engine, expire_on_commit=False) as session:
        data = TripCreate(name=name, start_date=date(2027, 1, 1), end_date=date(2027, 1, 3))
        trip = service.create_trip(session=session, owner=user, data=data).value
        session.commit()
        return trip.id


def test_no_row_lost_or_repeated_while_rows_are_inserted(
    engine: Engine, committed_user: User
) -> None:
    existing = {_add_trip(engine, committed_user, f"before {i}") for i in range(25)}
    stop = threading.Event()
    inserted: list[uuid.UUID] = []

    def keep_inserting() -> None:
        while not stop.is_set() and len(inserted) < 200:
            inserted.append(_add_trip(engine, committed_user, "during"))

    writer = threading.Thread(target=keep_inserting)
    writer.start()
    client = TestClient(create_app())
    seen: list[uuid.UUID] = []
    cursor = None
    try:
        while True:
            params = {"limit": 4, **({"cursor": cursor} if cursor else {})}
            response = client.get("/trips", headers=support.auth(committed_user), params=params)
            assert response.status_code == 200, response.text
            page = response.json()
            seen += [uuid.UUID(t["id"]) for t in page["items"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
    finally:
        stop.set()
        writer.join()
    assert len(seen) == len(set(seen)), "a row was repeated"
    assert existing <= set(seen), "a row that existed before paging began was lost"
    assert inserted, "the writer inserted nothing while paging: the test proved nothing"
