"""Live trip versions: PostgreSQL tells every worker the moment a trip's version is committed.

Every transaction that claims a trip version (app.sync.versions) also runs `pg_notify` on
CHANNEL with `<trip id>:<version>` and no row data; one that changes who may see a trip also
announces that (`announce_access`: `a:<trip id>:<change>:<user id or *>`). PostgreSQL delivers
a notification at commit and drops it on rollback, so none announces a change that is not
visible yet.

Each worker process runs one `Listener`: a connection of its own (not from the request pool:
DB_LISTEN_URL, else the database URL) that runs `LISTEN` and is read on the event loop. It
wakes the requests waiting on that trip (`watch`) and feeds the event streams
(`subscribe`). When the connection is lost it reconnects with backoff, and after every
reconnect it reads, once for the whole worker, the heads of the trips anyone waits on or
follows and the memberships of the users streaming (`Reread`), and announces what changed as
if it had been notified: nothing committed while the listener was down is missed, and a
thousand waiters cost one query, not a thousand.
"""

import asyncio
import contextlib
import logging
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import psycopg2
import psycopg2.extensions
from sqlalchemy import func, select
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from app.core.config import Settings

logger = logging.getLogger(__name__)

CHANNEL = "tripsync_trip_versions"
_FIRST_BACKOFF, _MAX_BACKOFF = 0.05, 5.0
# Notices a stream may fall behind by before it is told to re-read its state instead.
_QUEUE_LIMIT = 1000


class AccessChange(StrEnum):
    """How a caller's access to a trip changed; a client runs `GET /sync` on any of them."""

    ADDED = "added"  # they became a member
    REMOVED = "removed"  # they left or were removed
    ROLE_CHANGED = "role_changed"
    VISIBILITY_CHANGED = "visibility_changed"  # what viewers may see changed
    DELETED = "deleted"  # the trip was deleted
    CHANGED = "changed"  # (on resume) what they may see changed: take a new snapshot


def payload(trip_id: uuid.UUID | str, version: int) -> str:
    return f"{trip_id}:{version}"


def session_ended_payload(session_id: uuid.UUID) -> str:
    return f"s:{session_id}"


def access_payload(trip_id: uuid.UUID, change: AccessChange, user_id: uuid.UUID | None) -> str:
    return f"a:{trip_id}:{change.value}:{user_id or '*'}"


@dataclass(frozen=True)
class VersionNotice:
    trip_id: uuid.UUID
    version: int


@dataclass(frozen=True)
class AccessNotice:
    trip_id: uuid.UUID
    change: AccessChange
    user_id: uuid.UUID | None  # None: every member of the trip


@dataclass(frozen=True)
class SessionEndedNotice:
    session_id: uuid.UUID  # a signed-in device: its streams end


Notice = VersionNotice | AccessNotice


def parse_payload(text: str) -> Notice | SessionEndedNotice | None:
    try:
        if text.startswith("s:"):
            return SessionEndedNotice(uuid.UUID(text[2:]))
        if text.startswith("a:"):
            _, trip, change, user = text.split(":")
            return AccessNotice(
                uuid.UUID(trip), AccessChange(change), None if user == "*" else uuid.UUID(user)
            )
        trip, version = text.split(":")
        return VersionNotice(uuid.UUID(trip), int(version))
    except ValueError:
        return None


def announce_sessions_ended(session: Session, session_ids: list[uuid.UUID]) -> None:
    """At commit, end the open streams of these sessions (logout, revocation, ...)."""
    for session_id in session_ids:
        session.execute(select(func.pg_notify(CHANNEL, session_ended_payload(session_id))))


def announce_access(
    session: Session, trip_id: uuid.UUID, change: AccessChange, user_id: uuid.UUID | None = None
) -> None:
    """Tell the streams of `user_id` (None: of every member) at commit that access changed."""
    session.execute(select(func.pg_notify(CHANNEL, access_payload(trip_id, change, user_id))))


@dataclass
class _Early:
    versions: dict[uuid.UUID, int] = field(default_factory=dict)
    added: set[uuid.UUID] = field(default_factory=set)
    removed: set[uuid.UUID] = field(default_factory=set)
    trip_notices: list["AccessNotice"] = field(default_factory=list)


