"""Batches of queued offline writes: each one is replayed as the request it would have been.

A device that was offline sends its queue in one call. Every mutation goes through the
app exactly as a separate request would — same validation, access rules, If-Match and
Idempotency-Key handling — in its own transaction, in order, and gets its own result. A
mutation that fails for a reason the device cannot fix by retrying is reported and the next
one runs; when the service itself is unavailable the rest are left for a later retry.
"""

import json
import uuid
from dataclasses import dataclass
from typing import Any

from starlette.types import ASGIApp, Message, Scope

from app.core.admission import carry_slot

_FORWARDED_HEADERS = ("if-match", "idempotency-key")
_UNAVAILABLE = frozenset({429, 503, 504})


@dataclass
class Outcome:
    status: int
    headers: dict[str, str]
    body: Any


async def _call(app: ASGIApp, scope: Scope, body: bytes) -> Outcome:
    """Run one request through the ASGI app in-process and collect its response."""
    received = False
    status, headers, chunks = 500, {}, []

    async def receive() -> Message:
        nonlocal received
        if received:
            return {"type": "http.disconnect"}
        received = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: Message) -> None:
        nonlocal status, headers
        if message["type"] == "http.response.start":
            status = message["status"]
            headers = {k.decode().lower(): v.decode() for k, v in message.get("headers", [])}
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    await app(scope, receive, send)
    raw = b"".join(chunks)
    try:
        parsed = json.loads(raw) if raw else None
    except ValueError:
        parsed = raw.decode(errors="replace")
    return Outcome(status, headers, parsed)


def _scope(outer: Scope, method: str, path: str, headers: dict[str, str], has_body: bool) -> Scope:
    forwarded = [
        (name, value)
        for name, value in outer["headers"]
        if name in (b"authorization", b"user-agent", b"x-forwarded-for")
    ]
    forwarded += [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    if has_body:
        forwarded.append((b"content-type", b"application/json"))
    return {
        "type": "http",
        "asgi": outer.get("asgi", {"version": "3.0"}),
        "http_version": "1.1",
        "method": method,
        "scheme": outer.get("scheme", "http"),
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": forwarded,
        "client": outer.get("client"),
        "server": outer.get("server"),
        "state": {},
        # The batch's route holds no connection while its writes run one by one, so each
        # runs on the batch's database slot instead of queueing behind it for another.
        **carry_slot(outer),
    }


def result_of(outcome: Outcome) -> str:
    if 200 <= outcome.status < 300:
        return "applied"
    if _code(outcome) == "idempotency_request_in_progress":
        return "skipped"  # the same write is running elsewhere: ask again later
    if outcome.status in (409, 412):
        return "conflict"  # the body carries the server's current version of the resource
    return "rejected"


def _code(outcome: Outcome) -> str | None:
    return outcome.body.get("code") if isinstance(outcome.body, dict) else None


def _outside_trip(path: str, trip_id: uuid.UUID) -> bool:
    base = f"/trips/{trip_id}"
    inside = path == base or path.startswith(base + "/")
    return not inside or path.endswith("/mutations") or ".." in path or "//" in path or "?" in path


def _refused(path: str) -> Outcome:
    detail = f"{path} is not a write on this trip; a batch may only change its own trip."
    body = {
        "type": "https://tripsync.example/problems/mutation_outside_trip",
        "title": "Bad Request",
        "status": 400,
        "detail": detail,
        "code": "mutation_outside_trip",
    }
    return Outcome(400, {"content-type": "application/problem+json"}, body)


async def apply_batch(
    app: ASGIApp, outer: Scope, trip_id: uuid.UUID, mutations: list[Any]
) -> list[tuple[Any, str, Outcome | None]]:
    """Apply the mutations in order; stop (leaving the rest `skipped`) if the service is down."""
    results: list[tuple[Any, str, Outcome | None]] = []
    stopped = False
    for mutation in mutations:
        if stopped:
            results.append((mutation, "skipped", None))
            continue
        if _outside_trip(mutation.path, trip_id):
            results.append((mutation, "rejected", _refused(mutation.path)))
            continue
        headers = {
            name: value
            for name, value in mutation.headers.items()
            if name.lower() in _FORWARDED_HEADERS
        }
        body = b"" if mutation.body is None else json.dumps(mutation.body).encode()
        scope = _scope(outer, mutation.method, mutation.path, headers, mutation.body is not None)
        outcome = await _call(app, scope, body)
        if outcome.status in _UNAVAILABLE or outcome.status >= 500:
            stopped = True
            results.append((mutation, "skipped", outcome))
            continue
        results.append((mutation, result_of(outcome), outcome))
    return results
