"""Helpers shared by the tests: throwaway databases, settings swaps, users and tokens."""

import select
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from email.message import EmailMessage
from typing import Any

import psycopg2
import psycopg2.extensions
from fastapi.testclient import TestClient
from psycopg2.extensions import TRANSACTION_STATUS_IDLE
from sqlalchemy import Connection, Engine, create_engine, event, make_url, text
from sqlalchemy.dialects.postgresql import insert
from sqlmodel import Session

from app.core import db
from app.core.columns import utcnow
from app.core.config import get_settings
from app.core.deadlines import WatchedConnection
from app.core.security import create_access_token
from app.sync import live
from app.users.models import User, UserSession
from devtools import citus

PASSWORD = "correct horse battery"


def _server_engine(url: str):  # type: ignore[no-untyped-def]
    admin = make_url(url).set(drivername="postgresql+psycopg2", database="postgres")
    return create_engine(admin, isolation_level="AUTOCOMMIT", pool_size=1)


def create_database(server_url: str, prefix: str = "tripsync_test") -> str:
    """A fresh, empty database on the server of `server_url`; returns its URL. On a Citus
    coordinator (make test-citus) it is made on every node, with the extension."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    if citus.is_coordinator(server_url):
        url = citus.create_database(server_url, name)
        return (
            make_url(url)
            .set(drivername=make_url(server_url).drivername)
            .render_as_string(hide_password=False)
        )
    engine = _server_engine(server_url)
    with engine.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return make_url(server_url).set(database=name).render_as_string(hide_password=False)


def drop_database(database_url: str) -> None:
    name = make_url(database_url).database
    if name and citus.is_coordinator(database_url):
        citus.drop_database(database_url, name)
        return
    engine = _server_engine(database_url)
    with engine.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    engine.dispose()


def reset_singletons() -> None:
    """Forget every `functools.cache`d function of the loaded app modules (settings, engine,
    sessionmaker, admission limiters, rate-limit store, password hasher, ...): each is
    rebuilt from the current environment when next used."""
    seen: dict[int, Any] = {}
    for module in list(sys.modules.values()):
        name = getattr(module, "__name__", "")
        if name != "app" and not name.startswith("app."):
            continue
        for value in vars(module).values():
            if hasattr(value, "cache_clear") and getattr(value, "__module__", "").startswith(
                "app."
            ):
                seen[id(value)] = value
    for cached in seen.values():
        cached.cache_clear()


@contextmanager
def rolled_back(engine: Engine) -> Iterator[Connection]:
    """One connection in a transaction that the app's sessions join (as savepoints) and that
    is rolled back at the end: everything a test and its requests write is undone."""
    factory = db.get_sessionmaker()
    with engine.connect() as connection:
        transaction = connection.begin()
        factory.configure(bind=connection, join_transaction_mode="create_savepoint")
        try:
            yield connection
        finally:
            factory.configure(bind=engine, join_transaction_mode="conditional_savepoint")
            transaction.rollback()


def session_on(connection: Connection) -> Session:
    """A test's own session on that transaction (commits are savepoints)."""
    return Session(
        bind=connection, join_transaction_mode="create_savepoint", expire_on_commit=False
    )


@contextmanager
def counted_statements(engine: Engine) -> Iterator[list[str]]:
    """The SQL statements sent through `engine` while in the block."""
    statements: list[str] = []

    def count(*args: Any) -> None:
        statements.append(args[2])  # (connection, cursor, statement, parameters, ...)

    event.listen(engine, "before_cursor_execute", count)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", count)


@contextmanager
def counted_round_trips() -> Iterator[list[str]]:
    """Each exchange the app's connections have with the server while in the block, named by
    its first word: each statement (`SELECT` for the pool's pre-ping, `SELECT 1`, too), the
    `BEGIN` psycopg2 sends before the first statement of a transaction (none in autocommit),
    and `COMMIT` and `ROLLBACK` (none when no transaction is open: psycopg2 sends nothing).

    Every call that waits on the server goes through WatchedConnection.watched (the
    deadline's watch), so that is where they are counted.
    """
    trips: list[str] = []
    watched = WatchedConnection.watched

    def counted(connection: WatchedConnection, call: Any, *args: Any) -> Any:
        in_transaction = connection.get_transaction_status() != TRANSACTION_STATUS_IDLE
        name = getattr(call, "__name__", str(call))
        if name in ("execute", "executemany"):
            if not in_transaction and not connection.autocommit:
                trips.append("BEGIN")
            trips.append(str(args[0]).split(None, 1)[0].upper())
        elif name in ("commit", "rollback"):
            if in_transaction:
                trips.append(name.upper())
        else:  # a server-side cursor's fetch or close
            trips.append(name)
        return watched(connection, call, *args)

    WatchedConnection.watched = counted  # type: ignore[method-assign,assignment]
    try:
        yield trips
    finally:
        WatchedConnection.watched = watched  # type: ignore[method-assign]


# Test sessions have ids derived from their user's, so `auth` finds the same one each time.
_TEST_SESSIONS = uuid.UUID("5e55105e-7e57-4000-8000-000000000000")