class Subscription:
    """One event stream: the trips it follows, and what happened to them, in order.

    Not an asyncio.Queue, and no task waits on it: the listener appends to a list and calls
    `on_wake`, and the stream then writes everything that arrived in one go (one write for a
    burst). An idle stream is only its request, waiting for the client to leave. Slotted: a
    worker holds one per open stream, ten thousand of them.
    """

    __slots__ = (
        "_notices",
        "closed",
        "early",
        "nudged",
        "on_wake",
        "session_id",
        "stale",
        "trips",
        "user_id",
    )

    def __init__(self, user_id: uuid.UUID, session_id: uuid.UUID | None = None) -> None:
        self.user_id = user_id
        self.session_id = session_id  # the signed-in device it was opened for
        self.trips: set[uuid.UUID] = set()
        self._notices: list[Notice] = []
        # Called (on the event loop) whenever there is something to write, or it must end.
        self.on_wake: Callable[[], None] | None = None
        # Until it knows its trips (`Listener.follow`), what was announced meanwhile.
        self.early: _Early | None = _Early()
        # Set when it fell behind (too many notices unread): re-read the state, then go on.
        self.stale = False
        self.closed = False
        self.nudged = False

    def put(self, notice: Notice) -> None:
        if len(self._notices) >= _QUEUE_LIMIT:
            self.stale = True
        else:
            self._notices.append(notice)
        self._wake()

    def close(self) -> None:
        """End the stream (the server is stopping, its client left, or its session ended)."""
        self.closed = True
        self._wake()

    def nudge(self) -> None:
        """Wake the stream with nothing to tell (its heartbeat is due)."""
        self.nudged = True
        self._wake()

    def _wake(self) -> None:
        if self.on_wake is not None:
            self.on_wake()

    def take(self) -> list[Notice]:
        """What was announced since the last call (a heartbeat is no longer due after it)."""
        self.nudged = False
        notices, self._notices = self._notices, []
        return notices

    def drop_notices(self) -> None:
        """Forget what is unread: a read of the state that follows supersedes it."""
        self._notices = []


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


@dataclass(frozen=True)
class WorkerState:
    """What the database says now of the trips and users a worker's clients care about."""

    heads: dict[uuid.UUID, int]  # trip → head version
    memberships: dict[uuid.UUID, set[uuid.UUID]]  # streaming user → their trips


# Reads that state (the feed provides it: this package knows no trips table).
Reread = Callable[[set[uuid.UUID], set[uuid.UUID]], Awaitable[WorkerState]]


