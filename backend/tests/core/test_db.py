"""The engine, the session dependency and init_db, against real PostgreSQL."""

import secrets
import time
import uuid
from collections.abc import Callable, Iterator

import psycopg2
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine, inspect, text
from sqlmodel import Session, select

from app import models
from app.core.config import Settings, get_settings
from app.core.db import (
    build_engine,
    get_engine,
    get_sessionmaker,
    init_db,
    read_session,
    server_timeout_mismatches,
)
from app.core.deps import SessionDep
from app.core.errors import Conflict
from app.main import create_app
from app.outbox.models import OutboxMessage
from app.users.models import User
from tests import support


def test_pool_settings_reach_the_engine() -> None:
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        DATABASE_URL="postgresql://u@127.0.0.1:1/d",
        THREADPOOL_SIZE=10,
        DB_POOL_SIZE=7,
        DB_MAX_OVERFLOW=3,
        DB_POOL_TIMEOUT=1.5,
        DB_POOL_RECYCLE=600,
    )
    engine = build_engine(settings)
    pool = engine.pool
    assert pool.size() == 7  # type: ignore[attr-defined]
    assert pool._max_overflow == 3  # type: ignore[attr-defined]
    assert pool._timeout == 1.5  # type: ignore[attr-defined]
    assert pool._recycle == 600
    assert pool._pre_ping is True
    assert engine.echo is False
    assert engine.dialect.driver == "psycopg2"


def test_statement_timeout_reaches_the_server(engine: Engine) -> None:
    with engine.connect() as connection:
        value = connection.execute(text("SHOW statement_timeout")).scalar_one()
        assert server_timeout_mismatches(connection, get_settings()) == []
    assert value == "15s"


def test_without_startup_options_the_servers_timeouts_apply_and_the_check_reports_them(
    engine: Engine,
) -> None:
    """Behind PgBouncer nothing is sent at connect time, and the start-up check compares."""
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        DATABASE_URL=engine.url.render_as_string(False),
        DB_STARTUP_OPTIONS=False,
        DB_STATEMENT_TIMEOUT_MS=123_456,
        DB_IDLE_IN_TRANSACTION_TIMEOUT_MS=654_321,
    )
    bare = build_engine(settings)
    try:
        with bare.connect() as connection:
            on_server: dict[str, int] = dict(
                connection.execute(
                    text(
                        "SELECT name, setting::int FROM pg_settings WHERE name IN"
                        " ('statement_timeout', 'idle_in_transaction_session_timeout')"
                    )
                ).all()
            )
            mismatches = server_timeout_mismatches(connection, settings)
    finally:
        bare.dispose()
    # The server's own values (this run never sets these two), not the settings'.
    assert on_server["statement_timeout"] != 123_456
    assert on_server["idle_in_transaction_session_timeout"] != 654_321
    assert mismatches == [
        f"idle_in_transaction_session_timeout is "
        f"{on_server['idle_in_transaction_session_timeout']} ms on the server but "
        "DB_IDLE_IN_TRANSACTION_TIMEOUT_MS is 654321",
        f"statement_timeout is {on_server['statement_timeout']} ms on the server but "
        "DB_STATEMENT_TIMEOUT_MS is 123456",
    ]


@pytest.fixture
def committed_app(engine: Engine) -> Iterator[tuple[FastAPI, Engine]]:
    """An app whose sessions commit for real (no test transaction), with a private pool."""
    app = create_app()
    factory = get_sessionmaker()
    private = build_engine(
        Settings(_env_file=None, DATABASE_URL=str(engine.url.render_as_string(False)))
    )  # type: ignore[call-arg]
    factory.configure(bind=private)
    try:
        yield app, private
    finally:
        factory.configure(bind=engine)
        private.dispose()


