"""Bounded admission of database work (app.core.admission), in one event loop via TestClient.

The fault suite (tests/faults) proves the same against a real uvicorn process.
"""

import threading
import time
import uuid
from collections.abc import Callable, Iterator

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text
from sqlmodel import Session

from app.core import security
from app.core.admission import HASHING_TURN
from app.core.db import get_engine
from app.core.deps import SessionDep
from app.main import create_app
from app.users.models import User
from tests import factories, support

POOL_TIMEOUT = 0.5
TRIP = {"name": "Lisbon", "start_date": "2027-05-01", "end_date": "2027-05-04"}


@pytest.fixture
def two_slots(engine: Engine, environment: Callable[..., None]) -> FastAPI:
    """An app (committed sessions, its own pool) that admits two database requests at once."""
    environment(
        DATABASE_URL=engine.url.render_as_string(False),
        THREADPOOL_SIZE="4",
        DB_POOL_SIZE="2",
        DB_MAX_OVERFLOW="0",
        DB_POOL_TIMEOUT=str(POOL_TIMEOUT),
    )
    return create_app()


def test_requests_beyond_the_limit_get_503_server_busy_within_the_pool_timeout(
    two_slots: FastAPI,
) -> None:
    app = two_slots
    entered, release = threading.Semaphore(0), threading.Event()

    @app.get("/_test/hold")
    def hold(session: SessionDep) -> int:
        session.exec(text("SELECT 1"))  # type: ignore[call-overload]
        entered.release()
        release.wait(10)
        return 1

    @app.get("/_test/fail")
    def fail(session: SessionDep) -> None:
        session.exec(text("SELECT 1"))  # type: ignore[call-overload]
        raise RuntimeError("boom")

    with TestClient(app, raise_server_exceptions=False) as client:  # one event loop
        # Failures give their slot back: three times the limit, then still room for two.
        for _ in range(6):
            support.assert_problem(client.get("/_test/fail"), 500, "internal_error")
        statuses: list[int] = []
        holders = [
            threading.Thread(target=lambda: statuses.append(client.get("/_test/hold").status_code))
            for _ in range(2)
        ]
        for thread in holders:
            thread.start()
        try:
            assert entered.acquire(timeout=10)
            assert entered.acquire(timeout=10)

            started = time.monotonic()
            busy = client.get("/_test/hold")
            waited = time.monotonic() - started
            support.assert_problem(busy, 503, "server_busy")
            assert busy.headers["retry-after"] == "1"
            assert POOL_TIMEOUT * 0.9 <= waited < POOL_TIMEOUT + 2, waited
            support.assert_problem(client.get("/health/ready"), 503, "server_busy")
            started = time.monotonic()
            assert client.get("/health/live").status_code == 200  # no slot, no thread needed
            assert time.monotonic() - started < 1
        finally:
            # TestClient hangs on exit while a request is in flight: let them finish first.
            release.set()
            for thread in holders:
                thread.join(10)
        assert statuses == [200, 200]
        assert client.get("/_test/hold").status_code == 200
        assert client.get("/health/ready").status_code == 200


@pytest.fixture
def one_slot(engine: Engine, environment: Callable[..., None]) -> Iterator[tuple[FastAPI, User]]:
    """An app that admits one database request at once, a committed user; cleaned up after."""
    environment(
        DATABASE_URL=engine.url.render_as_string(False),
        THREADPOOL_SIZE="4",
        DB_MAX_CONCURRENT_REQUESTS="1",
        DB_POOL_TIMEOUT="1",
        PASSWORD_HASH_CONCURRENCY="1",
    )
    with Session(get_engine(), expire_on_commit=False) as session:
        user = factories.make_user(session)
    try:
        yield create_app(), user
    finally:
        with Session(get_engine()) as session:
            for statement in (
                "DELETE FROM trips WHERE created_by = :u",
                "DELETE FROM idempotency_keys WHERE scope LIKE '%' || :u",
                "DELETE FROM users WHERE id = :u",
            ):
                session.exec(text(statement).bindparams(u=str(user.id)))  # type: ignore[call-overload]
            session.commit()


def test_a_long_poll_gives_its_slot_back_while_it_waits(one_slot: tuple[FastAPI, User]) -> None:
    app, user = one_slot
    with TestClient(app) as client:
        trip = factories.create_trip(client, user, **TRIP)
        polled: list[int] = []

        def long_poll() -> None:
            path = f"/trips/{trip['id']}/changes?since={trip['version']}&wait=3"
            polled.append(client.get(path, headers=support.auth(user)).status_code)

        poller = threading.Thread(target=long_poll)
        started = time.monotonic()
        poller.start()
        try:
            time.sleep(0.5)
            # With the only slot kept by the waiting poll, this would be 503 server_busy.
            for _ in range(3):
                response = client.get(f"/trips/{trip['id']}", headers=support.auth(user))
                assert response.status_code == 200, response.text
        finally:
            poller.join(10)  # TestClient hangs on exit while a request is in flight
        assert polled == [200]
        assert time.monotonic() - started >= 3  # it did wait, with nothing to report


def test_a_batch_of_mutations_runs_its_writes_on_its_own_slot(
    one_slot: tuple[FastAPI, User],
) -> None:
    app, user = one_slot
    with TestClient(app) as client:
        trip = factories.create_trip(client, user, **TRIP)
        items = f"/trips/{trip['id']}/items"
        batch = {
            "mutations": [
                {
                    "id": str(n),
                    "method": "POST",
                    "path": items,
                    "headers": {"Idempotency-Key": str(uuid.uuid4())},
                    "body": {"kind": "note", "title": f"Note {n}"},
                }
                for n in range(3)
            ]
        }
        response = client.post(
            f"/trips/{trip['id']}/mutations", headers=support.auth(user), json=batch
        )
        assert response.status_code == 200, response.text
        # A write that waited for a slot of its own would have found the only one held by its
        # batch and, after DB_POOL_TIMEOUT, answered 503: each is applied instead.
        assert [r["result"] for r in response.json()["results"]] == ["applied"] * 3
        listed = client.get(items, headers=support.auth(user)).json()
        assert len(listed["items"]) == 3


def test_a_login_waiting_for_the_password_hasher_holds_no_database_slot(
    one_slot: tuple[FastAPI, User],
) -> None:
    app, user = one_slot
    entered, release = threading.Event(), threading.Event()

    @app.get("/_test/hashing", dependencies=[HASHING_TURN])
    def hashing() -> int:
        # Takes the worker's hashing turn (PASSWORD_HASH_CONCURRENCY=1) and the hasher.
        with security.hashing_slots():
            entered.set()
            release.wait(10)
        return 1

    with TestClient(app) as client:
        answers: list[int] = []
        busy = threading.Thread(
            target=lambda: answers.append(client.get("/_test/hashing").status_code)
        )
        busy.start()
        try:
            assert entered.wait(5)
            form = {"username": user.email, "password": support.PASSWORD}
            login = threading.Thread(
                target=lambda: answers.append(client.post("/auth/login", data=form).status_code)
            )
            login.start()
            time.sleep(0.3)
            # The waiting login holds no slot: the only one is free for this (else 503 after 1 s).
            response = client.get("/users/me", headers=support.auth(user))
            assert response.status_code == 200, response.text
        finally:
            release.set()
            busy.join(10)
            login.join(10)
        assert sorted(answers) == [200, 200]
