"""Client-side deadlines on database work: a request answers in time even when PostgreSQL hangs.

The server's `statement_timeout` bounds a statement only while the server runs: a frozen server
(or a network that drops packets) answers nothing, and libpq waits in `recv` for as long as it
lasts. So every call that waits on the server (a statement, a fetch of a server-side cursor,
COMMIT, ROLLBACK, the pool's pre-ping) is watched here, on the client:

- a call may take at most the engine's `call_seconds` (DB_STATEMENT_TIMEOUT_MS plus
  DB_DEADLINE_MARGIN_MS: the server's own timeout fires first whenever the server is alive),
  and no longer than the request's database deadline, when one is set (`start_deadline`, set
  by app.core.admission when a request takes its database slot);
- one watchdog thread per process wakes every `TICK_SECONDS` while a call is in flight; a call
  past its deadline has its socket shut down (`shutdown(2)` on libpq's socket), which makes the
  blocked `recv`/`send` return at once: the call raises `DatabaseUnresponsive`, the connection
  is closed, and SQLAlchemy sees a disconnect, invalidates it and never returns it to the pool.

No cancel request is sent: it would go through the postmaster, the very process that is not
answering, and libpq's cancel has no timeout. The server ends the statement itself: its own
statement_timeout has passed by then (it fires as soon as a frozen server runs again), and the
backend finds its client gone when it next reads or writes, and rolls back.
"""

import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import psycopg2.extensions

# How often the watchdog looks at the calls in flight: a deadline is kept within this.
TICK_SECONDS = 0.05

_deadline: ContextVar[float | None] = ContextVar("tripsync_database_deadline", default=None)


class DatabaseUnresponsive(psycopg2.OperationalError):
    """The database did not answer a call before its deadline: the call was abandoned and its
    connection closed. Whether a COMMIT among them took effect is unknown."""


def start_deadline(seconds: float) -> None:
    """From now on, this context's database work must be done within `seconds`."""
    _deadline.set(time.monotonic() + seconds)


@contextmanager
def deadline_of(seconds: float) -> Iterator[None]:
    """A deadline for the database work in the block only (work a request does before it
    takes its slot: a rate-limit count on a connection of its own)."""
    token = _deadline.set(time.monotonic() + seconds)
    try:
        yield
    finally:
        _deadline.reset(token)


def clear_deadline() -> None:
    """Only the per-call bound applies from now on (for work that outlives its request)."""
    _deadline.set(None)


def seconds_left() -> float | None:
    """What is left of this context's deadline (negative once past), or None without one."""
    deadline = _deadline.get()
    return None if deadline is None else deadline - time.monotonic()


def connect_timeout_within_deadline(connect_timeout: int) -> int:
    """libpq's `connect_timeout` for a new connection: DB_CONNECT_TIMEOUT, cut to what is left
    of the deadline in whole seconds (libpq's unit; at least 1, so a deadline under a second
    away may be overrun by less than one); none left: refuse without trying."""
    left = seconds_left()
    if left is None:
        return connect_timeout
    if left <= 0:
        raise DatabaseUnresponsive("the deadline passed before a connection could be opened")
    return max(1, min(connect_timeout, int(left)))


class _Watch:
    __slots__ = ("deadline", "fileno", "fired")

    def __init__(self, fileno: int, deadline: float) -> None:
        self.fileno = fileno
        self.deadline = deadline
        self.fired = False


