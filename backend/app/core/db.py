"""The engine, the session factory, the request's session, the schema's revision against the
migrations the package carries (app/migrations), and the dev-only `init_db`."""

import logging
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import anyio
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from anyio import CapacityLimiter, to_thread
from psycopg2.extensions import TRANSACTION_STATUS_IDLE
from sqlalchemy import Connection, Dialect, Engine, MetaData, create_engine, event, inspect, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import sessionmaker
from sqlmodel import Session

from alembic import command
from app.core.admission import DatabaseSlotDep, DatabaseSlotLongDep
from app.core.config import Environment, Settings, get_settings
from app.core.deadlines import connect_timeout_within_deadline, watched_connection_class
from app.core.errors import AppError

logger = logging.getLogger(__name__)

_SOURCE_BACKEND_DIR = Path(__file__).resolve().parents[2]
# The checkout's top folder when the app runs from one; installed (a wheel, the image), the
# working directory. Relative FRONTEND_DIR, EMAIL_OUTBOX_DIR and EMBEDDED_PG_DATA start there.
REPO_DIR = (
    _SOURCE_BACKEND_DIR.parent if (_SOURCE_BACKEND_DIR / "pyproject.toml").is_file() else Path.cwd()
)
BACKEND_DIR = REPO_DIR / "backend"


def build_engine(settings: Settings) -> Engine:
    """One engine per process: pooled, pre-pinged, with server-side timeouts from settings,
    and client-side deadlines for a server that hangs (app.core.deadlines)."""
    connect_args: dict[str, Any] = {
        "connect_timeout": settings.DB_CONNECT_TIMEOUT,
        "application_name": "tripsync-api",
        # Every call that waits on the server is watched against its deadline.
        "connection_factory": watched_connection_class(settings.database_deadline_seconds),
        # A lost peer: an idle connection is probed, unacknowledged data is given up on.
        "keepalives": 1,
        "keepalives_idle": settings.DB_KEEPALIVES_IDLE_SECONDS,
        "keepalives_interval": settings.DB_KEEPALIVES_INTERVAL_SECONDS,
        "keepalives_count": settings.DB_KEEPALIVES_COUNT,
        "tcp_user_timeout": settings.DB_TCP_USER_TIMEOUT_MS,
    }
    if settings.DB_STARTUP_OPTIONS:
        # Sent once per connection at start-up: no round trip per transaction. PgBouncer
        # refuses them; there the server sets the timeouts (check_server_timeouts says so).
        connect_args["options"] = (
            f"-c statement_timeout={settings.DB_STATEMENT_TIMEOUT_MS} "
            f"-c idle_in_transaction_session_timeout={settings.DB_IDLE_IN_TRANSACTION_TIMEOUT_MS}"
        )
    engine = create_engine(
        settings.database_url,
        echo=False,
        # The ping is a watched call too: on a hung server it fails at the request's deadline.
        pool_pre_ping=True,
        pool_size=settings.DB_POOL_SIZE,
        max_overflow=settings.DB_MAX_OVERFLOW,
        pool_timeout=settings.DB_POOL_TIMEOUT,
        pool_recycle=settings.DB_POOL_RECYCLE,
        connect_args=connect_args,
    )

    @event.listens_for(engine, "do_connect")
    def connect_within_deadline(
        dialect: Dialect, _record: Any, cargs: list[Any], cparams: dict[str, Any]
    ) -> Any:
        # A new connection may not outlast the request's deadline either.
        timeout = connect_timeout_within_deadline(settings.DB_CONNECT_TIMEOUT)
        return dialect.connect(*cargs, **{**cparams, "connect_timeout": timeout})

    event.listen(engine, "checkin", _back_to_the_defaults)
    event.listen(engine, "checkout", _transactions_again)
    return engine


