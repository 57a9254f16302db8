"""The raw ceiling for `make bench`: the least work that answers TripSync's reads with its bytes.

Per request: one SQL statement, sent on an autocommit connection (no BEGIN/COMMIT, no
pre-ping) of a small pool of asynchronous psycopg2 connections waited on by the event loop
(no thread hop), under a bare ASGI callable on the same uvicorn (no framework). The
statement authenticates (a live session of an active user), checks access (a member of the
trip) and returns the response's JSON, built by PostgreSQL with the writers TripSync's sync
feed uses (`app.core.json_sql`, compiled once at import). Python only checks the token's
signature, routes, and signs the next page's cursor (HMAC), which TripSync signs the same way.

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
from sqlalchemy import bindparam, func, literal_column, select
from sqlalchemy.dialects.postgresql.psycopg2 import PGDialect_psycopg2
from sqlmodel import col

from app.core.json_sql import json_object
from app.core.pagination import (
    DEFAULT_PAGE_SIZE,
    MAX_PAGE_SIZE,
    Position,
    encode_cursor,
    scope_of_list,
)
from app.core.security import decode_access_token
from app.itinerary.models import ItineraryItem
from app.itinerary.synced import item_document
from app.trips.models import Trip, TripMember, TripPublic
from app.users.models import User, UserSession

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

# As many connections as one TripSync worker may open (DB_POOL_SIZE + DB_MAX_OVERFLOW).
POOL_SIZE = int(os.environ.get("RAW_POOL_SIZE", "40"))


# The parameters each request gives; every other one is a constant of the statement.
REQUEST_PARAMETERS = frozenset({"trip_id", "user_id", "session_id", "day", "rows", "limit"})


def _compiled(statement: Any) -> tuple[str, dict[str, Any]]:
    """SQL text for a psycopg2 cursor (%(name)s parameters) and its constant parameters."""
    compiled = statement.compile(dialect=PGDialect_psycopg2())  # type: ignore[no-untyped-call]
    constants = {k: v for k, v in compiled.params.items() if k not in REQUEST_PARAMETERS}
    return str(compiled), constants


def _member_access() -> list[Any]:
    """TripSync's access rule: the caller is a member of the trip, in a live session."""
    return [
        col(Trip.id) == bindparam("trip_id"),
        col(TripMember.user_id) == bindparam("user_id"),
        col(UserSession.id) == bindparam("session_id"),
    ]


def _with_access(statement: Any) -> Any:
    return (
        statement.select_from(Trip)
        .join(TripMember, col(TripMember.trip_id) == Trip.id)
        .join(User, col(User.id) == TripMember.user_id)
        .join(UserSession, col(UserSession.user_id) == User.id)
        .where(*_member_access())
    )


# GET /trips/{id}: (is the user active, the trip's JSON, its version for the ETag).
TRIP_SQL, TRIP_PARAMS = _compiled(
    _with_access(
        select(
            col(User.is_active),
            json_object(TripPublic, Trip, role=TripMember.role),
            col(Trip.version),
        )
    )
)


def _page_sql(rows: Any, access: Any, order: list[str]) -> str:
    """One statement: the caller's check, and the page of `rows` (their `doc`, `limit` + 1
    of them, the extra one only telling that there is more) as one JSON array; the last
    row's position columns come back for the next cursor."""
    rows_sql, _ = _compiled(rows)
    access_sql, _ = _compiled(access)
    ordering = ", ".join(order)
    return (
        f"WITH caller AS ({access_sql}),"  # noqa: S608 (compiled constants)
        f" page AS (SELECT row_number() OVER (ORDER BY {ordering}) AS n, *"
        f" FROM ({rows_sql}) AS rows WHERE EXISTS (SELECT FROM caller WHERE caller.is_active))"
        " SELECT (SELECT bool_or(caller.is_active) FROM caller),"
        " coalesce('[' || string_agg(page.doc, ',' ORDER BY page.n)"
        " FILTER (WHERE page.n <= %(limit)s) || ']', '[]'),"
        " count(*) > %(limit)s,"
        " (array_agg(page.sort_key ORDER BY page.n) FILTER (WHERE page.n = %(limit)s))[1],"
        " (array_agg(page.id ORDER BY page.n) FILTER (WHERE page.n = %(limit)s))[1]"
        " FROM page"
    )


