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

import json
import logging
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlmodel import Session, col, select
from starlette.concurrency import run_in_threadpool

from app.core.admission import DatabaseSlot, get_admission
from app.core.config import get_settings
from app.core.db import get_sessionmaker
from app.core.errors import AppError, BadRequest, Unauthorized
from app.core.pagination import seal, unseal
from app.feed import service
from app.sync.live import (
    AccessChange,
    AccessNotice,
    Listener,
    Subscription,
    VersionNotice,
    WorkerState,
)
from app.trips.models import Trip, TripMember
from app.users.deps import Caller, authenticate
from app.users.models import User

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


def user_of_stream_token(session: Session, token: str) -> User:
    """The user a stream token was issued to: 401 when it is forged, expired or revoked."""
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
        return authenticate(session, user_id, session_id)
    except Unauthorized:
        raise invalid from None


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
            return json.dumps({"trip_id": str(self.trip_id), "version": self.version})
        assert self.change is not None
        return json.dumps({"trip_id": str(self.trip_id), "change": self.change.value})


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
    """One open stream: what it has told the client (trip → version), and its subscription."""

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

    def _tell(self, event: Event) -> dict[str, str] | None:
        """The event as sse-starlette sends it, or None when it says nothing new."""
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
        return {"event": event.kind, "id": self.cursor(), "data": event.data()}

    def _event_of(self, notice: VersionNotice | AccessNotice) -> Event:
        if isinstance(notice, VersionNotice):
            return Event("version", notice.trip_id, version=notice.version)
        return Event("access", notice.trip_id, change=notice.change)

    async def events(self) -> AsyncIterator[dict[str, str]]:
        try:
            for event in self.pending:
                told = self._tell(event)
                if told is not None:
                    yield told
            while True:
                notice = await self.subscription.queue.get()
                if self.subscription.closed:
                    return  # the server is stopping: the client reconnects elsewhere
                if notice is not None:
                    told = self._tell(self._event_of(notice))
                    if told is not None:
                        yield told
                if self.subscription.stale:  # it fell behind: read its state again
                    self.subscription.stale = False
                    while not self.subscription.queue.empty():  # all superseded by the read
                        self.subscription.queue.get_nowait()
                    self.listener.reread(self.subscription)
                    try:
                        heads, events = await _reread_state(self.subscription.user_id, self.told)
                    except Exception:  # busy or down: end it; the client resumes from its id
                        logger.warning("event stream ended: its state could not be read")
                        return
                    self.listener.follow(self.subscription, heads)
                    for event in events:
                        told = self._tell(event)
                        if told is not None:
                            yield told
        finally:
            self.listener.unsubscribe(self.subscription)
