"""GET /sync/events: the caller's trips live, over server-sent events, against a running app.

Committed data (the app's own transactions must commit for PostgreSQL to notify), cleaned up
after each test.
"""

import json
import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text
from sqlmodel import Session

from app.core.config import get_settings
from app.main import create_app
from app.users.models import User
from tests import factories, support
from tests.sync import support as sync_support

Event = dict[str, Any]


@pytest.fixture
def people(engine: Engine) -> Iterator[tuple[User, User]]:
    with Session(engine, expire_on_commit=False) as session:
        alice = factories.make_user(session)
        bob = factories.make_user(session)
    yield alice, bob
    with engine.begin() as connection:
        for user in (alice, bob):
            connection.execute(text("DELETE FROM trips WHERE created_by = :u"), {"u": user.id})
        for user in (alice, bob):
            connection.execute(
                text("DELETE FROM idempotency_keys WHERE scope LIKE '%' || :u"), {"u": str(user.id)}
            )
            connection.execute(text("DELETE FROM users WHERE id = :u"), {"u": user.id})


@pytest.fixture
def app() -> FastAPI:
    return create_app()


class Listening:
    """An open stream read on a thread of its own; events land in a queue."""

    def __init__(self, client: TestClient, path: str, headers: dict[str, str]) -> None:
        self.events: queue.Queue[Event] = queue.Queue()
        self.status: int | None = None
        self.content_type = ""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, args=(client, path, headers))
        self._thread.start()

    def _read(self, client: TestClient, path: str, headers: dict[str, str]) -> None:
        with client.stream("GET", path, headers=headers) as response:
            self.status = response.status_code
            self.content_type = response.headers.get("content-type", "")
            if response.status_code != 200:
                self.events.put({"status": response.status_code, "body": response.read()})
                return
            event: Event = {}
            for line in response.iter_lines():
                if self._stop.is_set():
                    return
                if not line:
                    if event:
                        self.events.put(event)
                    event = {}
                elif line.startswith(":"):
                    continue
                else:
                    field, _, value = line.partition(":")
                    event[field] = value.strip()

    def next(self, timeout: float = 10) -> Event:
        event = self.events.get(timeout=timeout)
        if "data" in event:
            event["data"] = json.loads(event["data"])
        return event

    def quiet(self, seconds: float = 0.5) -> bool:
        try:
            self.events.get(timeout=seconds)
        except queue.Empty:
            return True
        return False

    def ended(self, timeout: float = 10) -> bool:
        """Whether the server ended the stream within `timeout`."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def close(self, app: FastAPI) -> None:
        self._stop.set()
        # A stream ends when the server does; here, end it by stopping its subscription.
        listener = app.state.listener
        listener._loop.call_soon_threadsafe(listener.close_streams)
        self._thread.join(10)


def _stream_token(client: TestClient, user: User) -> str:
    response = client.post("/sync/stream-tokens", headers=support.auth(user))
    assert response.status_code == 201, response.text
    assert response.headers["cache-control"] == "no-store"
    return str(response.json()["token"])


def _open(client: TestClient, user: User, last_event_id: str | None = None) -> Listening:
    """A new stream of `user`, resuming after `last_event_id` (as EventSource sends it)."""
    headers = {"Last-Event-ID": last_event_id} if last_event_id else {}
    return Listening(client, f"/sync/events?token={_stream_token(client, user)}", headers)


def _head(client: TestClient, user: User, trip_id: str) -> int:
    states = client.get("/sync", headers=support.auth(user)).json()["trips"]
    return next(int(s["version"]) for s in states if s["trip_id"] == trip_id)


def test_a_stream_starts_with_every_trip_and_announces_each_commit(
    app: FastAPI, people: tuple[User, User], engine: Engine
) -> None:
    alice, _ = people
    with TestClient(app) as client:
        trip = factories.create_trip(client, alice)
        stream = _open(client, alice)
        try:
            first = stream.next()
            assert stream.status == 200
            assert stream.content_type.startswith("text/event-stream")
            assert first["event"] == "version"
            assert first["data"] == {
                "trip_id": trip["id"],
                "version": _head(client, alice, trip["id"]),
            }
            assert engine.pool.checkedout() == 0  # type: ignore[attr-defined]

            factories.add_item(client, alice, trip["id"], kind="note", title="news")
            event = stream.next()
            assert event["event"] == "version"
            assert event["data"] == {
                "trip_id": trip["id"],
                "version": _head(client, alice, trip["id"]),
            }
            # Its id is a GET /sync cursor of what the stream told: nothing is new after it.
            resumed = client.get(
                "/sync", headers=support.auth(alice), params={"cursor": event["id"]}
            ).json()
            assert [s["status"] for s in resumed["trips"]] == ["unchanged"]
        finally:
            stream.close(app)


def test_a_reconnecting_stream_gets_what_it_missed_and_nothing_else(
    app: FastAPI, people: tuple[User, User]
) -> None:
    alice, _ = people
    with TestClient(app) as client:
        kept = factories.create_trip(client, alice, name="Kept")
        quiet = factories.create_trip(client, alice, name="Quiet")
        stream = _open(client, alice)
        told = [stream.next(), stream.next()]
        stream.close(app)
        last_id = told[-1]["id"]
        for title in ("one", "two"):
            factories.add_item(client, alice, kept["id"], kind="note", title=title)
        again = _open(client, alice, last_id)
        try:
            event = again.next()
            assert event["data"] == {
                "trip_id": kept["id"],
                "version": _head(client, alice, kept["id"]),
            }
            assert again.quiet()  # nothing about the quiet trip, nothing twice
            assert quiet["id"] not in json.dumps(event)
        finally:
            again.close(app)


def _drain(stream: Listening, quiet_for: float = 1.0) -> list[Event]:
    events = []
    while True:
        try:
            events.append(stream.next(timeout=quiet_for))
        except queue.Empty:
            return events


def test_a_removed_member_is_told_and_hears_nothing_more_of_the_trip(
    app: FastAPI, people: tuple[User, User]
) -> None:
    alice, bob = people
    with TestClient(app) as client:
        trip = factories.create_trip(client, alice)
        stream = _open(client, bob)
        try:
            assert stream.quiet()  # Bob has no trip yet
            factories.join(client, alice, trip["id"], bob, "editor")
            joined = _drain(stream)
            assert {"trip_id": trip["id"], "change": "added"} in [e["data"] for e in joined]
            factories.add_item(client, alice, trip["id"], kind="note", title="for Bob")
            news = stream.next()
            assert news["event"] == "version"
            assert news["data"]["trip_id"] == trip["id"]

            removed = client.delete(
                f"/trips/{trip['id']}/members/{bob.id}",
                headers=support.auth(alice, if_match="*"),
            )
            assert removed.status_code == 204, removed.text
            told = _drain(stream)
            assert told[-1]["event"] == "access"
            assert told[-1]["data"] == {"trip_id": trip["id"], "change": "removed"}
            factories.add_item(client, alice, trip["id"], kind="note", title="not for Bob")
            assert stream.quiet(1.0)
        finally:
            stream.close(app)


def test_stream_tokens_open_streams_and_nothing_else(
    app: FastAPI, people: tuple[User, User], engine: Engine
) -> None:
    alice, _ = people
    with TestClient(app) as client:
        token = _stream_token(client, alice)
        # Not an access token: refused on every other route.
        assert (
            client.get("/users/me", headers={"Authorization": f"Bearer {token}"}).status_code == 401
        )
        # The access token is not a stream token.
        access = support.auth(alice)["Authorization"].removeprefix("Bearer ")
        refused = client.get(f"/sync/events?token={access}")
        support.assert_problem(refused, 401, "invalid_stream_token")
        # Revoked with the session it was issued from.
        with engine.begin() as connection:
            connection.execute(
                text("DELETE FROM user_sessions WHERE user_id = :u"), {"u": alice.id}
            )
        support.assert_problem(
            client.get(f"/sync/events?token={token}"), 401, "invalid_stream_token"
        )
        support.assert_problem(client.get("/sync/events"), 401)


def test_a_user_may_hold_a_bounded_number_of_streams(
    people: tuple[User, User], environment: Callable[..., None]
) -> None:
    alice, _ = people
    environment(SSE_MAX_STREAMS_PER_USER="2")
    app = create_app()
    with TestClient(app) as client:
        streams = [_open(client, alice) for _ in range(2)]
        try:
            for stream in streams:
                stream.quiet(0.5)
            assert app.state.listener.streams_of(alice.id) == 2
            third = client.get(f"/sync/events?token={_stream_token(client, alice)}")
            support.assert_problem(third, 429, "too_many_streams")
        finally:
            for stream in streams:
                stream.close(app)


def test_a_last_event_id_it_cannot_read_makes_the_client_list_its_trips_afresh(
    app: FastAPI, people: tuple[User, User]
) -> None:
    alice, bob = people
    with TestClient(app) as client:
        trip = factories.create_trip(client, alice)
        stream = _open(client, alice)
        alices_id = stream.next()["id"]
        stream.close(app)
        # An id of another user's stream (or an altered one) says nothing about Alice's.
        for unreadable in (alices_id[:-2] + "xx", _open_and_take_id(client, app, bob)):
            again = _open(client, alice, unreadable)
            try:
                first = again.next()
                assert (first["event"], first["data"]) == ("reset", {})
                assert again.next()["data"]["trip_id"] == trip["id"]
            finally:
                again.close(app)


def _open_and_take_id(client: TestClient, app: FastAPI, user: User) -> str:
    factories.create_trip(client, user, name="Bob's")
    stream = _open(client, user)
    try:
        return str(stream.next()["id"])
    finally:
        stream.close(app)


def test_what_commits_while_the_listener_is_down_reaches_the_streams_when_it_is_back(
    app: FastAPI, people: tuple[User, User], engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice, _ = people
    with TestClient(app) as client:
        kept = factories.create_trip(client, alice, name="Kept")
        stream = _open(client, alice)
        try:
            stream.next()
            with sync_support.listener_down(app.state.listener, engine, monkeypatch):
                # Unheard: a change to her trip, and a trip of hers that the stream does not know.
                factories.add_item(client, alice, kept["id"], kind="note", title="while down")
                new = factories.create_trip(client, alice, name="New")
                assert stream.quiet(0.3)
            told = {(e["event"], e["data"]["trip_id"]) for e in _drain(stream)}
            assert told == {
                ("version", kept["id"]),
                ("access", new["id"]),
                ("version", new["id"]),
            }
        finally:
            stream.close(app)


def test_a_browser_on_another_origin_may_resume_a_stream(client: TestClient) -> None:
    """EventSource sends Last-Event-ID when it reconnects: the CORS preflight allows it."""
    origin = get_settings().CORS_ORIGINS[0]
    preflight = client.options(
        "/sync/events",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "last-event-id",
        },
    )
    assert preflight.status_code == 200, preflight.text
    allowed = preflight.headers["access-control-allow-headers"].lower()
    assert "last-event-id" in allowed


def _log_in(client: TestClient, user: User, device: str) -> dict[str, str]:
    response = client.post(
        "/auth/login",
        data={"username": user.email, "password": support.PASSWORD, "device_label": device},
    )
    assert response.status_code == 200, response.text
    tokens: dict[str, str] = response.json()
    return {"Authorization": f"Bearer {tokens['access_token']}"}


def test_a_stream_ends_when_its_session_ends_and_the_others_go_on(
    app: FastAPI, people: tuple[User, User]
) -> None:
    """Logging out, or signing a lost phone out from another device, cuts its live stream too,
    not only its tokens; the streams of other devices are untouched."""
    alice, _ = people
    with TestClient(app) as client:
        trip = factories.create_trip(client, alice)
        phone, laptop, tablet = (
            _log_in(client, alice, name) for name in ("phone", "laptop", "tablet")
        )
        token = client.post("/sync/stream-tokens", headers=phone).json()["token"]
        on_phone = Listening(client, f"/sync/events?token={token}", {})
        on_laptop = Listening(client, "/sync/events", laptop)  # a native client: bearer header
        on_tablet = Listening(client, "/sync/events", tablet)
        try:
            for stream in (on_phone, on_laptop, on_tablet):
                assert stream.next()["event"] == "version"
            sessions = client.get("/users/me/sessions", headers=laptop).json()["items"]
            phone_session = next(s["id"] for s in sessions if s["device_label"] == "phone")

            revoked = client.delete(f"/users/me/sessions/{phone_session}", headers=laptop)
            assert revoked.status_code == 204, revoked.text
            assert on_phone.ended()

            assert client.post("/auth/logout", headers=laptop).status_code == 204
            assert on_laptop.ended()

            factories.add_item(client, alice, trip["id"], kind="note", title="still live")
            assert on_tablet.next()["event"] == "version"  # the other device streams on
            assert not on_tablet.ended(0.2)
        finally:
            on_tablet.close(app)