# GET /trips: the caller's trips, newest first (TripSync's keyset order).
_caller = (
    select(col(User.is_active))
    .join(UserSession, col(UserSession.user_id) == User.id)
    .where(col(User.id) == bindparam("user_id"), col(UserSession.id) == bindparam("session_id"))
)
_my_trips: Any = (
    select(
        json_object(TripPublic, Trip, role=TripMember.role).label("doc"),
        col(Trip.created_at).label("sort_key"),
        col(Trip.id).label("id"),
    )
    .join(TripMember, col(TripMember.trip_id) == Trip.id)
    .where(col(TripMember.user_id) == bindparam("user_id"))
    .order_by(col(Trip.created_at).desc(), col(Trip.id).desc())
    .limit(bindparam("rows"))
)
TRIPS_SQL = _page_sql(_my_trips, _caller, ["sort_key DESC", "id DESC"])
TRIPS_PARAMS = _compiled(_my_trips)[1] | _compiled(_caller)[1]


def _items_statement(day: bool) -> tuple[str, dict[str, Any]]:
    item = ItineraryItem
    document = item_document()
    # TripSync's position of an item: "<day>/<order_key>" (day empty when unscheduled).
    day_text = func.coalesce(func.to_char(item.day, literal_column("'YYYY-MM-DD'")), "")
    position = func.concat(day_text, "/", col(item.order_key))
    rows: Any = (
        select(
            document.label("doc"),
            position.label("sort_key"),
            col(item.id).label("id"),
            col(item.day).label("item_day"),
            col(item.order_key).label("order_key"),
        )
        .where(col(item.trip_id) == bindparam("trip_id"))
        .order_by(col(item.day).asc().nulls_last(), col(item.order_key))
        .limit(bindparam("rows"))
    )
    if day:
        rows = rows.where(col(item.day) == bindparam("day"))
    access = _with_access(select(col(User.is_active)))
    sql = _page_sql(rows, access, ["item_day ASC NULLS LAST", "order_key"])
    return sql, _compiled(rows)[1] | _compiled(access)[1]


ITEMS_SQL, ITEMS_PARAMS = _items_statement(day=False)
DAY_ITEMS_SQL, DAY_ITEMS_PARAMS = _items_statement(day=True)


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
    if row is None or row[0] is None:
        raise HttpError(404)
    if not row[0]:
        raise HttpError(401)
    _, items, more, sort_key, last_id = row
    documents: str = items
    cursor = b"null"
    if more:
        # Trips by created_at (a datetime), items by "<day>/<order_key>" (text), as TripSync.
        position = Position(sort_key, uuid.UUID(str(last_id)))
        cursor = b'"' + encode_cursor(position, scope).encode() + b'"'
    return b'{"items":' + documents.encode() + b',"next_cursor":' + cursor + b"}"


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
        params = TRIPS_PARAMS | ids | {"rows": limit + 1, "limit": limit}
        scope = scope_of_list("/trips", user_id=user_id)
        return _page_body(await _one_row(TRIPS_SQL, params), limit, scope), b""
    if len(parts) < 2 or parts[0] != "trips":
        raise HttpError(404)
    try:
        trip_id = str(uuid.UUID(parts[1]))
    except ValueError:
        raise HttpError(404) from None
    if len(parts) == 2:
        row = await _one_row(TRIP_SQL, TRIP_PARAMS | ids | {"trip_id": trip_id})
        if row is None:
            raise HttpError(404)
        if not row[0]:
            raise HttpError(401)
        body: bytes = row[1].encode()
        return body, b'"%d"' % row[2]
    if len(parts) == 3 and parts[2] == "items":
        limit = _limit(query)
        day = query.get("day", [None])[0]
        sql, params = (DAY_ITEMS_SQL, DAY_ITEMS_PARAMS) if day else (ITEMS_SQL, ITEMS_PARAMS)
        params = params | ids | {"trip_id": trip_id, "day": day, "rows": limit + 1, "limit": limit}
        scope = scope_of_list(
            "/trips/{trip_id}/items",
            path={"trip_id": parts[1]},
            filters={"day": [day] if day else []},
            user_id=user_id,
        )
        return _page_body(await _one_row(sql, params), limit, scope), b""
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
