"""Live versions: a commit announces the trip's version, and long polls wake on it.

These use committed data and a running app (its lifespan starts the worker's listener).
"""

import threading
import time
import uuid
from typing import Any

import psycopg2
import psycopg2.extensions
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text
from sqlmodel import Session

from app.main import create_app
from app.sync import live
from app.sync.versions import claim_version
from app.users.models import User
from tests import factories, support
from tests.sync import support as sync_support


def test_a_commit_announces_the_trip_and_its_version_and_a_rollback_does_not(
    engine: Engine,
    committed_trip: tuple[uuid.UUID, User],
    listening_connection: psycopg2.extensions.connection,
) -> None:
    trip_id, _ = committed_trip
    with Session(engine) as session:
        rolled_back = claim_version(session, trip_id)
        session.rollback()
    assert support.received(listening_connection, 0.3) == []

    with Session(engine) as session:
        version = claim_version(session, trip_id)
        assert support.received(listening_connection, 0.3) == []  # not before the commit
        session.commit()
    assert version == rolled_back  # the rolled-back claim left no trace
    assert support.received(listening_connection, 2) == [live.payload(trip_id, version)]


def _long_poll(client: TestClient, owner: User, trip_id: uuid.UUID, since: int) -> Any:
    response = client.get(
        f"/trips/{trip_id}/changes",
        headers=support.auth(owner),
        params={"since": since, "wait": 25},
    )
    assert response.status_code == 200, response.text
    return response.json()


def _head(engine: Engine, trip_id: uuid.UUID) -> int:
    with engine.connect() as connection:
        return int(
            connection.execute(
                text("SELECT head_version FROM trips WHERE id = :t"), {"t": trip_id}
            ).scalar_one()
        )


def _waiting(app: Any, count: int) -> None:
    deadline = time.monotonic() + 10
    while app.state.listener.waiting < count:
        assert time.monotonic() < deadline, "the long poll never started waiting"
        time.sleep(0.02)


def test_a_long_poll_runs_no_query_while_it_waits_and_wakes_on_the_commit(
    engine: Engine, committed_trip: tuple[uuid.UUID, User]
) -> None:
    trip_id, owner = committed_trip
    app = create_app()
    with TestClient(app) as client:
        since = _head(engine, trip_id)
        answers: list[Any] = []
        poller = threading.Thread(
            target=lambda: answers.append(_long_poll(client, owner, trip_id, since))
        )
        started = time.monotonic()
        poller.start()
        _waiting(app, 1)
        time.sleep(0.2)  # let it settle into the wait
        with support.counted_statements(engine) as statements:
            time.sleep(1.0)
        assert statements == []  # no query, and no connection, while it waits
        assert engine.pool.checkedout() == 0  # type: ignore[attr-defined]
        factories.add_item(client, owner, str(trip_id), kind="note", title="news")
        poller.join(20)
    assert not poller.is_alive()
    assert time.monotonic() - started < 20  # the notification woke it, not the deadline
    assert [c["data"]["title"] for c in answers[0]["changes"] if c["entity"] == "item"] == ["news"]


def test_an_impossible_cursor_fails_at_once_instead_of_after_the_wait(
    engine: Engine, committed_trip: tuple[uuid.UUID, User]
) -> None:
    trip_id, owner = committed_trip
    with TestClient(create_app()) as client:
        started = time.monotonic()
        response = client.get(
            f"/trips/{trip_id}/changes",
            headers=support.auth(owner),
            params={"since": _head(engine, trip_id) + 5, "wait": 25},
        )
        assert response.status_code in (400, 410), response.text
        assert time.monotonic() - started < 10


def test_what_commits_while_the_listener_is_down_is_announced_when_it_is_back(
    engine: Engine, committed_trip: tuple[uuid.UUID, User], monkeypatch: pytest.MonkeyPatch
) -> None:
    trip_id, owner = committed_trip
    app = create_app()
    with TestClient(app) as client:
        listener: live.Listener = app.state.listener
        since = _head(engine, trip_id)
        answers: list[Any] = []
        poller = threading.Thread(
            target=lambda: answers.append(_long_poll(client, owner, trip_id, since))
        )
        poller.start()
        _waiting(app, 1)
        with sync_support.listener_down(listener, engine, monkeypatch):
            # A commit nobody hears: the notification goes to no listener of this worker.
            factories.add_item(client, owner, str(trip_id), kind="note", title="while down")
            time.sleep(0.3)
            assert poller.is_alive()
        poller.join(20)
        assert listener.reconnects == 1
    assert not poller.is_alive()
    titles = [c["data"]["title"] for c in answers[0]["changes"] if c["entity"] == "item"]
    assert titles == ["while down"]
