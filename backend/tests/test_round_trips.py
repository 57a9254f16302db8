"""What a request costs in exchanges with PostgreSQL, on the app's own engine and pool.

A read answered from one statement costs two round trips: the pool's pre-ping (`SELECT 1`,
outside any transaction: app.core.db) and the statement, which checks the caller's access
and writes the response's JSON (`read_session`, autocommit: no BEGIN, no COMMIT). A write
keeps its transaction. The numbers are pinned per route: a change that adds an exchange
to a hot path fails here.
"""

import uuid
from datetime import date

import pytest
from fastapi.testclient import TestClient

from app.main import app
from app.users.models import User
from tests import support

PING, STATEMENT = "SELECT", ("SELECT", "WITH")

Trip = tuple[uuid.UUID, User]


@pytest.fixture
def client() -> TestClient:
    """A client of the app on its own engine (the trip is committed: no test transaction)."""
    return TestClient(app, raise_server_exceptions=False)


def _trips_of(client: TestClient, method: str, path: str, **kwargs: object) -> list[str]:
    client.get("/health/ready")  # the pool holds a connection: the request's is pre-pinged
    with support.counted_round_trips() as trips:
        response = client.request(method, path, **kwargs)  # type: ignore[arg-type]
    assert response.status_code < 300, response.text
    return trips


def _one_statement_read(trips: list[str]) -> None:
    assert len(trips) == 2, trips
    assert trips[0] == PING, trips
    assert trips[1] in STATEMENT, trips


@pytest.mark.parametrize(
    "path",
    [
        "/trips/{trip_id}",
        "/trips",
        "/trips?limit=1",
        "/trips/{trip_id}/items",
        "/trips/{trip_id}/items?day=2027-05-02",
        "/trips/{trip_id}/items?unscheduled=true",
    ],
)
def test_a_hot_read_is_the_ping_and_one_statement(
    client: TestClient, committed_trip: Trip, path: str
) -> None:
    trip_id, owner = committed_trip
    headers = support.auth(owner)
    for n in range(3):
        day = "2027-05-02" if n < 2 else None
        body = {"kind": "activity", "title": f"Item {n}", "day": day}
        assert client.post(f"/trips/{trip_id}/items", json=body, headers=headers).status_code == 201
    _one_statement_read(_trips_of(client, "GET", path.format(trip_id=trip_id), headers=headers))


def test_a_next_page_costs_what_the_first_does(client: TestClient, committed_trip: Trip) -> None:
    trip_id, owner = committed_trip
    headers = support.auth(owner)
    for n in range(3):
        body = {"kind": "note", "title": f"Item {n}", "day": "2027-05-01" if n else None}
        assert client.post(f"/trips/{trip_id}/items", json=body, headers=headers).status_code == 201
    first = client.get(f"/trips/{trip_id}/items?limit=1", headers=headers).json()
    second = f"/trips/{trip_id}/items?limit=1&cursor={first['next_cursor']}"
    _one_statement_read(_trips_of(client, "GET", second, headers=headers))
    last = client.get(second, headers=headers).json()  # across into the unscheduled items
    assert last["next_cursor"] is not None
    third = f"/trips/{trip_id}/items?limit=1&cursor={last['next_cursor']}"
    _one_statement_read(_trips_of(client, "GET", third, headers=headers))


def test_a_write_keeps_its_transaction(client: TestClient, committed_trip: Trip) -> None:
    trip_id, owner = committed_trip
    body = {"kind": "activity", "title": "Counted", "day": date(2027, 5, 1).isoformat()}
    trips = _trips_of(
        client, "POST", f"/trips/{trip_id}/items", json=body, headers=support.auth(owner)
    )
    assert trips[:2] == [PING, "BEGIN"], trips
    assert trips[-1] == "COMMIT", trips
    assert "BEGIN" not in trips[2:], trips  # one transaction
