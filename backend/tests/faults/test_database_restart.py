"""PostgreSQL restarts under load: requests fail fast with 503 (never 500, never a hang), the
API recovers by itself within seconds, and every acknowledged write is in the database."""

import itertools
import threading
import time
from collections.abc import Callable

import pytest

from tests.faults.harness import (
    Answer,
    ApiProcess,
    Database,
    Load,
    Person,
    Write,
    add_guest,
    call,
    create_trip,
    expect,
    item_write,
    join_as_editor,
    latency_figures,
    participant_of,
    present_ids,
    register,
    report,
    status_counts,
)

pytestmark = pytest.mark.faults

POOL_TIMEOUT, CONNECT_TIMEOUT = 2, 2
SETTINGS = {
    "THREADPOOL_SIZE": "8",
    "DB_POOL_SIZE": "4",
    "DB_MAX_OVERFLOW": "2",
    "DB_POOL_TIMEOUT": str(POOL_TIMEOUT),
    "DB_CONNECT_TIMEOUT": str(CONNECT_TIMEOUT),
}
# No request may take longer than a slot wait plus one connection attempt, with slack for a
# loaded two-core machine.
MAX_LATENCY = POOL_TIMEOUT + CONNECT_TIMEOUT + 3
WARM_UP, OUTAGE, AFTER_RECOVERY = 1.5, 2.0, 1.5
# Clients back off this long after a 503 (less than its Retry-After, to keep probing).
BACK_OFF = 0.2
# "Within a few seconds after it is back": the first success after the restart.
RECOVERY_BOUND = 5.0


@pytest.mark.parametrize("mode", ["fast", "immediate"])
def test_a_database_restart_under_load_costs_fast_503s_and_no_acknowledged_write(
    mode: str, database: Database, start_api: Callable[..., ApiProcess]
) -> None:
    api = start_api(**SETTINGS)
    pid = api.process.pid if api.process else None
    alice, bob = register(api, database, "Alice"), register(api, database, "Bob")
    shared = create_trip(api, alice, "Shared")
    join_as_editor(api, alice, shared, bob)
    own = create_trip(api, bob, "Own")
    shared_people = [participant_of(api, alice, shared), add_guest(api, alice, shared, "Carol")]
    own_people = [participant_of(api, bob, own), add_guest(api, bob, own, "Dana")]

    writes: list[Write] = []
    reads: list[Answer] = []
    lock = threading.Lock()
    load = Load(max_seconds=40)

    def writer(author: Person, trip_id: str, participants: list[str]) -> Callable[[], None]:
        """An offline-first client: each new item is sent, with its key, until acknowledged."""
        numbers = itertools.count()

        def step() -> None:
            write = item_write(trip_id, author, participants, next(numbers))
            with lock:
                writes.append(write)
            while load.running() and not write.send(api).ok:
                time.sleep(BACK_OFF)

        return step

    def reader(person: Person, paths: list[str]) -> Callable[[], None]:
        cycle = itertools.cycle(paths)

        def step() -> None:
            answer = call(api, "GET", next(cycle), token=person.token)
            with lock:
                reads.append(answer)
            if not answer.ok:
                time.sleep(BACK_OFF)

        return step

    def all_answers() -> list[Answer]:
        with lock:
            return [a for write in writes for a in write.answers] + list(reads)

    load.add(writer(alice, shared, shared_people))
    load.add(writer(bob, shared, shared_people))
    load.add(writer(bob, own, own_people))
    load.add(reader(alice, [f"/trips/{shared}", f"/trips/{shared}/items?limit=20", "/sync"]))
    load.add(reader(bob, [f"/trips/{own}", f"/trips/{own}/changes?since=0", "/trips"]))
    with load:
        time.sleep(WARM_UP)
        down_at = time.monotonic()
        database.server.stop(mode=mode)
        time.sleep(OUTAGE)
        database.server.start()
        up_at = time.monotonic()
        recovered_at = None
        while recovered_at is None and time.monotonic() < up_at + RECOVERY_BOUND + 5:
            time.sleep(0.05)
            done = [a.started + a.elapsed for a in all_answers() if a.ok and a.started >= up_at]
            recovered_at = min(done) if done else None
        time.sleep(AFTER_RECOVERY)

    answers = all_answers()
    failed = [a for a in answers if not a.ok]
    during = [a for a in answers if down_at <= a.started < up_at]
    assert recovered_at is not None, status_counts(answers)
    recovery = recovered_at - up_at
    acknowledged = [w for w in writes if w.acknowledged]
    found = present_ids(database, "itinerary_items", [w.id for w in acknowledged])

    # Every answer is a success or a 503 problem with Retry-After; no 500, no lost answer.
    assert all(a.status == 503 for a in failed), status_counts(failed)
    assert all(a.code == "database_unavailable" for a in failed), status_counts(failed)
    assert all(a.headers.get("retry-after") == "1" for a in failed)
    assert any(a.status == 503 for a in during), "the load never saw the outage"
    assert max(a.elapsed for a in answers) < MAX_LATENCY, latency_figures(answers)
    # Back by itself, the same process, within seconds; after that nothing fails.
    assert api.process is not None
    assert api.process.pid == pid
    assert api.process.poll() is None
    assert recovery < RECOVERY_BOUND, recovery
    assert [a for a in failed if a.started >= recovered_at] == []
    # Every acknowledged write is in the database.
    assert found == {w.id for w in acknowledged}

    # What the load stopped before it was acknowledged is sent again: every write lands once.
    unacknowledged = [w for w in writes if not w.acknowledged]
    for write in unacknowledged:
        expect(write.send(api), 201)
    every_id = [w.id for w in writes]
    assert present_ids(database, "itinerary_items", every_id) == set(every_id)
    retried = [w for w in writes if len(w.answers) > 1]
    # A write committed but answered 503 (connection lost at the commit) replays its 201.
    replayed = [w for w in retried if w.answers[-1].headers.get("idempotent-replayed") == "true"]

    report(
        f"database restart ({mode} stop) under load",
        {
            "load": f"{load.stopped - load.started:.1f} s, 5 clients (3 writing items, 2 reading)",
            "outage": f"{up_at - down_at:.2f} s (stop -m {mode} + {OUTAGE:.0f} s down + start)",
            "requests": len(answers),
            "statuses": status_counts(answers),
            "503 during the outage": sum(a.status == 503 for a in during),
            "max latency of any request": f"{max(a.elapsed for a in answers) * 1000:.0f} ms",
            "max latency of a 503": f"{max((a.elapsed for a in failed), default=0) * 1000:.0f} ms",
            "first success after the server was back": f"{recovery:.2f} s",
            "writes acknowledged / found in the database": f"{len(acknowledged)} / {len(found)}",
            "writes that got a 503 and were sent again with their key": (
                f"{len(retried)} (replayed an earlier commit: {len(replayed)}; "
                f"unacknowledged when the load stopped: {len(unacknowledged)})"
            ),
        },
    )
