"""PostgreSQL hangs (every one of its processes frozen with SIGSTOP) under load: every request
still answers within DB_STATEMENT_TIMEOUT + 1 s (503/504 problem+json), /health/ready within
2 s, the API serves again within seconds of the server thawing, every acknowledged write is in
the database and nothing is applied twice."""

import itertools
import threading
import time
from collections.abc import Callable

import pytest

from tests.faults.harness import (
    PASSWORD,
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
    participant_of,
    register,
    report,
    status_counts,
)

pytestmark = pytest.mark.faults

STATEMENT_TIMEOUT = 2.0
SETTINGS = {
    "THREADPOOL_SIZE": "8",
    "DB_POOL_SIZE": "6",
    "DB_MAX_OVERFLOW": "2",
    # One client logs in again and again: its rate-limit counts are not the point here.
    "LOGIN_ATTEMPTS_PER_ACCOUNT": "100000",
    "LOGIN_ATTEMPTS_PER_ADDRESS": "100000",
    "DB_POOL_TIMEOUT": "2",
    "DB_CONNECT_TIMEOUT": "2",
    "DB_STATEMENT_TIMEOUT_MS": str(int(STATEMENT_TIMEOUT * 1000)),
    # DB_DEADLINE_MARGIN_MS stays at its default (500 ms).
}
# The promise: any request answers within the statement timeout and one second more.
MAX_LATENCY = STATEMENT_TIMEOUT + 1
READY_MAX_LATENCY = 2.0
# Longer than any request may take: a request still hanging shows up as a transport error.
CLIENT_TIMEOUT = 20.0
WARM_UP, AFTER_RECOVERY = 1.5, 1.5
BACK_OFF = 0.2
RECOVERY_BOUND = 5.0
PROBLEM = "application/problem+json"
FAILURE_CODES = {"database_unresponsive", "database_unavailable", "server_busy"}


