"""Live trip versions: PostgreSQL tells every worker the moment a trip's version is committed.

Every transaction that claims a trip version (app.sync.versions) also runs `pg_notify` on
CHANNEL with `<trip id>:<version>` and no row data. PostgreSQL delivers a notification at
commit and drops it on rollback, so none announces a change that is not visible yet.

Each worker process runs one `Listener`: a connection of its own (not from the request pool:
DB_LISTEN_URL, else the database URL) that runs `LISTEN` and is read on the event loop. It
wakes the requests waiting on that trip (`watch`). When the connection is lost it
reconnects with backoff, and after every reconnect it wakes every waiter, so each one
checks its cursor again: nothing committed while the listener was down is missed.
"""

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import psycopg2
import psycopg2.extensions
from sqlalchemy.engine import make_url

from app.core.config import Settings

logger = logging.getLogger(__name__)

CHANNEL = "tripsync_trip_versions"
_FIRST_BACKOFF, _MAX_BACKOFF = 0.05, 5.0


def payload(trip_id: uuid.UUID | str, version: int) -> str:
    return f"{trip_id}:{version}"


def parse_payload(text: str) -> tuple[uuid.UUID, int] | None:
    trip, _, version = text.partition(":")
    try:
        return uuid.UUID(trip), int(version)
    except ValueError:
        return None


class Watch:
    """One waiter on one trip: set once the trip passes `since`, or when all are woken."""

    def __init__(self, trip_id: uuid.UUID, since: int) -> None:
        self.trip_id = trip_id
        self.since = since
        self.version = since  # the newest version announced since it started watching
        self.event = asyncio.Event()

    @property
    def changed(self) -> bool:
        """A version after `since` was announced: no need to ask the database."""
        return self.version > self.since

    async def wait(self, seconds: float) -> bool:
        """Whether it was woken (a change, or a reconnect) within `seconds`; then re-armed."""
        try:
            await asyncio.wait_for(self.event.wait(), seconds)
        except TimeoutError:
            return False
        self.event.clear()
        return True


def _connect_kwargs(url: str, settings: Settings) -> dict[str, Any]:
    parsed = make_url(url)
    arguments: dict[str, Any] = {
        key: value
        for key, value in parsed.translate_connect_args(username="user", database="dbname").items()
        if value is not None
    }
    arguments.update(parsed.query)
    return {
        **arguments,
        "connect_timeout": settings.DB_CONNECT_TIMEOUT,
        "application_name": "tripsync-listener",
        # A server that vanished without closing the socket is noticed within ~20 s.
        "keepalives": 1,
        "keepalives_idle": 10,
        "keepalives_interval": 5,
        "keepalives_count": 2,
    }


class Listener:
    """The worker's LISTEN connection and the requests waiting on trips (one per event loop)."""

    def __init__(self, settings: Settings) -> None:
        self._connect_arguments = _connect_kwargs(settings.database_listen_url, settings)
        self._waiters: dict[uuid.UUID, set[Watch]] = {}
        self._connection: psycopg2.extensions.connection | None = None
        self._fd: int | None = None  # kept: a broken connection may no longer tell its fd
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._lost = asyncio.Event()
        self.connected = asyncio.Event()
        self.reconnects = 0  # connections made after the first (for tests and the bench)

    # --- waiting ---------------------------------------------------------------------------

    @contextlib.contextmanager
    def watch(self, trip_id: uuid.UUID, since: int) -> Iterator[Watch]:
        """Register a waiter before reading the trip's head, so no commit falls in between."""
        watch = Watch(trip_id, since)
        self._waiters.setdefault(trip_id, set()).add(watch)
        try:
            yield watch
        finally:
            waiters = self._waiters.get(trip_id)
            if waiters is not None:
                waiters.discard(watch)
                if not waiters:
                    del self._waiters[trip_id]

    @property
    def waiting(self) -> int:
        return sum(len(waiters) for waiters in self._waiters.values())

    def _announce(self, trip_id: uuid.UUID, version: int) -> None:
        for watch in self._waiters.get(trip_id, ()):
            if version > watch.version:
                watch.version = version
                watch.event.set()

    def _wake_all(self) -> None:
        for waiters in self._waiters.values():
            for watch in waiters:
                watch.event.set()

    # --- the connection --------------------------------------------------------------------

    async def start(self) -> None:
        """Start listening in the background; the first connection is awaited only briefly."""
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.create_task(self._run(), name="tripsync-listener")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.connected.wait(), 2)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self._close()
        self._wake_all()  # waiting long polls answer now instead of at their deadline

    async def _run(self) -> None:
        backoff = _FIRST_BACKOFF
        first = True
        while True:
            try:
                connection = await asyncio.to_thread(self._open)
            except psycopg2.Error as error:
                logger.warning("listener: cannot connect (%s); retry in %.2f s", error, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, _MAX_BACKOFF)
                continue
            backoff = _FIRST_BACKOFF
            self._connection, self._fd = connection, connection.fileno()
            self._lost.clear()
            assert self._loop is not None
            self._loop.add_reader(self._fd, self._on_readable)
            self.connected.set()
            if not first:
                self.reconnects += 1
                logger.info("listener: reconnected; waking every waiter to re-check")
            first = False
            self._wake_all()  # whatever committed while nobody listened: re-check
            try:
                await self._lost.wait()
            finally:
                self.connected.clear()
                self._close()

    def _open(self) -> psycopg2.extensions.connection:
        connection: psycopg2.extensions.connection = psycopg2.connect(**self._connect_arguments)
        connection.set_session(autocommit=True)
        with connection.cursor() as cursor:
            cursor.execute(f"LISTEN {CHANNEL}")
        return connection

    def _on_readable(self) -> None:
        connection = self._connection
        if connection is None:
            return
        try:
            connection.poll()
        except (psycopg2.OperationalError, psycopg2.InterfaceError) as error:
            logger.warning("listener: connection lost (%s)", str(error).strip())
            self._lost.set()
            return
        while connection.notifies:
            notification = connection.notifies.pop(0)
            parsed = parse_payload(notification.payload)
            if parsed is not None:
                self._announce(*parsed)

    def _close(self) -> None:
        connection, self._connection = self._connection, None
        fd, self._fd = self._fd, None
        if self._loop is not None and fd is not None:
            self._loop.remove_reader(fd)
        if connection is None:
            return
        with contextlib.suppress(psycopg2.Error):
            connection.close()

    def break_connection(self) -> None:
        """Drop the connection as a network failure would (tests): it reconnects by itself."""
        self._lost.set()


@contextlib.asynccontextmanager
async def listening(settings: Settings) -> AsyncIterator[Listener]:
    """For the app's lifespan: the worker's listener runs while the app does."""
    listener = Listener(settings)
    await listener.start()
    try:
        yield listener
    finally:
        await listener.stop()