def _may_toggle_autocommit(dbapi_connection: Any) -> bool:
    """Whether psycopg2 switches this connection to and from autocommit without a word to the
    server: only while it is idle and its transaction characteristics are the server's
    defaults. With one set on it (a snapshot session sets REPEATABLE READ, READ ONLY, and
    SQLAlchemy sets READ COMMITTED and READ WRITE back after it), each switch sends `SET
    default_transaction_...`, a round trip that no deadline watches (app.core.deadlines)
    and that hangs on a hung server. SQLAlchemy's pre-ping switches it, so does
    `read_session` (tests/core/test_db.py checks what is sent)."""
    return (
        dbapi_connection is not None
        and not dbapi_connection.closed
        and dbapi_connection.isolation_level is None
        and dbapi_connection.readonly is None
        and dbapi_connection.deferrable is None
        and dbapi_connection.get_transaction_status() == TRANSACTION_STATUS_IDLE
    )


def _back_to_the_defaults(dbapi_connection: Any, _record: Any) -> None:
    """At check-in: a connection left with characteristics of its own (after a snapshot
    session) gets the server's defaults back, which outside autocommit psycopg2 only notes
    for its next BEGIN; so the next pre-ping's switch to autocommit sends nothing."""
    if dbapi_connection is None or dbapi_connection.closed or dbapi_connection.autocommit:
        return
    if dbapi_connection.get_transaction_status() == TRANSACTION_STATUS_IDLE:
        dbapi_connection.isolation_level = None
        dbapi_connection.readonly = None
        dbapi_connection.deferrable = None