@pytest.mark.parametrize("freeze", [10, 40])
def test_a_hung_database_costs_bounded_503s_and_504s_and_no_acknowledged_write(
    freeze: int, database: Database, start_api: Callable[..., ApiProcess]
) -> None:
    api = start_api(**SETTINGS)
    alice, bob = register(api, database, "Alice"), register(api, database, "Bob")
    shared = create_trip(api, alice, "Shared")
    join_as_editor(api, alice, shared, bob)
    own = create_trip(api, bob, "Own")
    shared_people = [participant_of(api, alice, shared), add_guest(api, alice, shared, "Carol")]
    own_people = [participant_of(api, bob, own), add_guest(api, bob, own, "Dana")]

    writes: list[Write] = []
    reads: list[Answer] = []
    logins: list[Answer] = []
    probes: list[Answer] = []
    lock = threading.Lock()
    load = Load(max_seconds=freeze + 30)

    def writer(author: Person, trip_id: str, participants: list[str]) -> Callable[[], None]:
        """An offline-first client: each new item is sent, with its key, until acknowledged."""
        numbers = itertools.count()

        def step() -> None:
            write = item_write(trip_id, author, participants, next(numbers))
            with lock:
                writes.append(write)
            while load.running() and not write.send(api, timeout=CLIENT_TIMEOUT).ok:
                time.sleep(BACK_OFF)

        return step

    def reader(person: Person, paths: list[str]) -> Callable[[], None]:
        cycle = itertools.cycle(paths)

        def step() -> None:
            answer = call(api, "GET", next(cycle), token=person.token, timeout=CLIENT_TIMEOUT)
            with lock:
                reads.append(answer)
            if not answer.ok:
                time.sleep(BACK_OFF)

        return step

    def login() -> None:
        """Before its database slot a login counts its attempt, on a connection of its own."""
        answer = call(
            api,
            "POST",
            "/auth/login",
            form={"username": alice.email, "password": PASSWORD},
            timeout=CLIENT_TIMEOUT,
        )
        with lock:
            logins.append(answer)
        if not answer.ok:
            time.sleep(BACK_OFF)

    def prober() -> None:
        answer = call(api, "GET", "/health/ready", timeout=CLIENT_TIMEOUT)
        with lock:
            probes.append(answer)
        time.sleep(0.2)

    def answers_so_far() -> list[Answer]:
        with lock:
            return [a for write in writes for a in write.answers] + reads + logins

    load.add(writer(alice, shared, shared_people))
    load.add(writer(bob, shared, shared_people))
    load.add(writer(bob, own, own_people))
    load.add(reader(alice, [f"/trips/{shared}", f"/trips/{shared}/items?limit=20", "/sync"]))
    load.add(reader(bob, [f"/trips/{own}", f"/trips/{own}/changes?since=0", "/trips"]))
    load.add(login, pause=0.1)
    load.add(prober, pause=0)
    with load:
        time.sleep(WARM_UP)
        with database.frozen() as stopped:
            frozen_at = time.monotonic()
            time.sleep(freeze)
        thawed_at = time.monotonic()
        recovered_at = None
        while recovered_at is None and time.monotonic() < thawed_at + RECOVERY_BOUND + 5:
            time.sleep(0.05)
            done = [a.ended for a in answers_so_far() if a.ok]
            done = [at for at in done if at >= thawed_at]
            recovered_at = min(done) if done else None
        time.sleep(AFTER_RECOVERY)

    answers = answers_so_far()
    failed = [a for a in answers if not a.ok]
    during = [a for a in answers if frozen_at <= a.started < thawed_at]
    # Probes that began and ended while the server was frozen (one may end after the thaw).
    ready_during = [a for a in probes if frozen_at <= a.started and a.ended < thawed_at]
    slowest = max(answers, key=lambda a: a.elapsed)
    slowest_probe = max(probes, key=lambda a: a.elapsed)

    # Every request answered, in time; every failure a 503/504 problem with Retry-After.
    assert all(a.status is not None for a in answers + probes), status_counts(answers + probes)
    late = [_timeline(a, frozen_at) for a in answers if a.elapsed >= MAX_LATENCY]
    assert late == [], (f"thawed at {thawed_at - frozen_at:.2f} s", late)
    assert all(a.status in (503, 504) for a in failed), status_counts(failed)
    assert all(a.code in FAILURE_CODES for a in failed), status_counts(failed)
    assert all(a.headers.get("content-type") == PROBLEM for a in failed)
    assert all(a.headers.get("retry-after") == "1" for a in failed)
    # What was in flight at the freeze was abandoned at its deadline (504); what came after
    # found no connection to open (503) or was abandoned too.
    assert any(a.code == "database_unresponsive" for a in failed), status_counts(failed)
    assert any(a.status in (503, 504) for a in during), status_counts(during)
    # The readiness probe: always within 2 s, and 503 while the server is frozen.
    late = [_timeline(a, frozen_at) for a in probes if a.elapsed >= READY_MAX_LATENCY]
    assert late == [], (f"thawed at {thawed_at - frozen_at:.2f} s", late)
    assert ready_during, "the probe never ran during the freeze"
    assert {a.status for a in ready_during} == {503}
    assert probes[-1].status == 200, probes[-1].body
    # Back by itself within seconds of the thaw; after that nothing fails.
    assert recovered_at is not None, status_counts(answers)
    recovery = recovered_at - thawed_at
    assert recovery < RECOVERY_BOUND, recovery
    assert [a for a in failed if a.started >= recovered_at] == []

    # Every acknowledged write is in the database.
    acknowledged = [w for w in writes if w.acknowledged]
    landed = _rows_per_write(database, [shared, own])
    assert {_write_key(w) for w in acknowledged} <= set(landed)
    # What was left unacknowledged (a 504 may hide a commit) is sent again with its key:
    # each lands exactly once, none twice.
    unacknowledged = [w for w in writes if not w.acknowledged]
    for write in unacknowledged:
        assert write.send(api).status in (200, 201), write.answers[-1].body
    landed = _rows_per_write(database, [shared, own])
    assert landed == {_write_key(w): 1 for w in writes}
    retried = [w for w in writes if len(w.answers) > 1]
    # A write answered 504 whose commit had in fact landed replays its 201 when sent again.
    replayed = [w for w in retried if w.answers[-1].headers.get("idempotent-replayed") == "true"]
    # The abandoned statements ended on the server too: nothing of the app is left running
    # or holding a transaction open.
    expect(call(api, "GET", "/health/ready"), 200)
    busy = _busy_backends(database)
    give_up = time.monotonic() + 5
    while busy and time.monotonic() < give_up:
        time.sleep(0.1)
        busy = _busy_backends(database)
    assert busy == [], busy

    report(
        f"database frozen (SIGSTOP) for {freeze} s under load",
        {
            "settings": "DB_STATEMENT_TIMEOUT_MS=2000, DB_DEADLINE_MARGIN_MS=500 (default), "
            "DB_CONNECT_TIMEOUT=2, DB_POOL_TIMEOUT=2",
            "load": f"{load.stopped - load.started:.1f} s, 7 clients (3 writing items with "
            "Idempotency-Key and client ids, 2 reading, 1 logging in, 1 probing /health/ready)",
            "processes frozen": len(stopped),
            "requests": len(answers),
            "statuses": status_counts(answers),
            "statuses during the freeze": status_counts(during),
            "max latency of any request": f"{slowest.elapsed * 1000:.0f} ms "
            f"(bound {MAX_LATENCY * 1000:.0f} ms)",
            "max latency of a failure": (
                f"{max((a.elapsed for a in failed), default=0) * 1000:.0f} ms"
            ),
            "logins": status_counts(logins),
            "/health/ready": f"{status_counts(probes)}, slowest "
            f"{slowest_probe.elapsed * 1000:.0f} ms",
            "first success after the thaw": f"{recovery:.2f} s",
            "writes acknowledged / found in the database": (
                f"{len(acknowledged)} / {sum(1 for w in acknowledged if _write_key(w) in landed)}"
            ),
            "writes that failed and were sent again with their key": (
                f"{len(retried)} (replayed an earlier commit: {len(replayed)}; "
                f"unacknowledged when the load stopped: {len(unacknowledged)})"
            ),
            "rows per write after the resends": "1 each (none twice)",
        },
    )