def session_of(user: User) -> uuid.UUID:
    """The id of the user's test session, as if they had logged in once (made on first use
    through the app's sessions, so it goes where the test's writes go)."""
    session_id = uuid.uuid5(_TEST_SESSIONS, str(user.id))
    now = utcnow()
    with db.get_sessionmaker()() as session:
        session.execute(
            insert(UserSession)
            .values(
                id=session_id,
                user_id=user.id,
                device_label="Test client",
                refresh_key=uuid.uuid4(),
                refresh_hash=b"",
                created_at=now,
                last_used_at=now,
                expires_at=now + timedelta(days=1),
            )
            .on_conflict_do_nothing(index_elements=["id"])
        )
        session.commit()
    return session_id


def auth(user: User, *, if_match: str | int | None = None) -> dict[str, str]:
    """The user's bearer token (of their test session); with `if_match`, also If-Match: a
    version (42 → "42") or "*"."""
    headers = {"Authorization": f"Bearer {create_access_token(user.id, session_of(user))}"}
    if if_match is not None:
        headers["If-Match"] = if_match if isinstance(if_match, str) else f'"{if_match}"'
    return headers


def assert_problem(response, status: int, code: str | None = None) -> dict:  # type: ignore[no-untyped-def]
    """The response is an RFC 9457 problem with our machine-readable code."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert {"type", "title", "status", "detail", "code"} <= body.keys(), body
    assert body["status"] == status
    if code is not None:
        assert body["code"] == code, body
    return body


def participants(client: TestClient, user: User, trip_id: str) -> list[dict[str, Any]]:
    """The trip's participants (members and guests) as `user` sees them."""
    response = client.get(f"/trips/{trip_id}/participants", headers=auth(user))
    assert response.status_code == 200, response.text
    return response.json()["items"]  # type: ignore[no-any-return]


def participant_ids(client: TestClient, user: User, trip_id: str) -> list[str]:
    """The ids of the trip's participants, in the API's order."""
    return [participant["id"] for participant in participants(client, user, trip_id)]


def list_items(client: TestClient, user: User, trip_id: str, **params: str) -> list[Any]:
    """The trip's itinerary items (up to 100) as `user` sees them."""
    response = client.get(
        f"/trips/{trip_id}/items", headers=auth(user), params={"limit": 100, **params}
    )
    assert response.status_code == 200, response.text
    return response.json()["items"]  # type: ignore[no-any-return]


def titles(items: list[Any]) -> list[str]:
    """The items' titles, in order."""
    return [item["title"] for item in items]


def deliver_mail() -> list[EmailMessage]:
    """Run the outbox worker until nothing is due (EMAIL_DELIVERY=memory, inside the test's
    transaction); the messages it sent."""
    from app.outbox import delivery
    from app.outbox.worker import OutboxWorker, drain

    before = len(delivery.sent_in_memory)
    drain(OutboxWorker())
    return delivery.sent_in_memory[before:]


def mail_to(address: str) -> list[EmailMessage]:
    """Every message delivered to `address` so far, oldest first (the outbox is sent first)."""
    from app.outbox import delivery

    deliver_mail()
    return [message for message in delivery.sent_in_memory if message["To"] == address]


def text_of(message: EmailMessage) -> str:
    """The plain-text part of a message."""
    part = message.get_body(("plain",))
    assert part is not None, message
    return str(part.get_content())  # type: ignore[attr-defined]


def mailed_token(address: str) -> str:
    """The verification token in the newest mail to `address` that carries one."""
    for message in reversed(mail_to(address)):
        for line in text_of(message).splitlines():
            if line.startswith("token: "):
                return line[len("token: ") :]
    raise AssertionError(f"no token was mailed to {address}")


@contextmanager
def listening() -> Iterator[psycopg2.extensions.connection]:
    """A LISTEN of our own on the test database's live-version channel, as a worker's
    listener has (the `listening_connection` fixture)."""
    url = get_settings().database_url.replace("postgresql+psycopg2://", "postgresql://")
    connection = psycopg2.connect(url)
    connection.set_session(autocommit=True)
    with connection.cursor() as cursor:
        cursor.execute(f"LISTEN {live.CHANNEL}")
    try:
        yield connection
    finally:
        connection.close()


def received(connection: psycopg2.extensions.connection, seconds: float) -> list[str]:
    """The payloads notified to `connection` within `seconds`, in order."""
    deadline = time.monotonic() + seconds
    payloads: list[str] = []
    while time.monotonic() < deadline:
        select.select([connection], [], [], max(0.0, deadline - time.monotonic()))
        connection.poll()
        payloads.extend(n.payload for n in connection.notifies)
        connection.notifies.clear()
    return payloads


def resolved(document: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    """`node` of an OpenAPI document, or what its `$ref` (into the same document) points to."""
    while "$ref" in node:
        reference: str = node["$ref"]
        node = document
        for part in reference.removeprefix("#/").split("/"):
            node = node[part]
    return node
