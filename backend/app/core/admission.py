"""Bounded admission of database work: how many requests of a worker may hold a session at once.

Every request that uses the database takes a slot first: `get_session` depends on
`hold_database_slot`, an async dependency, so the wait happens on the event loop and needs
no worker thread. With all DB_MAX_CONCURRENT_REQUESTS slots taken, a request waits at most
DB_POOL_TIMEOUT and is then answered 503 `server_busy` with `Retry-After`, instead of
queueing without bound for a thread. The slot is given back only after the session has
committed or rolled back and returned its connection, so connections in use never exceed
slots taken; with DB_MAX_CONCURRENT_REQUESTS ≤ DB_POOL_SIZE + DB_MAX_OVERFLOW (checked at
start-up) an admitted request never waits for a connection. Requests that use no database
(`/health/live`, static files) take no slot.

Taking a slot also starts the request's database deadline (app.core.deadlines): from the
moment it asks for a slot, everything it does with the database (the wait for the slot
included) must be done within DB_STATEMENT_TIMEOUT_MS + DB_DEADLINE_MARGIN_MS, else the call
in flight is abandoned and the request answers 504. Each take starts it afresh: a long poll
that gave its slot back while it waited, each sub-request of a batch.
"""

import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import cache
from typing import Annotated, Any, TypeVar

import anyio
from anyio.lowlevel import RunVar
from fastapi import Depends, Request
from starlette.types import Scope

from app.core.config import get_settings
from app.core.deadlines import clear_deadline, start_deadline
from app.core.errors import ServerBusy
from app.core.metrics import ADMISSION_TIMEOUTS, ADMISSION_WAIT, ADMISSION_WAITING

T = TypeVar("T")

# Where an admitted request keeps its slot, so an in-process sub-request can run on it.
_SLOT_SCOPE_KEY = "tripsync.database_slot"


class DatabaseAdmission:
    """At most `limit` slots per event loop (one loop per worker process); waits are bounded."""

    def __init__(
        self,
        limit: int,
        timeout: float,
        name: str = "database",
        busy: str = "The service is busy: every database slot stayed taken; retry shortly.",
        deadline: float | None = None,
    ) -> None:
        self.limit = limit
        self.timeout = timeout
        self.busy = busy
        # Seconds a holder's database work may take from asking for its slot (None: unbounded).
        self.deadline = deadline
        # Its metrics (app.core.metrics), labelled once rather than per request.
        self.waits = ADMISSION_WAIT.labels(name)
        self.waiting = ADMISSION_WAITING.labels(name)
        self.timeouts = ADMISSION_TIMEOUTS.labels(name)
        # A semaphore belongs to one event loop; each loop gets its own on first use.
        self._semaphores: RunVar[anyio.Semaphore] = RunVar(f"tripsync_{name}_admission")

    def semaphore(self) -> anyio.Semaphore:
        try:
            return self._semaphores.get()
        except LookupError:
            semaphore = anyio.Semaphore(self.limit)
            self._semaphores.set(semaphore)
            return semaphore


class DatabaseSlot:
    """One request's admission. Held from before its session opens until after it closes."""

    def __init__(self, admission: DatabaseAdmission) -> None:
        self._admission = admission
        self._semaphore = admission.semaphore()
        self._held = False

    async def acquire(self, deadline: float | None = None) -> None:
        """Take the slot within DB_POOL_TIMEOUT (else 503 `server_busy`), starting the holder's
        database deadline: the admission's own, or a shorter one given here."""
        admission = self._admission
        wait = admission.timeout
        deadline = deadline or admission.deadline
        if deadline is not None:
            start_deadline(deadline)
            wait = min(wait, deadline)
        started = time.perf_counter()
        queued = self._semaphore.value == 0  # it will wait: counted in the queue meanwhile
        if queued:
            admission.waiting.inc()
        try:
            with anyio.move_on_after(wait):
                await self._semaphore.acquire()  # FIFO; a cancelled wait takes no token
                self._held = True
        finally:
            if queued:
                admission.waiting.dec()
        admission.waits.observe(time.perf_counter() - started)
        if not self._held:
            admission.timeouts.inc()
            raise ServerBusy(admission.busy)

    def restart_deadline(self) -> None:
        """A new stretch of database work on the slot already held (a batch's sub-request)."""
        if self._admission.deadline is not None:
            start_deadline(self._admission.deadline)

    def release(self) -> None:
        if self._held:
            self._held = False
            self._semaphore.release()

    async def released(self, wait: Callable[[], Awaitable[T]]) -> T:
        """Await `wait()` without the slot, then take one again (bounded, or 503).

        For long polls: the caller must hold no connection meanwhile (commit first).
        """
        self.release()
        try:
            return await wait()
        finally:
            await self.acquire()


