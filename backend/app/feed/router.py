"""Routes of the sync protocol: snapshot, changes after a version, and a device's trip list.

The algorithm a client follows is in docs/sync-protocol.md ("Writing a sync client").
"""

import functools
import time
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool

from app.core.admission import DatabaseSlot, DatabaseSlotDep
from app.core.deps import SessionDep
from app.core.errors import BadRequest, error_responses
from app.core.pagination import seal, unseal
from app.feed import mutations, service
from app.feed.models import ChangesPublic, SnapshotPublic
from app.sync.live import Listener
from app.trips import service as trip_service
from app.trips.deps import TripAccess, TripMember
from app.trips.models import Role
from app.users.deps import CurrentUser

router = APIRouter(tags=["sync"], responses=error_responses(401, 422))

MAX_CHANGES = 1000
MAX_MUTATIONS = 100
_FEED_SCOPE = "sync-feed"


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
    While waiting it holds no connection and no slot, and runs no query; a wake without a
    version (the listener reconnected) reads the head again.
    """
    deadline = time.monotonic() + seconds
    with listener.watch(viewer.trip.id, since) as watch:
        head = await run_in_threadpool(
            lambda: service.usable_head(session=session, viewer=viewer, since=since)
        )
        while head <= since and not watch.changed:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            await run_in_threadpool(session.commit)  # gives the connection back
            if not await slot.released(functools.partial(watch.wait, remaining)):
                return
            if not watch.changed:
                head = await run_in_threadpool(
                    lambda: service.head_version(session=session, trip_id=viewer.trip.id)
                )


class MutationIn(BaseModel):
    """One queued write, as the request the device would have sent."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1, max_length=100, description="The device's id for this write")
    method: Literal["POST", "PUT", "PATCH", "DELETE"]
    path: str = Field(min_length=1, max_length=500, description="e.g. /trips/{trip_id}/items")
    headers: dict[str, str] = Field(
        default_factory=dict, description="Only If-Match and Idempotency-Key are used"
    )
    body: dict[str, Any] | None = None


class MutationBatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    mutations: list[MutationIn] = Field(min_length=1, max_length=MAX_MUTATIONS)


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


@router.get("/sync", response_model=DeviceFeedPublic, responses=error_responses(400))
def get_device_feed(
    session: SessionDep,
    user: CurrentUser,
    cursor: Annotated[str | None, Query(max_length=65536)] = None,
) -> DeviceFeedPublic:
    """All my trips with their versions, and the ones I lost since the device's last call.

    `status`: `new` or `reset` → take a snapshot; `changed` → pull changes from the
    device's version; `unchanged` → nothing to do. `removed` → purge the trip. `reset_all` →
    the cursor is older than the deletion retention: drop every copy and start again.
    """
    known: dict[uuid.UUID, int] = {}
    issued_at: float | None = None
    if cursor:
        payload = unseal(cursor, f"{_FEED_SCOPE}:{user.id}")
        try:
            issued_at = float(payload["at"])
            known = {uuid.UUID(trip): int(version) for trip, version in payload["trips"].items()}
        except (KeyError, TypeError, ValueError, AttributeError):
            raise BadRequest("The cursor is malformed.", code="invalid_cursor") from None
    reset_all, states, removed = service.device_feed(
        session=session, user_id=user.id, known=known, issued_at=issued_at
    )
    next_cursor = seal(
        {
            "at": datetime.now(UTC).timestamp(),
            "trips": {str(state.trip_id): state.version for state in states},
        },
        f"{_FEED_SCOPE}:{user.id}",
    )
    return DeviceFeedPublic(
        cursor=next_cursor,
        reset_all=reset_all,
        trips=[TripStatePublic(**state.__dict__) for state in states],
        removed=[RemovedPublic(**item.__dict__) for item in removed],
    )
