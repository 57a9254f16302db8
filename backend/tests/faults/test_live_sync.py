"""Live sync under faults: with 1,000 devices following a trip (half over event streams, half
over long polls) and writes going on, PostgreSQL restarts, or the worker's LISTEN connection
is killed. Every device hears of every version committed after the listener is back, and,
pulling changes on each event, ends with a copy equal to a fresh snapshot.
"""

import asyncio
import resource
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import psycopg2
import pytest

from tests.faults.harness import (
    TRIP_DATES,
    ApiProcess,
    Database,
    Person,
    create_trip,
    join_as_editor,
    register,
    report,
)
from tests.faults.live_clients import Http, Subscriber, snapshot_rows, stop

pytestmark = pytest.mark.faults

SUBSCRIBERS = 1_000  # half event streams, half long polls
USERS = 10  # each with 50 streams and 50 long polls (their own devices)
SETTINGS = {"SSE_MAX_STREAMS_PER_USER": "100", "DB_CONNECT_TIMEOUT": "2"}
WRITE_PAUSE = 0.2
BEFORE_FAULT, AFTER_RECOVERY = 3.0, 2.0
WRITES_AFTER_RECOVERY = 2
OUTAGE = 2.0
# Bounds on a loaded two-core machine.
LISTENER_BACK_WITHIN = 10.0
CONVERGED_WITHIN = 60.0


def listener_backends(database: Database) -> list[tuple[int, str]]:
    """(pid, last statement) of the worker's LISTEN connection(s)."""
    try:
        rows = database.rows(
            "SELECT pid, query FROM pg_stat_activity WHERE application_name = 'tripsync-listener'"
        )
    except psycopg2.Error:  # the server is down: nobody is listening
        return []
    return [(int(pid), str(query)) for pid, query in rows]


@dataclass
class Written:
    id: str
    sent: float
    acknowledged: float
    version: int


class Writer:
    """The trip's owner adds items one after another, each sent with its key until it is
    acknowledged (through a restart a write may need several tries)."""

    def __init__(self, api: ApiProcess, owner: Person, trip_id: str) -> None:
        self.http = Http(api.port, owner.token)
        self.trip_id = trip_id
        self.written: list[Written] = []
        self.failures = 0
        self.stopping = False

    async def run(self) -> None:
        n = 0
        while not self.stopping:
            body = {"id": str(uuid.uuid4()), "kind": "activity", "title": f"Live {n}"}
            body["day"] = TRIP_DATES["start_date"]
            headers = {"Idempotency-Key": str(uuid.uuid4())}
            sent = time.monotonic()
            while True:
                try:
                    status, answer = await self.http.call(
                        "POST", f"/trips/{self.trip_id}/items", body, headers, timeout=20
                    )
                except (OSError, asyncio.IncompleteReadError, TimeoutError):
                    status, answer = 0, None
                if status in (200, 201):
                    break
                self.failures += 1
                await asyncio.sleep(0.1)
            self.written.append(Written(body["id"], sent, time.monotonic(), answer["version"]))
            n += 1
            await asyncio.sleep(WRITE_PAUSE)


