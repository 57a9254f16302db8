"""Routes of the sync protocol: snapshot, changes after a version, a device's trip list, and
the live event stream.

The algorithm a client follows is in docs/sync-protocol.md ("Writing a sync client").
"""

import functools
import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Query, Request, Response, status
from pydantic import BaseModel, ConfigDict, Field, model_validator
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool

from app.core.admission import DatabaseSlot, DatabaseSlotDep
from app.core.config import get_settings
from app.core.deps import SessionDep
from app.core.errors import BadRequest, ServiceUnavailable, error_responses
from app.core.preconditions import location_responses
from app.feed import events, mutations, service
from app.feed.models import ChangesPublic, SnapshotPublic
from app.sync.live import Listener
from app.trips import service as trip_service
from app.trips.deps import TripAccess, TripMember
from app.trips.models import Role
from app.users.deps import BearerToken, Caller, CurrentCaller, CurrentUser, get_caller

router = APIRouter(tags=["sync"], responses=error_responses(401, 422))

MAX_CHANGES = 1000
MAX_MUTATIONS = 100


class TripStatePublic(BaseModel):
    trip_id: uuid.UUID
    name: str
    role: Role
    version: int
    status: str


class RemovedPublic(BaseModel):
    trip_id: uuid.UUID
    reason: str


class DeviceFeedPublic(BaseModel):
    cursor: str
    reset_all: bool
    trips: list[TripStatePublic]
    removed: list[RemovedPublic]


def _viewer(access: TripAccess) -> service.Viewer:
    return service.Viewer(trip=access.trip, user_id=access.user.id, role=access.role)


def _json(document: str) -> Response:
    # Written by PostgreSQL in the shape of the route's response_model, which documents it.
    return Response(document, media_type="application/json")


@router.get(
    "/trips/{trip_id}/snapshot", response_model=SnapshotPublic, responses=error_responses(404)
)
def get_snapshot(session: SessionDep, access: TripMember) -> Response:
    """Every row of the trip the caller may see, and the version the copy is complete up to.

    Continue with `GET /trips/{trip_id}/changes?since=<version>`.
    """
    return _json(service.snapshot(session=session, viewer=_viewer(access)))


@router.get(
    "/trips/{trip_id}/changes",
    response_model=ChangesPublic,
    responses=error_responses(400, 404, 410),
)
async def get_changes(
    request: Request,
    session: SessionDep,
    slot: DatabaseSlotDep,
    access: TripMember,
    since: Annotated[int, Query(ge=0, description="The last version the client has applied")],
    limit: Annotated[int, Query(ge=1, le=MAX_CHANGES)] = 500,
    wait: Annotated[
        float, Query(ge=0, le=service.MAX_WAIT_SECONDS, description="Seconds to wait for a change")
    ] = 0,
) -> Response:
    """Upserts and deletions after `since`, in version order, never splitting a version.

    Apply them in order, then continue from `version` (again at once while `has_more`).
    `410 reset_required` (codes `cursor_expired`, `access_changed`) means: drop the copy and
    take a new snapshot.
    """
    viewer = _viewer(access)
    listener: Listener | None = getattr(request.app.state, "listener", None)
    if wait and listener is not None:
        await _wait_for_change(session, slot, listener, viewer, since, wait)
    document = await run_in_threadpool(
        lambda: service.changes_since(session=session, viewer=viewer, since=since, limit=limit)
    )
    return _json(document)


async def _wait_for_change(
    session: Session,
    slot: DatabaseSlot,
    listener: Listener,
    viewer: service.Viewer,
    since: int,
    seconds: float,
) -> None:
    """Return once the trip is past `since` (or after `seconds`), woken by its notification.

    The waiter is registered before the head is read, so a commit in between still wakes it.
    While waiting it holds no connection and no slot, and runs no query. (What commits while
    the listener is reconnecting is announced when it is back; it wakes a waiter without a
    version only when it stops, and the poll then answers with what there is.)
    """
    with listener.watch(viewer.trip.id, since) as watch:
        head = await run_in_threadpool(
            lambda: service.usable_head(session=session, viewer=viewer, since=since)
        )
        if head <= since and not watch.changed:
            await run_in_threadpool(session.commit)  # gives the connection back
            await slot.released(functools.partial(watch.wait, seconds))