class Listener:
    """The worker's LISTEN connection and the requests waiting on trips (one per event loop)."""

    def __init__(self, settings: Settings, reread: Reread) -> None:
        self._connect_arguments = _connect_kwargs(settings.database_listen_url, settings)
        self._reread = reread
        self._waiters: dict[uuid.UUID, set[Watch]] = {}
        self._followers: dict[uuid.UUID, set[Subscription]] = {}
        self._streams: dict[uuid.UUID, set[Subscription]] = {}
        self._devices: dict[uuid.UUID, set[Subscription]] = {}  # by session
        self._reading: set[Subscription] = set()  # streams reading their trips (early mode)
        self._connection: psycopg2.extensions.connection | None = None
        # A duplicate of the connection's socket, watched on the loop. libpq closes its own fd
        # when the server goes away, and the loop's next accept() may get that number back:
        # watching our own duplicate, closed only after it is unwatched, rules that out.
        self._fd: int | None = None
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

    # --- streams ---------------------------------------------------------------------------

    def subscribe(self, user_id: uuid.UUID, session_id: uuid.UUID | None = None) -> Subscription:
        """A new stream of `user_id`'s events, opened by their session (device) `session_id`;
        from now on nothing announced is lost to it, and it ends when that session does."""
        subscription = Subscription(user_id, session_id)
        self._streams.setdefault(user_id, set()).add(subscription)
        if session_id is not None:
            self._devices.setdefault(session_id, set()).add(subscription)
        self._reading.add(subscription)
        return subscription

    def follow(self, subscription: Subscription, trips: dict[uuid.UUID, int]) -> None:
        """The stream's trips (and the versions it told), read after it subscribed; what was
        announced in between comes out of its queue next."""
        early, subscription.early = subscription.early or _Early(), None
        self._reading.discard(subscription)
        wanted = (set(trips) | early.added) - early.removed
        for trip_id in subscription.trips - wanted:
            self._unfollow(subscription, trip_id)
        for trip_id in wanted:
            self._follow(subscription, trip_id)
            if early.versions.get(trip_id, 0) > trips.get(trip_id, 0):
                subscription.put(VersionNotice(trip_id, early.versions[trip_id]))
        for notice in early.trip_notices:
            if notice.trip_id in subscription.trips:
                self._announce_to(subscription, notice)

    def reread(self, subscription: Subscription) -> None:
        """Before a stream reads its trips again: keep what is announced meanwhile for `follow`."""
        subscription.early = _Early()
        self._reading.add(subscription)

    def _follow(self, subscription: Subscription, trip_id: uuid.UUID) -> None:
        subscription.trips.add(trip_id)
        self._followers.setdefault(trip_id, set()).add(subscription)

    def _unfollow(self, subscription: Subscription, trip_id: uuid.UUID) -> None:
        subscription.trips.discard(trip_id)
        followers = self._followers.get(trip_id)
        if followers is not None:
            followers.discard(subscription)
            if not followers:
                del self._followers[trip_id]

    def unsubscribe(self, subscription: Subscription) -> None:
        self._reading.discard(subscription)
        for trip_id in list(subscription.trips):
            self._unfollow(subscription, trip_id)
        streams = self._streams.get(subscription.user_id)
        if streams is not None:
            streams.discard(subscription)
            if not streams:
                del self._streams[subscription.user_id]
        if subscription.session_id is not None:
            device = self._devices.get(subscription.session_id)
            if device is not None:
                device.discard(subscription)
                if not device:
                    del self._devices[subscription.session_id]

    @property
    def streams(self) -> int:
        """Open event streams of this worker."""
        return sum(len(streams) for streams in self._streams.values())

    def streams_of(self, user_id: uuid.UUID) -> int:
        return len(self._streams.get(user_id, ()))

    # --- fan-out ---------------------------------------------------------------------------

    def _announce(self, notice: Notice) -> None:
        if isinstance(notice, VersionNotice):
            self._announce_version(notice)
            return
        if notice.user_id is not None:
            subscriptions = set(self._streams.get(notice.user_id, ()))
        else:
            subscriptions = set(self._followers.get(notice.trip_id, ()))
        if notice.user_id is None:  # streams still reading their trips: kept for `follow`
            for stream in self._reading:
                if stream.early is not None:
                    stream.early.trip_notices.append(notice)
        for subscription in subscriptions:
            self._announce_to(subscription, notice)

    def _announce_to(self, subscription: Subscription, notice: AccessNotice) -> None:
        gone = notice.change in (AccessChange.REMOVED, AccessChange.DELETED)
        early = subscription.early
        if early is not None:
            if gone:
                early.removed.add(notice.trip_id)
                early.added.discard(notice.trip_id)
            elif notice.change is AccessChange.ADDED:
                early.added.add(notice.trip_id)
                early.removed.discard(notice.trip_id)
        elif gone:
            self._unfollow(subscription, notice.trip_id)  # not one more event of it
        elif notice.change is AccessChange.ADDED:
            self._follow(subscription, notice.trip_id)
        subscription.put(notice)

    def _all_streams(self) -> Iterator[Subscription]:
        for streams in self._streams.values():
            yield from streams

    def _announce_version(self, notice: VersionNotice) -> None:
        for watch in self._waiters.get(notice.trip_id, ()):
            if notice.version > watch.version:
                watch.version = notice.version
                watch.event.set()
        for subscription in self._followers.get(notice.trip_id, ()):
            subscription.put(notice)
        for subscription in self._reading:
            if subscription.early is not None:
                versions = subscription.early.versions
                versions[notice.trip_id] = max(versions.get(notice.trip_id, 0), notice.version)

    def _wake_waiters(self) -> None:
        for waiters in self._waiters.values():
            for watch in waiters:
                watch.event.set()

    def close_streams(self) -> None:
        for subscription in list(self._all_streams()):
            subscription.close()

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
        self._wake_waiters()  # waiting long polls answer now instead of at their deadline
        self.close_streams()  # and streams end, so the server can stop

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
            self._connection, self._fd = connection, os.dup(connection.fileno())
            self._lost.clear()
            assert self._loop is not None
            self._loop.add_reader(self._fd, self._on_readable)
            self.connected.set()
            if not first:
                self.reconnects += 1
                logger.info("listener: reconnected; announcing what changed meanwhile")
                await self._catch_up()  # whatever committed while nobody listened
            first = False
            try:
                await self._lost.wait()
            finally:
                self.connected.clear()
                self._close()

    async def _catch_up(self) -> None:
        """After a reconnect: one read for the worker, announced as notifications would be."""
        backoff = _FIRST_BACKOFF
        while True:
            trips = set(self._waiters) | set(self._followers)
            users = set(self._streams)
            try:
                state = await self._reread(trips, users)
                break
            except Exception as error:  # the database just came back: it may still refuse
                logger.warning("listener: cannot read the state (%s); retry", type(error).__name__)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, _MAX_BACKOFF)
        for user_id, now in state.memberships.items():
            for subscription in list(self._streams.get(user_id, ())):
                if subscription.early is not None:
                    continue  # it reads its trips itself, after subscribing
                for trip_id in subscription.trips - now:
                    self._announce_to(
                        subscription, AccessNotice(trip_id, AccessChange.REMOVED, user_id)
                    )
                for trip_id in now - subscription.trips:
                    self._announce_to(
                        subscription, AccessNotice(trip_id, AccessChange.ADDED, user_id)
                    )
        for trip_id, head in state.heads.items():
            self._announce_version(VersionNotice(trip_id, head))

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
            self._unwatch()  # at once: a closed socket stays readable
            self._lost.set()
            return
        while connection.notifies:
            notification = connection.notifies.pop(0)
            notice = parse_payload(notification.payload)
            if isinstance(notice, SessionEndedNotice):
                for subscription in list(self._devices.get(notice.session_id, ())):
                    subscription.close()  # the device signed out, or was signed out
            elif notice is not None:
                self._announce(notice)

    def _unwatch(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            if self._loop is not None:
                self._loop.remove_reader(fd)
            os.close(fd)

    def _close(self) -> None:
        self._unwatch()
        connection, self._connection = self._connection, None
        if connection is None:
            return
        with contextlib.suppress(psycopg2.Error):
            connection.close()


@contextlib.asynccontextmanager
async def listening(settings: Settings, reread: Reread) -> AsyncIterator[Listener]:
    """For the app's lifespan: the worker's listener runs while the app does."""
    listener = Listener(settings, reread)
    await listener.start()
    try:
        yield listener
    finally:
        await listener.stop()