@cache
def get_admission() -> DatabaseAdmission:
    """The process's admission, sized like its engine's pool (both come from settings)."""
    settings = get_settings()
    return DatabaseAdmission(
        settings.database_admission_limit,
        settings.DB_POOL_TIMEOUT,
        deadline=settings.database_deadline_seconds,
    )


async def hold_database_slot(request: Request) -> AsyncIterator[DatabaseSlot]:
    """Admit the request to the database, or answer 503 `server_busy` after DB_POOL_TIMEOUT."""
    carried = request.scope.get(_SLOT_SCOPE_KEY)
    if isinstance(carried, DatabaseSlot):
        carried.restart_deadline()
        yield carried  # a sub-request of a batch runs on its caller's slot (see carry_slot)
        return
    slot = DatabaseSlot(get_admission())
    await slot.acquire()
    request.scope[_SLOT_SCOPE_KEY] = slot
    try:
        yield slot
    finally:
        del request.scope[_SLOT_SCOPE_KEY]
        slot.release()


async def hold_database_slot_for_stream(request: Request) -> AsyncIterator[DatabaseSlot]:
    """`hold_database_slot` for a response streamed after the route returns (the export): its
    work has no overall deadline, only the per-call one (each fetch of its rows is bounded)."""
    async with contextlib.asynccontextmanager(hold_database_slot)(request) as slot:
        clear_deadline()
        yield slot


def carry_slot(outer: Scope) -> dict[str, Any]:
    """Scope entries that let an in-process sub-request run on its caller's slot.

    Only for callers that hold no connection while their sub-requests run (they run one at
    a time), so one slot still stands for at most one connection.
    """
    slot = outer.get(_SLOT_SCOPE_KEY)
    return {_SLOT_SCOPE_KEY: slot} if slot is not None else {}


# Function scope: the slot is returned right after the session (which depends on it) closes.
DatabaseSlotDep = Annotated[DatabaseSlot, Depends(hold_database_slot, scope="function")]
# Request scope: held until the response has been sent, for a streamed response that reads
# the database as it goes (app.core.db.get_snapshot_session).
DatabaseSlotLongDep = Annotated[
    DatabaseSlot, Depends(hold_database_slot_for_stream, scope="request")
]


@cache
def get_hashing_admission() -> DatabaseAdmission:
    """Turns at an Argon2 hash: PASSWORD_HASH_CONCURRENCY per worker, like app.core.security."""
    settings = get_settings()
    return DatabaseAdmission(
        settings.PASSWORD_HASH_CONCURRENCY,
        settings.DB_POOL_TIMEOUT,
        name="password_hashing",
        busy="The service is busy checking passwords; retry shortly.",
    )


async def take_hashing_turn() -> AsyncIterator[None]:
    """For routes that hash a password: wait for a turn before taking a database slot.

    Hashing is deliberately slow (Argon2id) and runs PASSWORD_HASH_CONCURRENCY at a time; a
    login burst that took database slots first would hold them, idle, while queueing for
    the hasher, and starve every other request of the worker. Declared before the session,
    the wait happens on the event loop holding nothing, bounded by DB_POOL_TIMEOUT (503).
    """
    turn = DatabaseSlot(get_hashing_admission())
    await turn.acquire()
    try:
        yield
    finally:
        turn.release()


# For a route's `dependencies=[...]`: solved before anything that opens a session (BEFORE_SESSION).
HASHING_TURN = Depends(take_hashing_turn, scope="function")
