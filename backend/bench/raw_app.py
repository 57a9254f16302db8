"""The raw ceiling for `make bench`: the least work that answers TripSync's reads with its bytes.

Per request: one SQL statement, sent on an autocommit connection (no BEGIN/COMMIT, no
pre-ping) of a small pool of asynchronous psycopg2 connections waited on by the event loop
(no thread hop), under a bare ASGI callable on the same uvicorn (no framework). The
statement authenticates (a live session of an active user), checks access (a member of the
trip) and returns the response's JSON, built by PostgreSQL: it is TripSync's own statement
for that read (app.trips.service, app.itinerary.service, compiled once: app.core.json_sql),
so the two differ only in what runs around it. Python only checks the token's signature,
routes, and signs the next page's cursor (HMAC), which TripSync signs the same way.

Answers: GET /trips, GET /trips/{id}, GET /trips/{id}/items (?day=, ?limit=, first pages
only) and /health/live; anything else is 404. Errors are not TripSync's problem documents:
only the successful bodies are compared (bench.run checks them before measuring).

    uvicorn bench.raw_app:app   # DATABASE_URL and SECRET_KEY from the environment
"""

import asyncio
import os
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qs

import psycopg2
from psycopg2 import extensions

from app.core.json_sql import PAGE_LIMIT, PageRead
from app.core.pagination import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, PageRequest, scope_of_list
from app.core.security import decode_access_token
from app.itinerary import service as itinerary_service
from app.trips import service as trip_service

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

# As many connections as one TripSync worker may open (DB_POOL_SIZE + DB_MAX_OVERFLOW).
POOL_SIZE = int(os.environ.get("RAW_POOL_SIZE", "40"))


class HttpError(Exception):
    def __init__(self, status: int) -> None:
        self.status = status


async def _ready(connection: extensions.connection) -> None:
    """Wait on the event loop until the asynchronous connection's current step is done."""
    loop = asyncio.get_running_loop()
    while True:
        state = connection.poll()
        if state == extensions.POLL_OK:
            return
        done = loop.create_future()

        def wake(done: asyncio.Future[None] = done) -> None:
            if not done.done():
                done.set_result(None)

        if state == extensions.POLL_READ:
            watch, unwatch = loop.add_reader, loop.remove_reader
        elif state == extensions.POLL_WRITE:
            watch, unwatch = loop.add_writer, loop.remove_writer
        else:  # pragma: no cover (libpq's poll has no other state)
            raise psycopg2.OperationalError(f"unexpected poll state {state}")
        descriptor = connection.fileno()
        watch(descriptor, wake)
        try:
            await done
        finally:
            unwatch(descriptor)


class Pool:
    """Up to POOL_SIZE asynchronous connections (always autocommit), opened on demand."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.opened = 0
        self.idle: asyncio.Queue[extensions.connection] = asyncio.Queue()

    async def take(self) -> extensions.connection:
        if self.idle.empty() and self.opened < self.size:
            self.opened += 1
            try:
                url = os.environ["DATABASE_URL"].replace("postgresql+psycopg2://", "postgresql://")
                connection = psycopg2.connect(url, async_=True)
                await _ready(connection)
                return connection
            except BaseException:
                self.opened -= 1
                raise
        return await self.idle.get()

    def give_back(self, connection: extensions.connection, healthy: bool) -> None:
        if healthy:
            self.idle.put_nowait(connection)
        else:  # interrupted mid-statement: not reusable
            self.opened -= 1
            connection.close()

    def close(self) -> None:
        while not self.idle.empty():
            self.idle.get_nowait().close()


_pool: Pool | None = None


async def _one_row(sql: str, params: dict[str, Any]) -> tuple[Any, ...] | None:
    global _pool  # one per worker process, made in its event loop
    if _pool is None:
        _pool = Pool(POOL_SIZE)
    connection = await _pool.take()
    healthy = False
    try:
        cursor = connection.cursor()
        cursor.execute(sql, params)
        await _ready(connection)
        row = cursor.fetchone()
        cursor.close()
        healthy = True
        return row
    finally:
        _pool.give_back(connection, healthy)


def _limit(query: dict[str, list[str]]) -> int:
    try:
        limit = int(query.get("limit", [str(DEFAULT_PAGE_SIZE)])[0])
    except ValueError:
        raise HttpError(400) from None
    if not 1 <= limit <= MAX_PAGE_SIZE or "cursor" in query:
        raise HttpError(400)  # later pages are not the ceiling's business
    return limit


def _page_body(row: tuple[Any, ...] | None, limit: int, scope: str) -> bytes:
    read = PageRead(*row) if row is not None else None
    if read is None or read.allowed is None:
        raise HttpError(404)
    if not read.allowed:
        raise HttpError(401)
    return read.body(PageRequest(limit=limit, after=None, scope=scope))


async def handle(method: str, path: str, query_string: str, token: str) -> tuple[bytes, bytes]:
    """The body and the ETag (b"" for none) of a successful read; HttpError otherwise."""
    parts = path.strip("/").split("/")
    if method != "GET":
        raise HttpError(405)
    if parts == ["health", "live"]:
        return b'{"status":"ok"}', b""
    claims = decode_access_token(token)
    if claims is None:
        raise HttpError(401)
    user_id, session_id = str(claims[0]), str(claims[1])
    query = parse_qs(query_string)
    ids = {"user_id": user_id, "session_id": session_id}
    if parts == ["trips"]:
        limit = _limit(query)
        statement = trip_service.my_trips_page(after=False)
        params = statement.parameters(ids | {"rows": limit + 1, PAGE_LIMIT: limit})
        scope = scope_of_list("/trips", user_id=user_id)
        return _page_body(await _one_row(statement.sql, params), limit, scope), b""
    if len(parts) < 2 or parts[0] != "trips":
        raise HttpError(404)
    try:
        trip_id = str(uuid.UUID(parts[1]))
    except ValueError:
        raise HttpError(404) from None
    if len(parts) == 2:
        statement = trip_service.trip_document()
        row = await _one_row(statement.sql, statement.parameters(ids | {"trip_id": trip_id}))
        if row is None:
            raise HttpError(404)
        if not row[0]:
            raise HttpError(401)
        body: bytes = row[1].encode()
        return body, b'"%d"' % row[2]
    if len(parts) == 3 and parts[2] == "items":
        limit = _limit(query)
        day = query.get("day", [None])[0]
        statement = itinerary_service.items_page(("day",) if day else ("all",))
        values = {"trip_id": trip_id, "rows": limit + 1, PAGE_LIMIT: limit}
        params = statement.parameters(ids | values | ({"day": day} if day else {}))
        scope = scope_of_list(
            "/trips/{trip_id}/items",
            path={"trip_id": parts[1]},
            filters={"day": [day] if day else []},
            user_id=user_id,
        )
        return _page_body(await _one_row(statement.sql, params), limit, scope), b""
    raise HttpError(404)


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if _pool is not None:
                    _pool.close()
                await send({"type": "lifespan.shutdown.complete"})
                return
    token = b""
    for name, value in scope["headers"]:
        if name == b"authorization":
            token = value.removeprefix(b"Bearer ")
    try:
        body, etag = await handle(
            scope["method"], scope["path"], scope["query_string"].decode(), token.decode()
        )
        status = 200
    except HttpError as error:
        status, body, etag = error.status, b'{"status":%d}' % error.status, b""
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    if etag:
        headers.append((b"etag", etag))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
