"""The raw baseline for `make bench`: a bare ASGI app, no framework and no ORM.

It answers the read scenarios (one trip, a day's items, page 1 of a trip's items) with the
same SQL TripSync runs — the trip joined to the caller's membership and user, the items,
their participants — through psycopg2 and a small pool, and the same JSON bytes
(`pydantic_core.to_json`, the serialiser FastAPI ends in). The harness checks the bytes.

    uvicorn bench.raw_app:app   # DATABASE_URL and SECRET_KEY from the environment
"""

import os
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from datetime import UTC
from typing import Any
from urllib.parse import parse_qs

import anyio.to_thread
import jwt
import pydantic_core
from psycopg2 import extensions
from psycopg2.extras import register_uuid
from psycopg2.pool import ThreadedConnectionPool

register_uuid()  # type: ignore[no-untyped-call]  # uuid columns arrive as uuid.UUID, as they do through SQLAlchemy

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

# As many connections as AnyIO runs threads (40): a request never finds the pool empty.
POOL_SIZE = int(os.environ.get("RAW_POOL_SIZE", "40"))
_pool: ThreadedConnectionPool | None = None

# TripSync's access query: the trip, the caller's role and the caller in a live session, in one
# round trip.
ACCESS_SQL = (
    "SELECT trips.name, trips.destination, trips.start_date, trips.end_date, trips.timezone,"
    " trips.description, trips.base_currency, trips.hide_amounts_from_viewers, trips.id,"
    " trips.created_by, trips.created_at, trips.updated_at, trips.version,"
    " trips.head_version, trips.access_version, trips.pruned_version, trip_members.role,"
    " users.full_name, users.id, users.email, users.password_hash, users.is_active,"
    " users.created_at, users.updated_at, users.email_verified_at"
    " FROM trips JOIN trip_members ON trip_members.trip_id = trips.id"
    " JOIN users ON users.id = trip_members.user_id"
    " JOIN user_sessions ON user_sessions.user_id = users.id"
    " WHERE trips.id = %s AND trip_members.user_id = %s AND user_sessions.id = %s LIMIT 1"
)
ITEM_COLUMNS = (
    "id, kind, title, notes, day, order_key, start_local, start_timezone, start_utc,"
    " end_local, end_timezone, end_utc, place_name, place_address, latitude, longitude,"
    " place_external_id, booking_reference, created_by, created_at, updated_at, version"
)
ITEMS_SQL = (
    f"SELECT {ITEM_COLUMNS} FROM itinerary_items WHERE trip_id = %s{{day}}"  # noqa: S608 (constants)
    " ORDER BY day ASC NULLS LAST, order_key LIMIT %s"
)
PARTICIPANTS_SQL = (
    "SELECT item_id, participant_id FROM itinerary_item_participants"
    " WHERE trip_id = %s AND item_id = ANY(%s::uuid[])"
)


def pool() -> ThreadedConnectionPool:
    global _pool  # one pool per worker process, made on first use
    if _pool is None:
        url = os.environ["DATABASE_URL"].replace("postgresql+psycopg2://", "postgresql://")
        _pool = ThreadedConnectionPool(1, POOL_SIZE, url)
    return _pool


class HttpError(Exception):
    def __init__(self, status: int) -> None:
        self.status = status


