"""Test set-up: one real PostgreSQL per run, a fresh database migrated by Alembic, and a
transaction per test that is rolled back, so tests can run in any order."""

import os
import tempfile
import uuid
from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Connection, Engine, text
from sqlmodel import Session

from alembic import command
from tests import support

if TYPE_CHECKING:
    import psycopg2.extensions

    from app.users.models import User

_state: dict[str, object] = {}


def pytest_configure(config: pytest.Config) -> None:
    """Start (or pick) the server and point the app at a fresh database before app imports."""
    server_url = os.environ.get("TEST_DATABASE_URL")
    if not server_url:
        from devtools.local_postgres import LocalPostgres

        server = LocalPostgres(
            Path(tempfile.mkdtemp(prefix="tripsync-pg-")) / "data", durable=False
        )
        server.start()
        _state["server"] = server
        server_url = server.url
    _state["server_url"] = server_url
    database_url = support.create_database(server_url)
    _state["database_url"] = database_url
    os.environ.update(
        DATABASE_URL=database_url,
        ENVIRONMENT="test",
        # Cheap hashes keep the suite fast; production uses the Argon2 defaults.
        ARGON2_TIME_COST="1",
        ARGON2_MEMORY_COST_KIB="1024",
        LOG_LEVEL="WARNING",
        EMAIL_DELIVERY="memory",
        # Tests deliver the outbox themselves (tests.support.deliver_mail): no pacing.
        OUTBOX_SEND_RATE="10000",
        # Every test logs in from the same test client: rate limits are tested on their own.
        LOGIN_ATTEMPTS_PER_ACCOUNT="1000000",
        LOGIN_ATTEMPTS_PER_ADDRESS="1000000",
        TWO_FACTOR_ATTEMPTS_PER_ACCOUNT="1000000",
        TWO_FACTOR_ATTEMPTS_PER_ACCOUNT_DAILY="1000000",
        REGISTRATIONS_PER_ADDRESS="1000000",
        SHARED_READS_PER_ADDRESS="1000000",
        PASSWORD_RESETS_PER_ACCOUNT="1000000",
        PASSWORD_RESETS_PER_ADDRESS="1000000",
        # Reset requests wait this long at least (the production floor is tested on its own).
        PASSWORD_RESET_MIN_RESPONSE_MS="20",
    )
    os.environ.pop("POSTGRES_SERVER", None)
    support.reset_singletons()
    from app.core.db import alembic_config

    command.upgrade(alembic_config(database_url), "head")
    # On a Citus coordinator (make test-citus) the tables are placed as `make migrate` does.
    from app.core.db import get_engine
    from app.core.distribution import distribute

    with get_engine().begin() as connection:
        distribute(connection)
    get_engine().dispose()  # new connections take the database's settings distribute set


def pytest_unconfigure(config: pytest.Config) -> None:
    from app.core.db import get_engine

    get_engine().dispose()
    if "database_url" in _state:
        support.drop_database(str(_state["database_url"]))
    server = _state.get("server")
    if server is not None:
        server.stop()  # type: ignore[attr-defined]


@pytest.fixture(scope="session")
def server_url() -> str:
    """A URL on the test server (the embedded one or TEST_DATABASE_URL) for extra databases."""
    return str(_state["server_url"])


@pytest.fixture(scope="session")
def engine() -> Engine:
    from app.core.db import get_engine

    return get_engine()


@pytest.fixture
def connection(engine: Engine) -> Iterator[Connection]:
    """Everything a test and its requests write happens in this transaction, then is undone."""
    with support.rolled_back(engine) as connection:
        yield connection


@pytest.fixture
def session(connection: Connection) -> Iterator[Session]:
    with support.session_on(connection) as session:
        yield session


@pytest.fixture
def client(connection: Connection) -> TestClient:
    from app.main import app

    # Not entered as a context manager: the lifespan (which disposes the engine) stays out.
    return TestClient(app, raise_server_exceptions=False)


@pytest.fixture
def environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., None]]:
    """Set environment variables for one test: every cached app singleton (settings, engine,
    limiters, stores) is rebuilt before the test, on each call, and after it from the usual
    environment. The one way tests reset cached singletons."""

    def set_environment(**values: str) -> None:
        for key, value in values.items():
            monkeypatch.setenv(key, value)
        support.reset_singletons()

    support.reset_singletons()
    yield set_environment
    from app.core.db import get_engine

    get_engine().dispose()
    monkeypatch.undo()
    support.reset_singletons()


@pytest.fixture
def listening_connection() -> Iterator["psycopg2.extensions.connection"]:
    """A LISTEN of our own on the live-version channel (tests of what commits announce)."""
    with support.listening() as connection:
        yield connection


@pytest.fixture
def committed_trip(engine: Engine) -> Iterator[tuple[uuid.UUID, "User"]]:
    """A trip and its owner, committed (for tests of real concurrency and notifications, and
    of what requests cost on the app's own engine)."""
    from app.trips.models import Role, Trip, TripMember
    from tests import factories

    with Session(engine, expire_on_commit=False) as session:
        owner = factories.make_user(session)
        trip = Trip(name="Committed", start_date=date(2027, 5, 1), end_date=date(2027, 5, 3))
        session.add(trip)
        session.flush()
        session.add(TripMember(trip_id=trip.id, user_id=owner.id, role=Role.OWNER))
        session.commit()
    yield trip.id, owner
    with engine.begin() as connection:
        connection.execute(text("DELETE FROM trips WHERE id = :t"), {"t": trip.id})
        connection.execute(text("DELETE FROM users WHERE id = :u"), {"u": owner.id})
