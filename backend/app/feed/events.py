"""Server-sent events: each committed version of the caller's trips, and each change of their
access to one, the moment it commits (`GET /sync/events`).

A stream is a poke, never data: `version` says a trip reached a version (pull its changes),
`access` says what the caller may see of a trip changed (run `GET /sync`). Every event's id
is a `GET /sync` cursor of what the stream has told: a client that reconnects with it
(`Last-Event-ID`) is sent what it missed, and nothing else. While idle a stream holds no
connection and runs no query: the worker's listener (app.sync.live) feeds it.

Browsers' EventSource cannot send an Authorization header, and the access token must never
go in a URL (logs, history, Referer): a client first asks `POST /sync/stream-tokens` (with its
bearer token) for a stream token, which opens a stream and does nothing else, for
STREAM_TOKEN_TTL_SECONDS, and stops working when the session it came from ends.
"""

import asyncio
import functools
import json
import logging
import random
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlmodel import Session, col, select
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from app.core.admission import DatabaseSlot, get_admission
from app.core.config import get_settings
from app.core.db import get_sessionmaker
from app.core.errors import AppError, BadRequest, Unauthorized
from app.core.handoff import hand_off
from app.core.pagination import seal, unseal
from app.feed import service
from app.sync.live import (
    AccessChange,
    AccessNotice,
    Listener,
    Subscription,
    VersionNotice,
    WorkerState,
    announce_sessions_ended,
)
from app.trips.models import Trip, TripMember
from app.users import hooks as user_hooks
from app.users.deps import Caller, authenticate

logger = logging.getLogger(__name__)

_STREAM_SCOPE = "sync-stream"
HEARTBEAT_SECONDS = 15


class TooManyStreams(AppError):
    status_code, code, title = 429, "too_many_streams", "Too Many Requests"
    retry_after = 5


def issue_stream_token(caller: Caller) -> tuple[str, datetime]:
    """A token that opens the user's event stream, and nothing else, until it expires or the
    session it was issued from ends."""
    expires = datetime.now(UTC) + timedelta(seconds=get_settings().STREAM_TOKEN_TTL_SECONDS)
    payload = {
        "u": str(caller.user.id),
        "s": str(caller.session_id),
        "exp": expires.timestamp(),
    }
    return seal(payload, _STREAM_SCOPE), expires


def caller_of_stream_token(session: Session, token: str) -> Caller:
    """Who a stream token was issued to: 401 when it is forged, expired or revoked."""
    invalid = Unauthorized(
        "The stream token is invalid or expired; ask POST /sync/stream-tokens for a new one.",
        code="invalid_stream_token",
    )
    try:
        payload = unseal(token, _STREAM_SCOPE)
        user_id, session_id = uuid.UUID(payload["u"]), uuid.UUID(payload["s"])
        expired = float(payload["exp"]) < datetime.now(UTC).timestamp()
    except (BadRequest, KeyError, TypeError, ValueError):
        raise invalid from None
    if expired:
        raise invalid
    try:  # the rule of access tokens: an active account, a session that has not ended
        return Caller(user=authenticate(session, user_id, session_id), session_id=session_id)
    except Unauthorized:
        raise invalid from None


def end_streams_of_sessions(session: Session, session_ids: list[uuid.UUID]) -> None:
    """A session ended (logout, revocation, a password change or reset elsewhere, deletion):
    its open streams end at commit, as its tokens stop working."""
    announce_sessions_ended(session, session_ids)


user_hooks.sessions_ended.subscribe(end_streams_of_sessions)


# --- what a stream says ---------------------------------------------------------------------


@dataclass(frozen=True)
class Event:
    kind: str  # version | access | reset
    trip_id: uuid.UUID | None = None
    version: int | None = None
    change: AccessChange | None = None

    def data(self) -> str:
        if self.kind == "reset":
            return "{}"
        if self.kind == "version":
            assert self.trip_id is not None
            assert self.version is not None
            return _version_data(self.trip_id, self.version)
        assert self.change is not None
        return json.dumps({"trip_id": str(self.trip_id), "change": self.change.value})


