"""Shared by the sync tests: reading the feed, a replica built only from it, and a listener
kept down."""

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

from app.sync.live import Listener
from app.users.models import User
from tests import support


def changes(client: TestClient, user: User, trip_id: str, since: int, **params: Any) -> Any:
    """One page of the trip's changes after version `since`."""
    response = client.get(
        f"/trips/{trip_id}/changes", headers=support.auth(user), params={"since": since, **params}
    )
    assert response.status_code == 200, response.text
    return response.json()


def snapshot(client: TestClient, user: User, trip_id: str) -> Any:
    """The trip's snapshot as `user` sees it."""
    response = client.get(f"/trips/{trip_id}/snapshot", headers=support.auth(user))
    assert response.status_code == 200, response.text
    return response.json()


class Replica:
    """A client's local copy, built only from a snapshot and the changes after it."""

    def __init__(self, client: TestClient, user: User, trip_id: str) -> None:
        self.client, self.user, self.trip_id = client, user, trip_id
        taken = snapshot(client, user, trip_id)
        self.version = taken["version"]
        self.rows = {(r["entity"], r["id"]): (r["version"], r["data"]) for r in taken["rows"]}

    def pull(self, limit: int = 500) -> None:
        while True:
            page = changes(self.client, self.user, self.trip_id, self.version, limit=limit)
            for change in page["changes"]:
                key = (change["entity"], change["id"])
                if change["op"] == "delete":
                    self.rows.pop(key, None)
                elif key not in self.rows or self.rows[key][0] <= change["version"]:
                    self.rows[key] = (change["version"], change["data"])
            assert page["version"] >= self.version
            self.version = page["version"]
            if not page["has_more"]:
                return

    def state(self) -> dict[tuple[str, str], Any]:
        return {key: data for key, (_, data) in self.rows.items()}


@contextmanager
def listener_down(
    listener: Listener, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    """The worker's listener loses its connection on the server (a restart, a network cut)
    and cannot connect again until the block ends."""
    back = threading.Event()
    connect = listener._open

    def held_connect() -> Any:
        assert back.wait(20)
        return connect()

    monkeypatch.setattr(listener, "_open", held_connect)
    with engine.begin() as connection:
        killed = connection.execute(
            text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE "
                "application_name = 'tripsync-listener' AND datname = current_database()"
            )
        ).scalar_one()
    assert killed >= 1
    deadline = time.monotonic() + 10
    while listener.connected.is_set():
        assert time.monotonic() < deadline, "the listener did not notice"
        time.sleep(0.02)
    try:
        yield
    finally:
        back.set()
