"""Versions follow commit order: a slow transaction that started first is never skipped."""

import threading
import time
import uuid

from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlmodel import Session

from app.itinerary.models import ItemKind, ItineraryItem
from app.main import create_app
from app.sync.versions import claim_version
from app.users.models import User
from tests import support


def _pull(client: TestClient, owner: User, trip_id: uuid.UUID, since: int) -> dict:
    response = client.get(
        f"/trips/{trip_id}/changes", headers=support.auth(owner), params={"since": since}
    )
    assert response.status_code == 200, response.text
    return response.json()


def test_a_slow_transaction_that_commits_last_is_still_delivered(
    engine: Engine, committed_trip: tuple[uuid.UUID, User]
) -> None:
    trip_id, owner = committed_trip
    client = TestClient(create_app())
    start = _pull(client, owner, trip_id, 0)["version"]

    # A slow writer starts first: it takes the next version and holds it, uncommitted.
    slow = Session(engine)
    slow_version = claim_version(slow, trip_id)
    slow.add(ItineraryItem(trip_id=trip_id, kind=ItemKind.NOTE, title="slow", order_key="V"))
    slow.flush()

    # A fast writer comes second, through the API; it must queue behind the slow one.
    fast_result: list[int] = []
    fast = threading.Thread(
        target=lambda: fast_result.append(
            client.post(
                f"/trips/{trip_id}/items",
                headers=support.auth(owner),
                json={"kind": "note", "title": "fast"},
            ).status_code
        )
    )
    fast.start()
    time.sleep(0.5)
    assert fast.is_alive(), "the second writer did not wait for the first"

    # A client pulls in between: neither write is visible, and its cursor does not move past.
    between = _pull(client, owner, trip_id, start)
    assert between["changes"] == []
    assert between["version"] == start

    slow.commit()
    slow.close()
    fast.join(timeout=10)
    assert fast_result == [201]

    after = _pull(client, owner, trip_id, between["version"])
    titles = [(c["data"]["title"], c["version"]) for c in after["changes"] if c["entity"] == "item"]
    assert titles == [("slow", slow_version), ("fast", slow_version + 1)]


def test_a_long_poll_returns_as_soon_as_something_changes(
    engine: Engine, committed_trip: tuple[uuid.UUID, User]
) -> None:
    trip_id, owner = committed_trip
    with TestClient(create_app()) as client:  # its lifespan starts the worker's listener
        since = _pull(client, owner, trip_id, 0)["version"]

        def write_later() -> None:
            time.sleep(0.7)
            client.post(
                f"/trips/{trip_id}/items",
                headers=support.auth(owner),
                json={"kind": "note", "title": "news"},
            )

        writer = threading.Thread(target=write_later)
        writer.start()
        response = client.get(
            f"/trips/{trip_id}/changes",
            headers=support.auth(owner),
            params={"since": since, "wait": 20},
        )
        writer.join()
    assert [c["data"]["title"] for c in response.json()["changes"]] == ["news"]


def test_a_long_poll_holds_no_database_connection_while_waiting(
    engine: Engine, committed_trip: tuple[uuid.UUID, User]
) -> None:
    trip_id, owner = committed_trip
    checked_out: list[int] = []

    def watch() -> None:
        time.sleep(0.6)
        for _ in range(5):
            checked_out.append(engine.pool.checkedout())  # type: ignore[attr-defined]
            time.sleep(0.17)

    with TestClient(create_app()) as client:  # its lifespan starts the worker's listener
        since = _pull(client, owner, trip_id, 0)["version"]
        watcher = threading.Thread(target=watch)
        watcher.start()
        client.get(
            f"/trips/{trip_id}/changes",
            headers=support.auth(owner),
            params={"since": since, "wait": 2},
        )
        watcher.join()
    assert checked_out == [0] * 5