@functools.lru_cache(maxsize=4096)
def _version_data(trip_id: uuid.UUID, version: int) -> str:
    """A version event's data: the same for every stream told of it, so encoded once."""
    return json.dumps({"trip_id": str(trip_id), "version": version})


def heads_of(session: Session, user_id: uuid.UUID) -> dict[uuid.UUID, int]:
    """The user's trips and their head versions: one query."""
    rows = session.exec(
        select(Trip.id, Trip.head_version)
        .join(TripMember, col(TripMember.trip_id) == Trip.id)
        .where(TripMember.user_id == user_id)
    ).all()
    return {trip_id: int(head) for trip_id, head in rows}


def catch_up(
    session: Session, user_id: uuid.UUID, told: dict[uuid.UUID, int] | None, told_at: float | None
) -> tuple[dict[uuid.UUID, int], list[Event]]:
    """The user's trips now, and the events that bring a stream that `told` them up to date.

    `told` None (a new stream): a `version` event per trip. Otherwise what `GET /sync` would
    say of that cursor: changed trips as `version`, new ones as `access` added, ones whose
    copy must be taken again as `access` changed, lost ones as `access` removed or deleted.
    """
    heads = heads_of(session, user_id)
    if told is None:
        return heads, [Event("version", trip, version=head) for trip, head in heads.items()]
    reset_all, states, removed = service.device_feed(
        session=session, user_id=user_id, known=told, issued_at=told_at
    )
    events: list[Event] = []
    for state in states:
        if reset_all or state.status == "reset":
            events.append(Event("access", state.trip_id, change=AccessChange.CHANGED))
        elif state.status == "new":
            events.append(Event("access", state.trip_id, change=AccessChange.ADDED))
        elif state.status == "changed":
            events.append(Event("version", state.trip_id, version=state.version))
    for gone in removed:
        change = AccessChange.DELETED if gone.reason == "deleted" else AccessChange.REMOVED
        events.append(Event("access", gone.trip_id, change=change))
    return heads, events


def _read_worker_state(trip_ids: set[uuid.UUID], user_ids: set[uuid.UUID]) -> WorkerState:
    with get_sessionmaker()() as session:
        memberships: dict[uuid.UUID, set[uuid.UUID]] = {user_id: set() for user_id in user_ids}
        if user_ids:
            rows = session.exec(
                select(TripMember.user_id, TripMember.trip_id).where(
                    col(TripMember.user_id).in_(user_ids)
                )
            ).all()
            for user_id, trip_id in rows:
                memberships[user_id].add(trip_id)
        wanted = trip_ids.union(*memberships.values())
        heads: dict[uuid.UUID, int] = {}
        if wanted:
            found = session.exec(
                select(Trip.id, Trip.head_version).where(col(Trip.id).in_(wanted))
            ).all()
            heads = {trip_id: int(head) for trip_id, head in found}
        session.commit()
    return WorkerState(heads=heads, memberships=memberships)


async def reread_worker_state(trip_ids: set[uuid.UUID], user_ids: set[uuid.UUID]) -> WorkerState:
    """For the listener after a reconnect: one short transaction for the whole worker, on a
    database slot like any request (a 503 there is retried by the listener)."""
    slot = DatabaseSlot(get_admission())
    await slot.acquire()
    try:
        return await run_in_threadpool(_read_worker_state, trip_ids, user_ids)
    finally:
        slot.release()


def _read_state(user_id: uuid.UUID, told: dict[uuid.UUID, int]) -> tuple[Any, list[Event]]:
    with get_sessionmaker()() as session:
        heads, events = catch_up(session, user_id, told, None)
        session.commit()
    return heads, events


async def _reread_state(
    user_id: uuid.UUID, told: dict[uuid.UUID, int]
) -> tuple[dict[uuid.UUID, int], list[Event]]:
    """After a reconnect of the listener or a stream falling behind: one short transaction,
    on a database slot like any request."""
    slot = DatabaseSlot(get_admission())
    await slot.acquire()
    try:
        heads, events = await run_in_threadpool(_read_state, user_id, told)
    finally:
        slot.release()
    return heads, events