def _transactions_again(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
    # A read session (read_session) leaves its connection in autocommit: the next session's
    # first statement begins a transaction again, as it always did. (The pre-ping, before
    # this, runs in autocommit anyway: SQLAlchemy switches psycopg2 to it for the ping.)
    if dbapi_connection.autocommit:
        dbapi_connection.autocommit = False


# The server's timeouts (in milliseconds in pg_settings) and the settings they should match.
SERVER_TIMEOUTS = {
    "statement_timeout": "DB_STATEMENT_TIMEOUT_MS",
    "idle_in_transaction_session_timeout": "DB_IDLE_IN_TRANSACTION_TIMEOUT_MS",
}


def server_timeout_mismatches(connection: Connection, settings: Settings) -> list[str]:
    """Each server-side timeout this connection runs with that differs from its setting."""
    rows = connection.execute(
        text("SELECT name, setting FROM pg_settings WHERE name = ANY(:names)"),
        {"names": list(SERVER_TIMEOUTS)},
    ).all()
    mismatches = []
    for name, value in sorted(rows):
        wanted = getattr(settings, SERVER_TIMEOUTS[name])
        if int(value) != wanted:
            mismatches.append(
                f"{name} is {value} ms on the server but {SERVER_TIMEOUTS[name]} is {wanted}"
            )
    return mismatches


@cache
def get_engine() -> Engine:
    return build_engine(get_settings())


@cache
def get_sessionmaker() -> sessionmaker[Session]:
    # Objects stay readable after commit: responses are serialised from them.
    return sessionmaker(bind=get_engine(), class_=Session, expire_on_commit=False)


def check_server_timeouts(settings: Settings) -> None:
    """At start-up with DB_STARTUP_OPTIONS=false: warn when the server's timeouts differ.

    The app no longer sets them itself then (behind PgBouncer), so a database whose role
    was never given them would run without a statement timeout, and never answer 504.
    """
    try:
        with get_engine().connect() as connection:
            mismatches = server_timeout_mismatches(connection, settings)
    except SQLAlchemyError as error:
        logger.warning(
            "could not check the server's timeouts at start-up: %s", type(error).__name__
        )
        return
    for mismatch in mismatches:
        logger.warning(
            "%s; with DB_STARTUP_OPTIONS=false set it on the server (ALTER ROLE ... IN "
            'DATABASE ... SET, see docs/operations.md, "PgBouncer, transaction pooling")',
            mismatch,
        )


async def get_session(_slot: DatabaseSlotDep) -> AsyncIterator[Session]:
    """The request's session: committed when the route succeeds, rolled back otherwise (unless
    the error `keeps_writes`, app.core.errors.AppError), closed.

    Routes declare it through `SessionDep`, whose function scope makes the commit happen
    before the response is sent, so a 2xx always means the write is durable. It opens only
    once the request holds a database slot (app.core.admission), returned after it closes.

    Async on purpose: making a session does no I/O (it takes a connection on first use), so
    it is made on the event loop instead of costing a trip through the thread pool. Commit
    (or rollback) and close do I/O, so they run on a worker thread with a limiter of their
    own, as FastAPI does for a sync dependency's exit: giving a connection back never waits
    for a thread of the request pool, which could all be waiting for connections.
    """
    session = get_sessionmaker()()
    try:
        yield session
    except BaseException as error:
        # Nearly every failure rolls back; one that says otherwise keeps its writes.
        keep = isinstance(error, AppError) and error.keeps_writes
        end = _commit_and_close if keep else _rollback_and_close
        with anyio.CancelScope(shield=True):
            await to_thread.run_sync(end, session, limiter=CapacityLimiter(1))
        raise
    with anyio.CancelScope(shield=True):
        await to_thread.run_sync(_commit_and_close, session, limiter=CapacityLimiter(1))


@contextmanager
def read_session() -> Iterator[Session]:
    """A session for a read answered by one statement, opened and closed on the route's own
    worker thread (one trip through the thread pool for the whole read). It runs in
    autocommit: the read costs two round trips, the pool's pre-ping and the statement, with
    no BEGIN and COMMIT around it. A statement sees one snapshot on its own; a route that
    reads in several statements that must agree, or writes, uses `get_session`. The route
    holds a database slot (`DatabaseSlotDep`) while it reads. Bound to a connection already
    in a transaction (as the tests bind the factory), it joins that transaction.
    """
    factory = get_sessionmaker()
    session = factory()
    try:
        if isinstance(factory.kw.get("bind"), Engine):
            # Checked out (and pinged) now, before any statement began a transaction on it:
            # psycopg2 takes autocommit here and gives it up at the next checkout, without a
            # word to the server (_may_toggle_autocommit; else the read keeps a transaction).
            # Not SQLAlchemy's AUTOCOMMIT isolation level: resetting it sets READ COMMITTED
            # on the connection, after which every switch is a statement of its own.
            dbapi_connection = session.connection().connection.dbapi_connection
            if _may_toggle_autocommit(dbapi_connection):
                dbapi_connection.autocommit = True  # type: ignore[union-attr]
        yield session
    finally:
        _rollback_and_close(session)


def get_snapshot_session(_slot: DatabaseSlotLongDep) -> Iterator[Session]:
    """A read-only session for a response streamed after the route returns (the export).

    Unlike `get_session` it stays open until the whole response has been sent (request
    scope: FastAPI ends it after the response), holding its database slot and connection
    for that long, and it writes nothing: it is rolled back and closed at the end. On a
    fresh connection its transaction is REPEATABLE READ, READ ONLY: every query of the
    response sees one snapshot of the database, as of its first query. (A factory bound to
    a connection already in a transaction, as the tests bind it, keeps that transaction.)
    """
    session = get_sessionmaker()()
    try:
        if isinstance(session.get_bind(), Engine):
            session.connection(
                execution_options={
                    "isolation_level": "REPEATABLE READ",
                    "postgresql_readonly": True,
                }
            )
        yield session
    finally:
        session.close()


def _commit_and_close(session: Session) -> None:
    try:
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def _rollback_and_close(session: Session) -> None:
    try:
        session.rollback()
    finally:
        session.close()


def migrations_dir() -> Path:
    """The Alembic environment (env.py, versions/), found through the installed package."""
    return Path(str(resources.files("app") / "migrations"))


def alembic_config(database_url: str | None = None) -> Config:
    """Alembic's configuration, built in code: no alembic.ini is needed, wherever the package
    is installed. (The repository's alembic.ini, for the `alembic` command, says the same.)"""
    config = Config()
    config.attributes["configure_logger"] = False  # keep the caller's logging as it is
    config.set_main_option("script_location", str(migrations_dir()))
    config.set_main_option("path_separator", "os")
    config.set_main_option(
        "file_template",
        "%%(year)d_%%(month).2d_%%(day).2d_%%(hour).2d%%(minute).2d-%%(rev)s_%%(slug)s",
    )
    config.set_main_option("timezone", "UTC")
    if database_url is not None:
        config.attributes["database_url"] = database_url
    return config


@cache
def _script_directory() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config())


@cache
def alembic_head() -> str | None:
    return _script_directory().get_current_head()


@cache
def known_revisions() -> frozenset[str]:
    """Every revision the app's migrations define."""
    return frozenset(script.revision for script in _script_directory().walk_revisions())