class Watchdog:
    """One thread that shuts down the socket of each call still in flight past its deadline.

    `arm` and `disarm` take one lock, shared with the shutdown: a socket is shut down only
    while its call is still armed, so never after its connection has been closed (and its
    file descriptor possibly reused). The thread sleeps while nothing is armed, and is woken
    only from that sleep: under load it ticks, and a call costs no thread switch.
    """

    def __init__(self) -> None:
        self._reset()
        os.register_at_fork(after_in_child=self._reset)

    def _reset(self) -> None:
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._armed: set[_Watch] = set()
        self._idle = False
        self._thread: threading.Thread | None = None

    def arm(self, fileno: int, deadline: float) -> _Watch:
        watch = _Watch(fileno, deadline)
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="database-watchdog", daemon=True
                )
                self._thread.start()
            if self._idle:
                self._idle = False
                self._wake.notify()
            self._armed.add(watch)
        return watch

    def disarm(self, watch: _Watch) -> bool:
        """Stop watching; True when the deadline passed first (the socket was shut down)."""
        with self._lock:
            self._armed.discard(watch)
            return watch.fired

    def _run(self) -> None:
        with self._lock:
            while True:
                if not self._armed:
                    self._idle = True
                    while self._idle:
                        self._wake.wait()
                self._wake.wait(TICK_SECONDS)  # no one wakes it early: see `arm`
                now = time.monotonic()
                for watch in [w for w in self._armed if w.deadline <= now]:
                    self._armed.discard(watch)
                    watch.fired = True
                    _shut_down(watch.fileno)


def _shut_down(fileno: int) -> None:
    # A duplicate of the descriptor: shutdown acts on the socket itself, close only on the copy.
    try:
        with socket.socket(fileno=os.dup(fileno)) as sock:
            sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # already closed by the peer: the call is failing on its own


_watchdog = Watchdog()


class WatchedConnection(psycopg2.extensions.connection):
    """A psycopg2 connection whose waiting calls are bounded (see the module's docstring).

    Made per engine by `watched_connection_class`, which sets `call_seconds`.
    """

    call_seconds: float = 15.5

    def __init__(self, dsn: str, *args: Any, **kwargs: Any) -> None:
        super().__init__(dsn, *args, **kwargs)
        self.cursor_factory = WatchedCursor

    def call_deadline(self) -> float:
        deadline = time.monotonic() + self.call_seconds
        request = _deadline.get()
        return deadline if request is None else min(deadline, request)

    def watched(self, call: Any, *args: Any) -> Any:
        """`call(*args)` with its deadline; `DatabaseUnresponsive` (the connection closed) if
        the deadline passed first."""
        watch = _watchdog.arm(self.fileno(), self.call_deadline())
        try:
            result = call(*args)
        except BaseException as error:
            # Disarmed whatever happens: once the connection closes, its descriptor is reused.
            self._disarm(watch, error)
            raise
        self._disarm(watch)
        return result

    def _disarm(self, watch: _Watch, error: BaseException | None = None) -> None:
        if _watchdog.disarm(watch):
            self.close()
            raise DatabaseUnresponsive(
                "the database did not answer before the deadline; the call was abandoned"
            ) from error

    def commit(self) -> None:
        self.watched(super().commit)

    def rollback(self) -> None:
        self.watched(super().rollback)


class WatchedCursor(psycopg2.extensions.cursor):
    """Statements, and fetches of a server-side (named) cursor, watched by their connection."""

    connection: WatchedConnection

    def execute(self, query: Any, vars: Any = None) -> None:
        self.connection.watched(super().execute, query, vars)

    def executemany(self, query: Any, vars_list: Any) -> None:
        self.connection.watched(super().executemany, query, vars_list)

    def fetchone(self) -> Any:
        if self.name is None:  # a client-side cursor holds its rows already
            return super().fetchone()
        return self.connection.watched(super().fetchone)

    def fetchmany(self, size: int | None = None) -> Any:
        sized = () if size is None else (size,)
        if self.name is None:
            return super().fetchmany(*sized)
        return self.connection.watched(super().fetchmany, *sized)

    def fetchall(self) -> Any:
        if self.name is None:
            return super().fetchall()
        return self.connection.watched(super().fetchall)

    def close(self) -> None:
        if self.name is None or self.closed or self.connection.closed:
            super().close()
        else:  # CLOSE of a server-side cursor is a round trip
            self.connection.watched(super().close)


def watched_connection_class(call_seconds: float) -> type[WatchedConnection]:
    """The connection class an engine passes to psycopg2 (`connection_factory`)."""
    return type("WatchedConnection", (WatchedConnection,), {"call_seconds": call_seconds})