class Stream:
    """One open stream: what it has told the client (trip → version), and its subscription.

    It yields the stream's bytes a burst at a time: everything announced since its last write
    goes out in one write. Each write is a `send` through the server and the middleware, so
    one per burst rather than one per event is part of what lets a worker tell a thousand
    streams of a commit within milliseconds.
    """

    __slots__ = ("listener", "pending", "subscription", "told")

    def __init__(
        self,
        listener: Listener,
        subscription: Subscription,
        told: dict[uuid.UUID, int],
        pending: list[Event],
    ) -> None:
        self.listener = listener
        self.subscription = subscription
        self.told = dict(told)
        self.pending = pending

    def cursor(self) -> str:
        return service.device_cursor(self.subscription.user_id, self.told)

    def _tell(self, event: Event) -> Event | None:
        """Update what the client was told; None when the event says nothing new."""
        if event.kind == "version":
            assert event.version is not None
            assert event.trip_id is not None
            if event.trip_id not in self.subscription.trips:
                return None  # not (or no longer) the caller's trip
            if self.told.get(event.trip_id, 0) >= event.version:
                return None
            self.told[event.trip_id] = event.version
        elif event.change in (AccessChange.REMOVED, AccessChange.DELETED):
            assert event.trip_id is not None
            self.told.pop(event.trip_id, None)
        return event

    def _burst(self, events: list[Event]) -> bytes:
        """The events that say something new, framed, each with the stream's cursor after it."""
        frames = [
            f"event: {event.kind}\nid: {self.cursor()}\ndata: {event.data()}\n\n"
            for event in events
            if self._tell(event) is not None
        ]
        return "".join(frames).encode()

    async def next_burst(self) -> bytes | None:
        """What the stream has to write now: its next bytes (a heartbeat comment when one is
        due), b"" when nothing, or None when it ends (the server is stopping, its session
        ended, or its state could not be read again)."""
        subscription = self.subscription
        if self.pending:
            events, self.pending = self.pending, []
            if burst := self._burst(events):
                return burst
        if subscription.closed:
            return None
        if subscription.stale:  # it fell behind: read its state again
            subscription.stale = False
            subscription.drop_notices()  # all superseded by the read
            self.listener.reread(subscription)
            try:
                heads, events = await _reread_state(subscription.user_id, self.told)
            except Exception:  # busy or down: end it; the client resumes from its id
                logger.warning("event stream ended: its state could not be read")
                return None
            self.listener.follow(subscription, heads)
            return self._burst(events)
        nudged = subscription.nudged
        if notices := subscription.take():
            return self._burst([_event_of(notice) for notice in notices])
        return HEARTBEAT if nudged else b""


@functools.lru_cache(maxsize=1024)  # one notice reaches every stream of the trip
def _event_of(notice: VersionNotice | AccessNotice) -> Event:
    if isinstance(notice, VersionNotice):
        return Event("version", notice.trip_id, version=notice.version)
    return Event("access", notice.trip_id, change=notice.change)


HEARTBEAT = b": heartbeat\n\n"
# A client that stops reading while its socket buffer is full is dropped after this many
# heartbeat periods stuck in one send (30-45 s).
STUCK_PERIODS = 2