def _timeline(answer: Answer, frozen_at: float) -> str:
    """An answer as `GET /path 503 code: sent at 1.23 s into the freeze, took 2.34 s`."""
    return (
        f"{answer.method} {answer.path} {answer.status} {answer.code or ''}: sent at "
        f"{answer.started - frozen_at:.2f} s into the freeze, took {answer.elapsed:.2f} s"
    )


def _write_key(write: Write) -> tuple[str, str]:
    return write.trip_id, str(write.body["title"])


def _rows_per_write(database: Database, trip_ids: list[str]) -> dict[tuple[str, str], int]:
    """How many items each write left (every write has a title of its own in its trip)."""
    rows = database.rows(
        "SELECT trip_id::text, title, count(*) FROM itinerary_items "
        "WHERE trip_id = ANY(%s::uuid[]) GROUP BY trip_id, title",
        trip_ids,
    )
    return {(str(trip), str(title)): int(count) for trip, title, count in rows}


def _busy_backends(database: Database) -> list[tuple[int, str, str]]:
    """The app's server processes that are running a statement or hold a transaction open."""
    rows = database.rows(
        "SELECT pid, state, left(query, 60) FROM pg_stat_activity "
        "WHERE application_name = 'tripsync-api' AND state <> 'idle'"
    )
    return [(int(pid), str(state), str(query)) for pid, state, query in rows]