async def _wait_until(check: Callable[[], Awaitable[bool]], seconds: float) -> float | None:
    """When `check` first held (monotonic), or None within `seconds`."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if await check():
            return time.monotonic()
        await asyncio.sleep(0.05)
    return None


async def _follow_under_fault(
    api: ApiProcess,
    database: Database,
    owner: Person,
    users: list[Person],
    trip_id: str,
    fault: str,
) -> dict[str, Any]:
    snapshots = {}
    for user in users:
        status, snapshot = await Http(api.port, user.token).call(
            "GET", f"/trips/{trip_id}/snapshot"
        )
        assert status == 200, snapshot
        snapshots[user.token] = snapshot
    subscribers = [
        Subscriber(
            "sse" if n % 2 == 0 else "long_poll",
            api.port,
            user.token,
            trip_id,
            snapshots[user.token]["version"],
            snapshot_rows(snapshots[user.token]),
        )
        for n in range(SUBSCRIBERS)
        for user in [users[n % len(users)]]
    ]
    tasks: list[asyncio.Task[None]] = []
    started = time.monotonic()
    for batch in range(0, SUBSCRIBERS, 100):  # connect in batches, as devices come online
        for subscriber in subscribers[batch : batch + 100]:
            tasks += subscriber.tasks()
        await asyncio.sleep(0.2)
    streams = [s for s in subscribers if s.kind == "sse"]

    async def all_streams_open() -> bool:
        return all(s.event_versions for s in streams)  # each began with its trip's head

    assert await _wait_until(all_streams_open, 30) is not None
    connected = time.monotonic() - started
    writer = Writer(api, owner, trip_id)
    writing = asyncio.create_task(writer.run())
    try:
        await asyncio.sleep(BEFORE_FAULT)
        old = {pid for pid, _ in listener_backends(database)}
        assert len(old) == 1, old
        fault_at = time.monotonic()
        if fault == "database restart":
            await asyncio.to_thread(database.server.stop, "fast")
            await asyncio.sleep(OUTAGE)
            await asyncio.to_thread(database.server.start)
        else:
            await asyncio.to_thread(
                database.execute,
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE application_name = 'tripsync-listener'",
            )
        back_at = time.monotonic()

        async def listening_again() -> bool:
            backends = await asyncio.to_thread(listener_backends, database)
            return any(pid not in old and query.startswith("LISTEN") for pid, query in backends)

        recovered_at = await _wait_until(listening_again, LISTENER_BACK_WITHIN)
        assert recovered_at is not None, "the listener did not come back"

        # Writes continue: keep writing until some that were sent after the recovery are
        # acknowledged (a worker serving a thousand pulls per write acknowledges slowly).
        async def written_after_recovery() -> bool:
            assert recovered_at is not None
            return sum(w.sent >= recovered_at for w in writer.written) >= WRITES_AFTER_RECOVERY

        await asyncio.sleep(AFTER_RECOVERY)
        assert await _wait_until(written_after_recovery, CONVERGED_WITHIN) is not None
    finally:
        writer.stopping = True
        await writing
    writes_done = time.monotonic()
    [(head,)] = await asyncio.to_thread(
        database.rows, "SELECT head_version FROM trips WHERE id = %s", trip_id
    )

    async def converged() -> bool:
        return all(s.cursor >= head for s in subscribers)

    converged_at = await _wait_until(converged, CONVERGED_WITHIN)
    await stop(tasks)
    behind = [s.cursor for s in subscribers if s.cursor < head]
    assert converged_at is not None, f"{len(behind)} devices behind {head}: {behind[:10]}"

    # Every device's copy equals a fresh snapshot of what its user may see.
    fresh = {}
    for user in users:
        status, snapshot = await Http(api.port, user.token).call(
            "GET", f"/trips/{trip_id}/snapshot"
        )
        assert status == 200, snapshot
        assert snapshot["version"] == head, (snapshot["version"], head)
        fresh[user.token] = snapshot_rows(snapshot)
    differing = [s for s in subscribers if s.rows != fresh[s.token]]
    assert differing == [], f"{len(differing)} copies differ from the snapshot"
    # Every write reached every device's copy with its version; nothing was skipped.
    versions = {w.version for w in writer.written}
    assert len(versions) == len(writer.written)
    missing = [s for s in subscribers if not versions <= s.change_versions]
    assert missing == [], f"{len(missing)} devices never pulled some write"
    # Every stream announced every version committed once the listener was back.
    after = {w.version for w in writer.written if w.sent >= recovered_at}
    assert after, "no write after recovery"
    unannounced = [s for s in streams if not after <= set(s.event_versions)]
    assert unannounced == [], (
        f"{len(unannounced)} streams missed versions after recovery, e.g. "
        f"{sorted(after - set(unannounced[0].event_versions))[:10]}"
    )

    errors: dict[str, int] = {}
    for subscriber in subscribers:
        for label, count in subscriber.errors.items():
            errors[label] = errors.get(label, 0) + count
    return {
        "subscribers": f"{len(streams)} event streams + {SUBSCRIBERS - len(streams)} long polls "
        f"({len(users)} users), connected in {connected:.1f} s",
        "writes acknowledged": f"{len(writer.written)} ({len(after)} after the listener was back;"
        f" {writer.failures} failed tries resent)",
        "fault": f"{back_at - fault_at:.2f} s"
        + (" (stop -m fast, 2 s down, start)" if fault == "database restart" else " (terminated)"),
        "listener listening again": f"{recovered_at - back_at:.2f} s after the "
        + ("server was back" if fault == "database restart" else "kill"),
        "every device at the head": f"{converged_at - writes_done:.2f} s after the last write "
        f"(head {head})",
        "copies equal to a fresh snapshot": f"{SUBSCRIBERS} / {SUBSCRIBERS}",
        "stream reconnects": sum(s.reconnects for s in streams),
        "client-side errors (all retried)": dict(sorted(errors.items())) or 0,
    }


@pytest.mark.parametrize("fault", ["database restart", "listener killed"])
def test_every_device_follows_every_version_through_the_fault(
    fault: str, database: Database, start_api: Callable[..., ApiProcess]
) -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # 1,500 sockets; uvicorn inherits
    api = start_api(**SETTINGS)
    owner = register(api, database, "Owner")
    users = [register(api, database, f"Device{n}") for n in range(USERS)]
    trip_id = create_trip(api, owner, "Live")
    for user in users:
        join_as_editor(api, owner, trip_id, user)
    figures = asyncio.run(_follow_under_fault(api, database, owner, users, trip_id, fault))
    report(f"live sync: {fault}", figures)