def test_session_is_rolled_back_and_closed_when_a_route_fails(
    committed_app: tuple[FastAPI, Engine],
) -> None:
    app, private = committed_app
    email = f"rollback-{uuid.uuid4().hex}@example.com"

    @app.post("/_test/crash")
    def crash(session: SessionDep) -> None:
        session.add(User(email=email, full_name="x", password_hash="x"))
        session.flush()  # the row is written inside the transaction...
        raise RuntimeError("boom")  # ...and must not survive this

    @app.post("/_test/refuse")
    def refuse(session: SessionDep) -> None:
        session.add(User(email=email, full_name="x", password_hash="x"))
        session.flush()
        raise Conflict("no")

    client = TestClient(app, raise_server_exceptions=False)
    crashed = client.post("/_test/crash")
    body = support.assert_problem(crashed, 500, "internal_error")
    assert "boom" not in crashed.text, body
    assert "Traceback" not in crashed.text
    support.assert_problem(client.post("/_test/refuse"), 409, "conflict")

    assert private.pool.checkedout() == 0  # type: ignore[attr-defined]
    with Session(private) as session:
        assert session.exec(select(User).where(User.email == email)).first() is None


def test_a_write_is_committed_before_the_response(committed_app: tuple[FastAPI, Engine]) -> None:
    app, private = committed_app
    client = TestClient(app)
    email = f"durable-{uuid.uuid4().hex}@example.com"
    response = client.post(
        "/auth/register", json={"email": email, "password": "password123", "full_name": "D"}
    )
    assert response.status_code == 202
    try:
        # Another connection sees the rows as soon as the 2xx arrived: the account and its mail.
        with Session(private) as session:
            assert session.exec(select(User).where(User.email == email)).one()
            assert session.exec(select(OutboxMessage).where(OutboxMessage.recipient == email)).one()
    finally:
        with Session(private) as session:
            for statement in (
                "DELETE FROM users WHERE email = :e",
                "DELETE FROM outbox_messages WHERE recipient = :e",
            ):
                session.exec(text(statement).bindparams(e=email))  # type: ignore[call-overload]
            session.commit()


def test_pool_exhaustion_answers_503_quickly_and_recovers(engine: Engine, connection) -> None:  # type: ignore[no-untyped-def]
    tiny = build_engine(
        Settings(  # type: ignore[call-arg]
            _env_file=None,
            DATABASE_URL=engine.url.render_as_string(False),
            THREADPOOL_SIZE=1,
            DB_POOL_SIZE=1,
            DB_MAX_OVERFLOW=0,
            DB_POOL_TIMEOUT=0.3,
        )
    )
    factory = get_sessionmaker()
    factory.configure(bind=tiny, join_transaction_mode="conditional_savepoint")
    app = create_app()
    client = TestClient(app, raise_server_exceptions=False)
    try:
        held = tiny.connect()  # the only connection the pool can give
        started = time.monotonic()
        response = client.get("/health/ready")
        elapsed = time.monotonic() - started
        support.assert_problem(response, 503, "database_unavailable")
        assert response.headers["retry-after"] == "1"
        assert elapsed < 3, elapsed
        assert client.get("/health/live").status_code == 200
        held.close()
        assert client.get("/health/ready").status_code == 200
    finally:
        tiny.dispose()


def test_init_db_refuses_in_production(server_url: str) -> None:
    url = support.create_database(server_url)
    try:
        settings = Settings(  # type: ignore[call-arg]
            _env_file=None,
            DATABASE_URL=url,
            ENVIRONMENT="production",
            SECRET_KEY=secrets.token_hex(32),
            EMAIL_DELIVERY="smtp",
        )
        engine = build_engine(settings)
        with pytest.raises(RuntimeError, match="production"):
            init_db(models.metadata, engine, settings)
        assert inspect(engine).get_table_names() == []
        engine.dispose()
    finally:
        support.drop_database(url)


