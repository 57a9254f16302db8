"""Client-side deadlines on database work (app.core.deadlines): a call the server does not answer
in time is abandoned, its connection discarded, and the request answers 504.

A server that does not answer is simulated here by one without a statement timeout running
`pg_sleep`; tests/faults/test_hang.py freezes a real server under load.
"""

import time
from collections.abc import Callable, Iterator

import pytest
from fastapi.testclient import TestClient
from psycopg2.errors import QueryCanceled
from sqlalchemy import Engine, exc, text

from app.core import deadlines
from app.core.config import Settings
from app.core.db import build_engine
from app.core.deadlines import DatabaseUnresponsive
from app.core.deps import SessionDep
from app.main import create_app
from tests import support

SLACK = 1.0  # for a loaded two-core machine


@pytest.fixture(autouse=True)
def no_deadline_left_behind() -> Iterator[None]:
    """The test's own context may set a deadline; the next test must not inherit it."""
    yield
    deadlines.clear_deadline()


def _engine(engine: Engine, **settings: object) -> Engine:
    url = engine.url.render_as_string(False)
    return build_engine(Settings(_env_file=None, DATABASE_URL=url, **settings))  # type: ignore[arg-type]


def _backend_alive(engine: Engine, pid: int) -> bool:
    with engine.connect() as connection:
        found = connection.execute(
            text("SELECT count(*) FROM pg_stat_activity WHERE pid = :pid"), {"pid": pid}
        ).scalar_one()
    return bool(found)


def test_a_call_past_the_deadline_is_abandoned_and_its_connection_discarded(
    engine: Engine,
) -> None:
    # The server cancels statements after 3 s; the deadline (0.5 s) comes first, as it does
    # when the server hangs and its own timeout cannot fire.
    private = _engine(engine, DB_STATEMENT_TIMEOUT_MS=3000, DB_POOL_SIZE=1, DB_MAX_OVERFLOW=0)
    try:
        with private.connect() as connection:
            pid = connection.execute(text("SELECT pg_backend_pid()")).scalar_one()
        deadlines.start_deadline(0.5)
        started = time.monotonic()
        with private.connect() as connection, pytest.raises(exc.OperationalError) as abandoned:
            connection.execute(text("SELECT pg_sleep(10)"))
        waited = time.monotonic() - started
        assert isinstance(abandoned.value.orig, DatabaseUnresponsive)
        assert abandoned.value.connection_invalidated
        assert 0.5 <= waited < 0.5 + SLACK, waited
        deadlines.clear_deadline()
        # The pool discarded it: the next checkout is a new server process, not the old one.
        with private.connect() as connection:
            assert connection.execute(text("SELECT pg_backend_pid()")).scalar_one() != pid
        # The abandoned statement ends on the server too: its own statement timeout cancels it,
        # and the process finds its client gone.
        gone_by = time.monotonic() + 3 + 5
        while _backend_alive(private, pid):
            assert time.monotonic() < gone_by, "the abandoned statement kept running"
            time.sleep(0.1)
    finally:
        private.dispose()


def test_without_a_request_deadline_each_call_gets_the_statement_timeout_and_the_margin(
    engine: Engine,
) -> None:
    # DB_STARTUP_OPTIONS=false: the server applies no statement timeout (the test role sets
    # none), so only the client's bound ends the call: 300 ms + 200 ms.
    private = _engine(
        engine, DB_STARTUP_OPTIONS=False, DB_STATEMENT_TIMEOUT_MS=300, DB_DEADLINE_MARGIN_MS=200
    )
    try:
        started = time.monotonic()
        with private.connect() as connection, pytest.raises(exc.OperationalError) as abandoned:
            connection.execute(text("SELECT pg_sleep(2)"))
        waited = time.monotonic() - started
        assert isinstance(abandoned.value.orig, DatabaseUnresponsive)
        assert 0.5 <= waited < 0.5 + SLACK, waited
        # Calls that answer in time are untouched, on a fresh connection.
        with private.connect() as connection:
            assert connection.execute(text("SELECT 1")).scalar_one() == 1
    finally:
        private.dispose()


def test_the_server_timeout_still_comes_first_while_the_server_answers(engine: Engine) -> None:
    private = _engine(engine, DB_STATEMENT_TIMEOUT_MS=300)
    try:
        with private.connect() as connection, pytest.raises(exc.OperationalError) as cancelled:
            connection.execute(text("SELECT pg_sleep(2)"))
        assert isinstance(cancelled.value.orig, QueryCanceled)
        assert not cancelled.value.connection_invalidated  # a clean error: the connection stays
    finally:
        private.dispose()


def test_no_connection_is_opened_once_the_deadline_has_passed(engine: Engine) -> None:
    private = _engine(engine)
    try:
        deadlines.start_deadline(0)
        with pytest.raises(exc.OperationalError) as refused:
            private.connect()
        assert isinstance(refused.value.orig, DatabaseUnresponsive)
    finally:
        private.dispose()


def test_a_request_whose_database_work_outlasts_its_deadline_answers_504(
    engine: Engine, environment: Callable[..., None]
) -> None:
    environment(
        DATABASE_URL=engine.url.render_as_string(False),
        DB_STARTUP_OPTIONS="false",
        DB_STATEMENT_TIMEOUT_MS="400",
        DB_DEADLINE_MARGIN_MS="200",
    )
    app = create_app()

    @app.get("/_test/slow")
    def slow(session: SessionDep) -> int:
        # Each statement alone is within the per-call bound; together they are not.
        for _ in range(4):
            session.exec(text("SELECT pg_sleep(0.25)"))  # type: ignore[call-overload]
        return 1

    @app.get("/_test/quick")
    def quick(session: SessionDep) -> int:
        return int(session.exec(text("SELECT 1")).one()[0])  # type: ignore[call-overload]

    client = TestClient(app, raise_server_exceptions=False)
    assert client.get("/_test/quick").json() == 1  # the app's first request sets much up
    started = time.monotonic()
    response = client.get("/_test/slow")
    waited = time.monotonic() - started
    support.assert_problem(response, 504, "database_unresponsive")
    assert response.headers["retry-after"] == "1"
    assert 0.6 <= waited < 0.6 + SLACK, waited
    # The deadline was the request's: the next request has its own, and the pool a fresh
    # connection.
    assert client.get("/_test/quick").json() == 1