class MutationIn(BaseModel):
    """One queued write, as the request the device would have sent."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1, max_length=100, description="The device's id for this write")
    method: Literal["POST", "PUT", "PATCH", "DELETE"]
    path: str = Field(min_length=1, max_length=500, description="e.g. /trips/{trip_id}/items")
    headers: dict[str, str] = Field(
        default_factory=dict,
        description="Only If-Match and Idempotency-Key are used; Idempotency-Key is required",
    )
    body: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _keyed(self) -> "MutationIn":
        # Without a key, a batch sent again (its answer lost) would apply its writes twice.
        if not any(name.lower() == "idempotency-key" for name in self.headers):
            raise ValueError("every queued write needs an Idempotency-Key header")
        return self


class MutationBatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    mutations: list[MutationIn] = Field(min_length=1, max_length=MAX_MUTATIONS)

    @model_validator(mode="after")
    def _unique_ids(self) -> "MutationBatch":
        ids = [mutation.id for mutation in self.mutations]
        if len(set(ids)) != len(ids):
            raise ValueError("the ids of the writes in a batch must be unique")
        return self


class MutationResult(BaseModel):
    id: str
    result: Literal["applied", "rejected", "conflict", "skipped"]
    status: int | None
    etag: str | None
    body: Any


class MutationResults(BaseModel):
    results: list[MutationResult]


@router.post(
    "/trips/{trip_id}/mutations", response_model=MutationResults, responses=error_responses(404)
)
async def apply_mutations(
    request: Request,
    response: Response,
    session: SessionDep,
    user: CurrentUser,
    trip_id: uuid.UUID,
    batch: MutationBatch,
) -> MutationResults:
    """Apply a device's queued writes in order, each in its own transaction, each answered.

    `applied`: done (2xx; `body` is the response). `conflict`: the server has a newer version
    (409/412; `body.current` is it). `rejected`: refused for good (4xx, `body` says why).
    `skipped`: not attempted because the service was unavailable; send them again later.
    Give each write an `Idempotency-Key` so that sending a batch twice applies nothing twice.
    """
    # Never stored under an Idempotency-Key of the batch: a resend must re-run the writes
    # (each protected by its own key), not replay results that may say `skipped`.
    response.headers["Cache-Control"] = "no-store"
    # Membership is checked without the trip's write lock: the writes take it one by one.
    await run_in_threadpool(
        lambda: trip_service.get_trip_for_member(session=session, trip_id=trip_id, user_id=user.id)
    )
    await run_in_threadpool(session.commit)  # hold no connection while the writes run
    outcomes = await mutations.apply_batch(request.app, request.scope, trip_id, batch.mutations)
    return MutationResults(
        results=[
            MutationResult(
                id=mutation.id,
                result=result,
                status=outcome.status if outcome else None,
                etag=outcome.headers.get("etag") if outcome else None,
                body=outcome.body if outcome else None,
            )
            for mutation, result, outcome in outcomes
        ]
    )


class StreamTokenPublic(BaseModel):
    token: str
    expires_at: datetime


@router.post(
    "/sync/stream-tokens",
    response_model=StreamTokenPublic,
    status_code=status.HTTP_201_CREATED,
    responses=location_responses(
        "What the token opens, `/sync/events?token=...`: a token has no address of its own."
    ),
)
def create_stream_token(response: Response, caller: CurrentCaller) -> StreamTokenPublic:
    """A token that opens `GET /sync/events?token=...`, for clients that cannot send an
    Authorization header there (browsers' EventSource).

    It opens the caller's event stream and does nothing else, for STREAM_TOKEN_TTL_SECONDS
    (5 minutes by default), and stops working when the caller's session ends. Never put
    the access token itself in a URL.
    """
    response.headers["Cache-Control"] = "no-store"  # nor kept under an Idempotency-Key
    token, expires_at = events.issue_stream_token(caller)
    response.headers["Location"] = f"/sync/events?token={token}"
    return StreamTokenPublic(token=token, expires_at=expires_at)


_EVENTS_DESCRIPTION = (
    'Server-sent events. `event: version`, `data: {"trip_id", "version"}`: a trip of '
    'the caller reached a version (pull its changes). `event: access`, `data: {"trip_id", '
    '"change"}` with change `added`, `removed`, `role_changed`, `visibility_changed`, '
    "`deleted` or `changed`: run `GET /sync`. `event: reset` (`data: {}`, first, when the "
    "last event id could not be read): run `GET /sync` without a cursor and drop the trips it "
    "does not list. A comment line `: heartbeat` after 15 s without an event. Each event's "
    "`id` is a `GET /sync` cursor of what the stream has told."
)


# A device cursor (~60 bytes a trip) fits a URL within MAX_URL_BYTES' bound (60 KiB).
MAX_CURSOR_LENGTH = 60_000


# One event of the stream, as its fields arrive (`data` is JSON text; heartbeats are comments):
# OpenAPI 3.2's `itemSchema`, written as an extension in this 3.1 document. The body itself is
# text: client generators read it as a string, a client parses it as an event stream.
_EVENT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "event": {"type": "string", "enum": ["version", "access", "reset"]},
        "id": {"type": "string", "description": "A GET /sync cursor of what the stream told"},
        "data": {
            "type": "string",
            "contentMediaType": "application/json",
            "description": (
                'version: {"trip_id", "version"}; access: {"trip_id", "change"}; reset: {}'
            ),
        },
    },
    "required": ["event", "id", "data"],
}


@router.get(
    "/sync/events",
    status_code=status.HTTP_200_OK,
    response_class=events.EventStreamResponse,
    responses={
        200: {
            "description": _EVENTS_DESCRIPTION,
            "content": {
                "text/event-stream": {
                    "schema": {"type": "string", "description": "Server-sent events"},
                    "x-itemSchema": _EVENT_SCHEMA,
                }
            },
        },
        **error_responses(429, 503),
    },
)
async def stream_events(
    request: Request,
    session: SessionDep,
    bearer: BearerToken,
    token: Annotated[
        str | None,
        Query(max_length=2000, description="A stream token (POST /sync/stream-tokens)"),
    ] = None,
    last_event_id: Annotated[
        str | None,
        Query(
            max_length=MAX_CURSOR_LENGTH, description="The id of the last event received, to resume"
        ),
    ] = None,
    last_event_id_header: Annotated[
        str | None,
        Header(alias="Last-Event-ID", description="Sent by EventSource when it reconnects"),
    ] = None,
) -> events.EventStreamResponse:
    """The caller's trips, live: an event per committed version and per change of access.

    Authenticate with `?token=` (a stream token) or an `Authorization: Bearer` header.
    Without a last event id the stream starts with a `version` event per trip of the
    caller; with one (`Last-Event-ID`, or `last_event_id` for a new EventSource) it starts
    with what the client missed. A client that loses a trip gets `access` `removed` (or
    `deleted`) and no event of it after that. At most SSE_MAX_STREAMS_PER_USER streams per
    user and worker (429); 503 while the server cannot stream (then retry later).
    """
    caller = await run_in_threadpool(_stream_caller, session, token, bearer)
    user = caller.user
    listener: Listener | None = getattr(request.app.state, "listener", None)
    if listener is None:
        raise ServiceUnavailable("Live events are not available here; poll GET /sync.")
    if listener.streams_of(user.id) >= get_settings().SSE_MAX_STREAMS_PER_USER:
        raise events.TooManyStreams(
            "Too many event streams are open for this account; close one first."
        )
    resumed_from = last_event_id_header or last_event_id
    told, told_at = _last_told(user.id, resumed_from)
    # Before reading: nothing falls in between. It ends when the caller's session does.
    subscription = listener.subscribe(user.id, caller.session_id)
    try:
        heads, pending = await run_in_threadpool(events.catch_up, session, user.id, told, told_at)
        listener.follow(subscription, heads)
    except BaseException:
        listener.unsubscribe(subscription)
        raise
    if resumed_from and told is None:
        # An id this server cannot read (altered, another user's): what the client missed is
        # unknown, so it must list its trips afresh and drop the ones not listed.
        pending.insert(0, events.Event("reset"))
    stream = events.Stream(listener, subscription, told or {}, pending)
    return events.EventStreamResponse(stream)


def _stream_caller(session: Session, token: str | None, bearer: str | None) -> Caller:
    if token is not None:
        return events.caller_of_stream_token(session, token)
    return get_caller(session, bearer)


def _last_told(
    user_id: uuid.UUID, last_event_id: str | None
) -> tuple[dict[uuid.UUID, int] | None, float | None]:
    """What the stream told before, from a last event id; a foreign or broken id: nothing."""
    if not last_event_id:
        return None, None
    try:
        return service.read_device_cursor(user_id, last_event_id)
    except BadRequest:
        return None, None


@router.get("/sync", response_model=DeviceFeedPublic, responses=error_responses(400))
def get_device_feed(
    session: SessionDep,
    user: CurrentUser,
    cursor: Annotated[str | None, Query(max_length=MAX_CURSOR_LENGTH)] = None,
) -> DeviceFeedPublic:
    """All my trips with their versions, and the ones I lost since the device's last call.

    `status`: `new` or `reset` → take a snapshot; `changed` → pull changes from the
    device's version; `unchanged` → nothing to do. `removed` → purge the trip. `reset_all` →
    the cursor is older than the deletion retention: drop every copy and start again.
    """
    known, issued_at = service.read_device_cursor(user.id, cursor) if cursor else ({}, None)
    reset_all, states, removed = service.device_feed(
        session=session, user_id=user.id, known=known, issued_at=issued_at
    )
    next_cursor = service.device_cursor(user.id, {state.trip_id: state.version for state in states})
    return DeviceFeedPublic(
        cursor=next_cursor,
        reset_all=reset_all,
        trips=[TripStatePublic(**state.__dict__) for state in states],
        removed=[RemovedPublic(**item.__dict__) for item in removed],
    )