class EventStreamResponse(Response):
    """`text/event-stream` from a `Stream`: plain ASGI, one `send` per burst of events.

    Ends when the stream does (server stopping), when the client leaves (noticed by a watch on
    `receive`, as ASGI 2.3 servers do not fail a send to a closed connection), or when a send
    stays stuck (a client that stopped reading: its socket buffer is full).

    One timer per stream, every HEARTBEAT_SECONDS from a random start, does both the heartbeat
    (when nothing was sent since its last tick) and the check for a stuck send. Not a timeout
    renewed on every event: after a commit every stream of the trip would renew it at the same
    moment, and fifteen seconds later ten thousand heartbeats would go out at once, stalling
    every other request of the worker; spread over the period they cost nothing noticeable.
    """

    media_type = "text/event-stream"

    def __init__(self, stream: Stream) -> None:
        self.stream = stream
        self.status_code = 200
        self.background = None
        # Not cached, not buffered by a proxy (nginx honours X-Accel-Buffering).
        self.init_headers({"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
        except BaseException:
            self.stream.listener.unsubscribe(self.stream.subscription)
            raise
        # The headers went through every middleware; the body is sent from outside the request
        # (app.core.handoff says why), or from here where nothing takes it over. It holds the
        # stream only, not this response and its headers.
        body = functools.partial(_send_body, self.stream)
        if not hand_off(scope, body):
            await body(receive, send)


async def _send_body(stream: Stream, receive: Receive, send: Send) -> None:
    """The stream's bytes, until it ends, the client leaves, or a send stays stuck.

    The request's own task waits for the client to leave (`receive`); writing is done by a
    short task started when the subscription has something (`on_wake`), which ends once it
    has written everything. So an idle stream is one waiting task, not two: ~1.4 KiB less per
    stream, 14 MB at ten thousand. Ending (the server stopping, the session ending, a stuck
    send) cancels the request's wait.
    """
    subscription = stream.subscription
    loop = asyncio.get_running_loop()
    waiting = asyncio.current_task()
    assert waiting is not None
    ticker = _Ticker(subscription, waiting, loop)
    writing: asyncio.Task[None] | None = None
    ended = False  # by the server's side (not the client leaving)

    async def write() -> None:
        nonlocal ended
        while burst := await stream.next_burst():
            ticker.sending = True
            await send({"type": "http.response.body", "body": burst, "more_body": True})
            ticker.sending = False
            ticker.sends += 1
        if burst is None:
            ended = True
            waiting.cancel()

    def write_soon() -> None:
        nonlocal writing
        if writing is None or writing.done():
            writing = loop.create_task(write())

    subscription.on_wake = write_soon
    write_soon()  # what it starts with
    try:
        while (await receive())["type"] != "http.disconnect":
            pass
    except asyncio.CancelledError:
        if not (ended or ticker.dropped):
            raise
        waiting.uncancel()
        if ticker.dropped:
            logger.info("event stream dropped: its client stopped reading")
        else:  # the client is still there: end the response properly
            await send({"type": "http.response.body", "body": b"", "more_body": False})
    finally:
        subscription.on_wake = None
        ticker.stop()
        if writing is not None:
            writing.cancel()
        stream.listener.unsubscribe(subscription)


class _Ticker:
    """A stream's heartbeat and stuck-send check: one timer, every HEARTBEAT_SECONDS."""

    __slots__ = (
        "_seen",
        "_stuck",
        "_timer",
        "dropped",
        "loop",
        "sending",
        "sends",
        "subscription",
        "writer",
    )

    def __init__(
        self,
        subscription: Subscription,
        writer: "asyncio.Task[Any] | None",
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self.subscription, self.writer, self.loop = subscription, writer, loop
        self.sending = False
        self.sends = 0  # sends completed
        self.dropped = False
        self._seen = 0  # sends completed at the last tick
        self._stuck = 0  # ticks in a row inside the same send
        first = HEARTBEAT_SECONDS * random.uniform(0.5, 1.0)  # noqa: S311 (spreading, not secrets)
        self._timer = loop.call_later(first, self._tick)

    def _tick(self) -> None:
        if self.sends == self._seen:  # nothing went out for a whole period
            if self.sending:
                self._stuck += 1
                if self._stuck >= STUCK_PERIODS and self.writer is not None:
                    self.dropped = True
                    self.writer.cancel()
                    return
            else:
                self.subscription.nudge()  # a heartbeat
        else:
            self._stuck = 0
        self._seen = self.sends
        self._timer = self.loop.call_later(HEARTBEAT_SECONDS, self._tick)

    def stop(self) -> None:
        self._timer.cancel()