def test_init_db_bootstraps_a_dev_database_at_the_head(server_url: str) -> None:
    url = support.create_database(server_url)
    try:
        settings = Settings(_env_file=None, DATABASE_URL=url, ENVIRONMENT="local")  # type: ignore[call-arg]
        engine = build_engine(settings)
        init_db(models.metadata, engine, settings)
        init_db(
            models.metadata, engine, settings
        )  # idempotent: the second run upgrades (nothing to do)
        assert {"users", "trips", "trip_members", "alembic_version"} <= set(
            inspect(engine).get_table_names()
        )
        engine.dispose()
    finally:
        support.drop_database(url)


def test_the_app_creates_no_tables_at_start_up(
    server_url: str, environment: Callable[..., None]
) -> None:
    url = support.create_database(server_url)
    try:
        environment(DATABASE_URL=url)
        from app.core.db import get_engine

        app = create_app()
        with TestClient(app, raise_server_exceptions=False) as client:  # runs the lifespan
            support.assert_problem(client.get("/health/ready"), 503, "schema_not_at_head")
        assert inspect(get_engine()).get_table_names() == []
        get_engine().dispose()
    finally:
        support.drop_database(url)


def test_the_thread_pool_is_sized_from_settings_at_start_up() -> None:
    import anyio.to_thread

    app = create_app(Settings(_env_file=None, THREADPOOL_SIZE=17))  # type: ignore[call-arg]

    @app.get("/_test/threads")
    async def threads() -> int:
        return int(anyio.to_thread.current_default_thread_limiter().total_tokens)

    with TestClient(app) as client:  # runs the lifespan
        assert client.get("/_test/threads").json() == 17


def test_switching_a_pooled_connection_to_and_from_autocommit_sends_nothing() -> None:
    """A read session and the pool's pre-ping switch psycopg2's autocommit, which must not be
    a statement of its own: one would be a round trip that no deadline watches, and on a
    hung server a request that hangs. A snapshot session's characteristics are forgotten
    when its connection is given back."""
    settings = get_settings().model_copy(update={"DB_POOL_SIZE": 1, "DB_MAX_OVERFLOW": 0})
    engine = build_engine(settings)  # one connection, so each checkout is the same one
    factory = get_sessionmaker()
    observer = psycopg2.connect(get_settings().database_url.replace("+psycopg2", ""))
    observer.autocommit = True

    def last_statement(pid: int) -> tuple[str, object]:
        with observer.cursor() as cursor:
            cursor.execute("SELECT query, query_start FROM pg_stat_activity WHERE pid = %s", [pid])
            row = cursor.fetchone()
        assert row is not None
        return row[0], row[1]

    factory.configure(bind=engine)
    try:
        with engine.connect() as connection:  # a first connection, then in the pool
            pid = connection.connection.dbapi_connection.get_backend_pid()  # type: ignore[union-attr]
        for snapshot_before in (False, True):
            if snapshot_before:  # as get_snapshot_session leaves a connection
                isolation = {"isolation_level": "REPEATABLE READ", "postgresql_readonly": True}
                with engine.connect().execution_options(**isolation) as connection:
                    connection.exec_driver_sql("SELECT 'snapshot'")
                # Rolled back, then the server's defaults noted for later: nothing sent.
                assert last_statement(pid)[0] == "ROLLBACK"
            with read_session() as session:
                session.connection().exec_driver_sql("SELECT 'read'")
                read = last_statement(pid)
            given_back = last_statement(pid)
            with engine.connect() as connection:  # the pre-ping, then out of autocommit
                pinged = last_statement(pid)
            checked_in = last_statement(pid)
            sent = [read[0], given_back[0], pinged[0], checked_in[0]]
            assert not [s for s in sent if s.upper().startswith("SET")], sent
            assert pinged[0] == "SELECT 1", sent
            assert given_back == read, sent  # autocommit: nothing to commit, nothing sent
            assert checked_in == pinged, sent
    finally:
        factory.configure(bind=get_engine())
        engine.dispose()
        observer.close()
