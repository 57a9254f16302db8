"""More concurrent slow requests than a worker admits: the extra ones get 503 server_busy within
DB_POOL_TIMEOUT, /health/live keeps answering, and everything recovers when the load stops.

The requests are made slow deterministically: another connection holds the trip's row lock,
which every write to the trip takes first, so admitted writes wait on it in the database.
"""

import threading
import time
from collections.abc import Callable
from functools import partial

import pytest

from tests.faults.harness import (
    Answer,
    ApiProcess,
    Database,
    call,
    create_trip,
    expect,
    item_write,
    latency_figures,
    participant_of,
    present_ids,
    register,
    report,
    status_counts,
)

pytestmark = pytest.mark.faults

POOL_TIMEOUT = 2.0
ADMITTED = 2  # DB_POOL_SIZE + DB_MAX_OVERFLOW, below THREADPOOL_SIZE
SETTINGS = {
    "THREADPOOL_SIZE": "4",
    "DB_POOL_SIZE": "2",
    "DB_MAX_OVERFLOW": "0",
    "DB_POOL_TIMEOUT": str(POOL_TIMEOUT),
    "DB_STATEMENT_TIMEOUT_MS": "30000",  # the lock wait must outlast the test, not time out
}
CONCURRENT = 12
LOCK_HELD = POOL_TIMEOUT + 2.5  # every extra request has been answered before it ends
SLACK = 2.0  # for a loaded two-core machine


def _in_parallel(actions: list[Callable[[], object]]) -> list[threading.Thread]:
    threads = [threading.Thread(target=action, daemon=True) for action in actions]
    for thread in threads:
        thread.start()
    return threads


def test_requests_beyond_the_pool_get_503_quickly_and_the_service_recovers(
    database: Database, start_api: Callable[..., ApiProcess]
) -> None:
    api = start_api(**SETTINGS)
    alice = register(api, database, "Alice")
    trip = create_trip(api, alice, "Busy")
    people = [participant_of(api, alice, trip)]
    slow = [item_write(trip, alice, people, n) for n in range(CONCURRENT)]
    live: list[Answer] = []
    ready: list[Answer] = []

    with database.trip_locked(trip):
        locked_at = time.monotonic()
        writers = _in_parallel([partial(write.send, api) for write in slow])
        time.sleep(0.5)
        readiness = _in_parallel([lambda: ready.append(call(api, "GET", "/health/ready"))])
        while time.monotonic() < locked_at + LOCK_HELD:
            live.append(call(api, "GET", "/health/live", timeout=5))
            time.sleep(0.1)
        [(waiting_on_lock,)] = database.rows(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE application_name = 'tripsync-api' AND wait_event_type = 'Lock'"
        )
        answered_while_locked = [w for w in slow if w.answers]
        pending_while_locked = [w for w in slow if not w.answers]
    released_at = time.monotonic()
    for thread in writers + readiness:
        thread.join(timeout=30)

    rejected = [w.answers[0] for w in answered_while_locked]
    admitted = [w.answers[0] for w in pending_while_locked]
    # Exactly as many as admitted wait in the database; every other one was turned away.
    assert len(pending_while_locked) == ADMITTED == waiting_on_lock
    assert all(a.status == 503 and a.code == "server_busy" for a in rejected), status_counts(
        rejected
    )
    assert all(a.headers.get("retry-after") == "1" for a in rejected)
    assert all(POOL_TIMEOUT * 0.9 <= a.elapsed < POOL_TIMEOUT + SLACK for a in rejected), [
        round(a.elapsed, 2) for a in rejected
    ]
    # The probes: liveness answered at once all along; readiness said busy.
    assert len(live) >= 10
    assert all(a.status == 200 for a in live)
    assert max(a.elapsed for a in live) < 1.0, latency_figures(live)
    assert [(a.status, a.code) for a in ready] == [(503, "server_busy")]
    # The admitted writes waited for the lock, not for the pool, and then went through.
    assert all(a.status == 201 for a in admitted), status_counts(admitted)
    assert all(a.started + a.elapsed < released_at + SLACK for a in admitted)

    # Recovery: a new burst, twice what is admitted, all succeed; then the rejected writes
    # are sent again with their keys (they were never applied) and succeed too.
    burst = [item_write(trip, alice, people, CONCURRENT + n) for n in range(2 * ADMITTED)]
    reads: list[Answer] = []
    recovering = _in_parallel(
        [partial(write.send, api) for write in burst]
        + [lambda: reads.append(call(api, "GET", f"/trips/{trip}/items", token=alice.token))]
    )
    for thread in recovering:
        thread.join(timeout=30)
    assert all(w.answers[0].status == 201 for w in burst), [w.answers for w in burst]
    assert [a.status for a in reads] == [200]
    for write in answered_while_locked:
        expect(write.send(api), 201)
    every_id = [w.id for w in slow + burst]
    assert present_ids(database, "itinerary_items", every_id) == set(every_id)
    expect(call(api, "GET", "/health/ready"), 200)

    report(
        "pool exhaustion (writes held on a locked trip)",
        {
            "configuration": "THREADPOOL_SIZE=4, DB_POOL_SIZE=2, DB_MAX_OVERFLOW=0 → 2 admitted,"
            f" DB_POOL_TIMEOUT={POOL_TIMEOUT:.0f} s",
            "concurrent slow writes": CONCURRENT,
            "trip lock held": f"{released_at - locked_at:.1f} s",
            "admitted, waiting on the lock in PostgreSQL": waiting_on_lock,
            "answered 503 server_busy": len(rejected),
            "503 latency": f"{min(a.elapsed for a in rejected) * 1000:.0f}"
            f"-{max(a.elapsed for a in rejected) * 1000:.0f} ms",
            "/health/live during the overload": f"{len(live)} probes, all 200, max "
            f"{max(a.elapsed for a in live) * 1000:.0f} ms",
            "/health/ready during the overload": f"{ready[0].status} {ready[0].code}",
            "admitted writes after the lock was released": status_counts(admitted),
            "recovery burst (4 writes + 1 read) right after": "all 2xx",
            "rejected writes sent again with their keys": f"{len(rejected)} → all 201",
        },
    )