def _query(cursor: extensions.cursor, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    cursor.execute(sql, params)
    return cursor.fetchall()


def _trip_of(cursor: extensions.cursor, token: str, trip_id: str) -> tuple[tuple[Any, ...], str]:
    """The same checks as TripSync: a valid token, an active user in a live session, a member.

    Returns the trip's row and the user's id."""
    try:
        claims = jwt.decode(token, os.environ["SECRET_KEY"], algorithms=["HS256"])
        user_id, session_id = str(uuid.UUID(claims["sub"])), str(uuid.UUID(claims["sid"]))
    except (jwt.PyJWTError, KeyError, ValueError):
        raise HttpError(401) from None
    rows = _query(cursor, ACCESS_SQL, trip_id, user_id, session_id)
    if not rows:
        raise HttpError(404)  # TripSync looks further to tell 401 from 404; not timed here
    if not rows[0][21]:
        raise HttpError(401)
    return rows[0], user_id


def _trip_json(row: tuple[Any, ...]) -> dict[str, Any]:
    return {
        "name": row[0],
        "destination": row[1],
        "start_date": row[2],
        "end_date": row[3],
        "timezone": row[4],
        "description": row[5],
        "base_currency": row[6],
        "hide_amounts_from_viewers": row[7],
        "id": row[8],
        "role": row[16],
        "created_at": row[10],
        "updated_at": row[11],
        "version": row[12],
    }


def _item_json(row: tuple[Any, ...], participants: list[uuid.UUID]) -> dict[str, Any]:
    place = None
    if row[12] is not None:
        place = {
            "name": row[12],
            "address": row[13] or "",
            "latitude": row[14],
            "longitude": row[15],
            "external_id": row[16],
        }
    return {
        "id": row[0],
        "kind": row[1],
        "title": row[2],
        "notes": row[3],
        "day": row[4],
        "order_key": row[5],
        "start_local": row[6],
        "start_timezone": row[7],
        "start_utc": row[8].astimezone(UTC) if row[8] else None,
        "end_local": row[9],
        "end_timezone": row[10],
        "end_utc": row[11].astimezone(UTC) if row[11] else None,
        "place": place,
        "booking_reference": row[17],
        "participant_ids": sorted(participants),
        "created_by": row[18],
        "created_at": row[19],
        "updated_at": row[20],
        "version": row[21],
    }


def _items(
    cursor: extensions.cursor, trip_id: str, day: str | None, limit: int, user_id: str
) -> dict[str, Any]:
    sql = ITEMS_SQL.format(day=" AND day = %s" if day else "")
    params = (trip_id, day, limit + 1) if day else (trip_id, limit + 1)
    rows = _query(cursor, sql, *params)
    page, more = rows[:limit], len(rows) > limit
    found: dict[uuid.UUID, list[uuid.UUID]] = {row[0]: [] for row in page}
    if page:
        ids = [str(row[0]) for row in page]
        for item_id, participant_id in _query(cursor, PARTICIPANTS_SQL, trip_id, ids):
            found[item_id].append(participant_id)
    # The next cursor is TripSync's (signed, scoped to the list): made the same way.
    next_cursor = None
    if more:
        from app.core.pagination import Position, encode_cursor, scope_of_list

        last = page[-1]
        day_text = last[4].isoformat() if last[4] else ""
        position = Position(f"{day_text}/{last[5]}", last[0])
        scope = scope_of_list(
            "/trips/{trip_id}/items",
            path={"trip_id": trip_id},
            filters={"day": [day] if day else []},
            user_id=user_id,
        )
        next_cursor = encode_cursor(position, scope)
    return {
        "items": [_item_json(row, found[row[0]]) for row in page],
        "next_cursor": next_cursor,
    }


def handle(method: str, path: str, query: str, token: str) -> tuple[int, bytes, str | None]:
    parts = path.strip("/").split("/")
    if method != "GET":
        raise HttpError(405)
    if parts == ["health", "live"]:
        return 200, b'{"status":"ok"}', None
    # One connection and one transaction per request, as TripSync's session.
    connection = pool().getconn()
    try:
        with connection, connection.cursor() as cursor:
            return _read(cursor, parts, query, token)
    finally:
        pool().putconn(connection)


def _read(
    cursor: extensions.cursor, parts: list[str], query: str, token: str
) -> tuple[int, bytes, str | None]:
    if len(parts) in (2, 3) and parts[0] == "trips":
        trip, user_id = _trip_of(cursor, token, parts[1])
        if len(parts) == 2:
            return 200, pydantic_core.to_json(_trip_json(trip)), f'"{trip[12]}"'
        if parts[2] == "items":
            args = parse_qs(query)
            day = args.get("day", [None])[0]
            limit = int(args.get("limit", ["50"])[0])
            return 200, pydantic_core.to_json(_items(cursor, parts[1], day, limit, user_id)), None
    raise HttpError(404)


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if _pool is not None:
                    _pool.closeall()
                await send({"type": "lifespan.shutdown.complete"})
                return
    headers = dict(scope["headers"])
    authorization = headers.get(b"authorization", b"").decode()
    token = authorization.removeprefix("Bearer ")
    query = scope["query_string"].decode()
    try:
        status, body, etag = await anyio.to_thread.run_sync(
            handle, scope["method"], scope["path"], query, token
        )
    except HttpError as error:
        status, body, etag = error.status, b'{"status":%d}' % error.status, None
    response_headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    if etag is not None:
        response_headers.append((b"etag", etag.encode()))
    await send({"type": "http.response.start", "status": status, "headers": response_headers})
    await send({"type": "http.response.body", "body": body})