def current_revision_of(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return current_revision_of(connection)


class SchemaStatus(StrEnum):
    AT_HEAD = "at_head"
    # No Alembic revision at all: never migrated (or not this app's database).
    EMPTY = "empty"
    # A revision of the app's migrations before the head: `make migrate` was not run.
    BEHIND = "behind"
    # A revision the app does not know: a newer release migrated it (a rolling deploy). Its
    # migrations only added to the schema (docs/operations.md), so this app works on it.
    AHEAD = "ahead"


@dataclass(frozen=True)
class SchemaState:
    revision: str | None
    head: str | None
    status: SchemaStatus

    @property
    def serves(self) -> bool:
        """The app can serve requests on this schema (ready)."""
        return self.status in (SchemaStatus.AT_HEAD, SchemaStatus.AHEAD)

    def describe(self) -> str:
        match self.status:
            case SchemaStatus.AT_HEAD:
                return f"The database schema is at the head revision {self.head}."
            case SchemaStatus.EMPTY:
                return (
                    f"The database has no schema (no Alembic revision), expected {self.head}: "
                    "run `make migrate` (python -m app.cli migrate)."
                )
            case SchemaStatus.BEHIND:
                return (
                    f"The database schema is at revision {self.revision}, behind the app's "
                    f"head {self.head}: run `make migrate` (python -m app.cli migrate)."
                )
            case SchemaStatus.AHEAD:
                return (
                    f"The database schema is at revision {self.revision}, which this app's "
                    f"migrations (head {self.head}) do not know: a newer release migrated it. "
                    "Serving, as a rolling deploy does (expand, then contract: "
                    "docs/operations.md)."
                )


def schema_state_of(connection: Connection) -> SchemaState:
    """Where the database's schema stands against the migrations this app carries."""
    revision, head = current_revision_of(connection), alembic_head()
    if revision is None:
        status = SchemaStatus.EMPTY
    elif revision == head:
        status = SchemaStatus.AT_HEAD
    elif revision in known_revisions():
        status = SchemaStatus.BEHIND
    else:
        status = SchemaStatus.AHEAD
    return SchemaState(revision=revision, head=head, status=status)


class StartupRefused(RuntimeError):
    """The app must not serve: the message says why and what to do."""


def check_schema_at_startup() -> SchemaState | None:
    """In production, before serving: refuse a database without the app's schema or behind
    it (its requests would fail with 500s); warn about one ahead of it, and serve.

    A database that does not answer yet is not refused (readiness says 503 until it does):
    a database restart must not stop the app from starting.
    """
    try:
        with get_engine().connect() as connection:
            state = schema_state_of(connection)
    except SQLAlchemyError as error:
        logger.warning(
            "could not check the database schema at start-up (%s); /health/ready answers 503 "
            "until the database answers",
            type(error).__name__,
        )
        return None
    if not state.serves:
        raise StartupRefused(f"refusing to start: {state.describe()}")
    if state.status is SchemaStatus.AHEAD:
        logger.warning("%s", state.describe())
    return state


def init_db(
    metadata: MetaData, engine: Engine | None = None, settings: Settings | None = None
) -> None:
    """Dev convenience: bring the database to the current schema. Refuses in production.

    A fresh database gets every table from the models (`create_all`) and is stamped at the
    Alembic head, which the models match (a test proves it); a database that already has
    a revision is upgraded through the migrations, exactly as production is. `metadata` holds
    every table (app.models.metadata): core imports no feature, so the caller brings them.
    """
    settings = settings or get_settings()
    if settings.ENVIRONMENT is Environment.PRODUCTION:
        raise RuntimeError(
            "init_db() is a dev convenience and refuses to run with ENVIRONMENT=production; "
            "apply migrations with `make migrate` (alembic upgrade head)."
        )
    engine = engine or get_engine()
    config = alembic_config(engine.url.render_as_string(hide_password=False))
    if current_revision(engine) is not None:
        command.upgrade(config, "head")
        return
    if inspect(engine).get_table_names():
        raise RuntimeError("the database has tables but no Alembic revision; refusing to guess")
    metadata.create_all(engine)
    command.stamp(config, "head")
    logger.info("created all tables and stamped the Alembic head")
