"""Behind PgBouncer in transaction-pooling mode, with two server connections for two API
processes and many concurrent clients: keyed writes, If-Match races, itinerary moves, long
polls and a mutations batch all come out right, and a statement past the statement timeout
(set on the server, not sent by the app) is answered 504 database_timeout.

Nothing in the app may keep state on a server connection between transactions: each
transaction may run on another one, and the next client's transaction on this one.
"""

import asyncio
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import exc, text

from app.core.config import Settings
from app.core.db import build_engine, server_timeout_mismatches
from app.sync.live import CHANNEL
from devtools.local_pgbouncer import LocalPgBouncer, pgbouncer_binary
from tests.faults.harness import (
    TRIP_DATES,
    Answer,
    ApiProcess,
    Database,
    Person,
    Write,
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
from tests.faults.live_clients import Http, Subscriber, stop

pytestmark = [
    pytest.mark.faults,
    pytest.mark.skipif(
        pgbouncer_binary() is None,
        reason="pgbouncer is not installed (apt-get install pgbouncer; .ci/run installs it)",
    ),
]

SERVER_CONNECTIONS = 2
STATEMENT_TIMEOUT_MS, IDLE_TIMEOUT_MS = 1500, 20_000
SETTINGS = {
    "DB_STARTUP_OPTIONS": "false",
    "DB_STATEMENT_TIMEOUT_MS": str(STATEMENT_TIMEOUT_MS),
    "DB_IDLE_IN_TRANSACTION_TIMEOUT_MS": str(IDLE_TIMEOUT_MS),
    # Six client connections per process into PgBouncer, which has two to PostgreSQL.
    "THREADPOOL_SIZE": "8",
    "DB_POOL_SIZE": "6",
    "DB_MAX_OVERFLOW": "0",
    # Requests queue in PgBouncer here, not in the app: the test is not about admission.
    "DB_POOL_TIMEOUT": "30",
}
DAY_1, DAY_2 = TRIP_DATES["start_date"], "2027-05-02"
KEYED_WRITES, IF_MATCH_RACERS, MOVERS, LONG_POLLS, READERS = 12, 8, 8, 4, 4
SLACK = 2.0  # for a loaded two-core machine


@pytest.fixture
def bouncer(database: Database) -> Iterator[LocalPgBouncer]:
    """PgBouncer in front of the test's database; the timeouts live on the server's role."""
    database.execute(
        f"ALTER ROLE postgres IN DATABASE tripsync SET statement_timeout = {STATEMENT_TIMEOUT_MS}"
    )
    database.execute(
        "ALTER ROLE postgres IN DATABASE tripsync"
        f" SET idle_in_transaction_session_timeout = {IDLE_TIMEOUT_MS}"
    )
    bouncer = LocalPgBouncer(
        database.url,
        pool_size=SERVER_CONNECTIONS,
        max_client_conn=50,
        # A request stuck waiting for a server connection fails the test in seconds, not 2 min.
        query_wait_timeout=20,
    )
    with bouncer:
        yield bouncer


class PoolWatch(threading.Thread):
    """Samples PgBouncer's SHOW POOLS: the most server connections, the most clients waiting."""

    def __init__(self, bouncer: LocalPgBouncer) -> None:
        super().__init__(daemon=True)
        self.bouncer = bouncer
        self.stopped = threading.Event()
        self.max_servers = self.max_waiting = self.max_active_clients = 0

    def run(self) -> None:
        while not self.stopped.is_set():
            for pool in self.bouncer.show("POOLS"):
                if pool["database"] != "tripsync":
                    continue
                servers = sum(
                    pool[k] for k in ("sv_active", "sv_idle", "sv_used", "sv_tested", "sv_login")
                )
                self.max_servers = max(self.max_servers, servers)
                self.max_waiting = max(self.max_waiting, pool["cl_waiting"])
                self.max_active_clients = max(self.max_active_clients, pool["cl_active"])
            self.stopped.wait(0.02)

    def __enter__(self) -> "PoolWatch":
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stopped.set()
        self.join(timeout=10)


def _all_at_once(actions: list[Callable[[], object]]) -> None:
    """Run every action on its own thread, released together; wait for all of them."""
    barrier = threading.Barrier(len(actions))

    def run(action: Callable[[], object]) -> None:
        barrier.wait()
        action()

    threads = [threading.Thread(target=run, args=(action,), daemon=True) for action in actions]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads), "a client hung"


def _add_item(api: ApiProcess, person: Person, trip: str, day: str, title: str) -> dict[str, Any]:
    body = {"kind": "activity", "title": title, "day": day}
    headers = {"Idempotency-Key": str(uuid.uuid4())}
    answer = call(
        api, "POST", f"/trips/{trip}/items", token=person.token, json_body=body, headers=headers
    )
    created: dict[str, Any] = expect(answer, 201)
    return created


def _trip_version(api: ApiProcess, person: Person, trip: str) -> int:
    snapshot = expect(call(api, "GET", f"/trips/{trip}/snapshot", token=person.token), 200)
    return int(snapshot["version"])


def test_the_app_is_correct_behind_pgbouncer_in_transaction_mode(
    database: Database, bouncer: LocalPgBouncer, start_api: Callable[..., ApiProcess]
) -> None:
    # Why the setting exists: with its default, every connection is refused by PgBouncer.
    default_engine = build_engine(Settings(_env_file=None, DATABASE_URL=bouncer.url))  # type: ignore[call-arg]
    try:
        with pytest.raises(exc.OperationalError, match="unsupported startup parameter: options"):
            default_engine.connect().close()
    finally:
        default_engine.dispose()
    settings = Settings(_env_file=None, DATABASE_URL=bouncer.url, **SETTINGS)  # type: ignore[arg-type]
    engine = build_engine(settings)
    try:
        with engine.connect() as connection:
            shown = connection.execute(text("SHOW statement_timeout")).scalar_one()
            assert server_timeout_mismatches(connection, settings) == []
    finally:
        engine.dispose()
    assert shown == "1500ms"

    # Two API processes (two hosts, as far as they know) share the one PgBouncer.
    # Each listens for live versions straight on PostgreSQL: LISTEN is lost through PgBouncer.
    apis = [
        start_api(DATABASE_URL=bouncer.url, DB_LISTEN_URL=database.url, **SETTINGS)
        for _ in range(2)
    ]
    first, second = apis
    alice = register(first, database, "Alice")
    bob = register(second, database, "Bob")
    trip = create_trip(first, alice, "Pooled")
    join_as_editor(first, alice, trip, bob)
    people = [participant_of(first, alice, trip), participant_of(first, bob, trip)]
    quiet_trip = create_trip(second, bob, "Watched")  # the long polls wait on this one
    raced = _add_item(first, alice, trip, DAY_1, "Raced")
    movers = [_add_item(second, bob, trip, DAY_1, f"Mover {n}") for n in range(MOVERS)]
    quiet_version = _trip_version(first, bob, quiet_trip)

    answers: dict[str, list[Answer]] = {
        kind: [] for kind in ("keyed", "if_match", "move", "batch", "poll", "read", "poke")
    }

    def record(kind: str, answer: Answer) -> Answer:
        answers[kind].append(answer)
        return answer

    # Keyed writes: each sent twice at once, to both processes, with the same key and body.
    keyed = [item_write(trip, alice if n % 2 else bob, people, n) for n in range(KEYED_WRITES)]

    def send_keyed(write: Write, api: ApiProcess) -> Callable[[], object]:
        return lambda: record("keyed", write.send(api))

    # If-Match: every racer edits the same version of one item.
    def patch_raced(n: int) -> Callable[[], object]:
        return lambda: record(
            "if_match",
            call(
                apis[n % 2],
                "PATCH",
                f"/trips/{trip}/items/{raced['id']}",
                token=alice.token,
                json_body={"title": f"Racer {n}"},
                headers={"If-Match": f'"{raced["version"]}"', "Idempotency-Key": str(uuid.uuid4())},
            ),
        )

    # Moves: every mover item goes to the end of day 2 at once (advisory xact lock per day).
    def move(item: dict[str, Any], n: int) -> Callable[[], object]:
        return lambda: record(
            "move",
            call(
                apis[n % 2],
                "POST",
                f"/trips/{trip}/items/{item['id']}/move",
                token=bob.token,
                json_body={"day": DAY_2},
                headers={"Idempotency-Key": str(uuid.uuid4())},
            ),
        )

    # A batch of queued writes: create, edit and move one item, each with its own key.
    batch_item = str(uuid.uuid4())
    batch = {
        "mutations": [
            {
                "id": "create",
                "method": "POST",
                "path": f"/trips/{trip}/items",
                "headers": {"Idempotency-Key": f"batch-create-{batch_item}"},
                "body": {"id": batch_item, "kind": "meal", "title": "Batched", "day": DAY_1},
            },
            {
                "id": "edit",
                "method": "PATCH",
                "path": f"/trips/{trip}/items/{batch_item}",
                "headers": {"If-Match": "*", "Idempotency-Key": f"batch-edit-{batch_item}"},
                "body": {"title": "Batched and edited"},
            },
            {
                "id": "move",
                "method": "POST",
                "path": f"/trips/{trip}/items/{batch_item}/move",
                "headers": {"Idempotency-Key": f"batch-move-{batch_item}"},
                "body": {"day": DAY_2},
            },
        ]
    }

    def send_batch(api: ApiProcess) -> Callable[[], object]:
        return lambda: record(
            "batch",
            call(api, "POST", f"/trips/{trip}/mutations", token=alice.token, json_body=batch),
        )

    # Long polls on the quiet trip: more of them than PgBouncer has server connections.
    def poll(n: int) -> Callable[[], object]:
        path = f"/trips/{quiet_trip}/changes?since={quiet_version}&wait=10"
        return lambda: record("poll", call(apis[n % 2], "GET", path, token=bob.token, timeout=30))

    def poke() -> None:
        """One change on the quiet trip, a second after the polls started waiting."""
        time.sleep(1.0)
        record(
            "poke",
            call(
                first,
                "PATCH",
                f"/trips/{quiet_trip}",
                token=bob.token,
                json_body={"name": "Watched, changed"},
                headers={"If-Match": "*"},
            ),
        )

    def reads(n: int) -> Callable[[], object]:
        def read() -> None:
            for _ in range(10):
                record("read", call(apis[n % 2], "GET", f"/trips/{trip}/items", token=alice.token))

        return read

    actions: list[Callable[[], object]] = [
        *(send_keyed(write, api) for write in keyed for api in apis),
        *(patch_raced(n) for n in range(IF_MATCH_RACERS)),
        *(move(item, n) for n, item in enumerate(movers)),
        send_batch(first),
        *(poll(n) for n in range(LONG_POLLS)),
        poke,
        *(reads(n) for n in range(READERS)),
    ]
    started = time.monotonic()
    with PoolWatch(bouncer) as watch:
        _all_at_once(actions)
    burst = time.monotonic() - started
    everything = [answer for kind in answers.values() for answer in kind]

    # PgBouncer really multiplexed: never more than two server connections, clients queued.
    assert watch.max_servers <= SERVER_CONNECTIONS, watch.max_servers
    assert watch.max_waiting > 0, "no client ever waited: the pool was not contended"
    # Nothing failed: no 5xx, no transport error, anywhere.
    assert all(a.status is not None and a.status < 500 for a in everything), status_counts(
        everything
    )

    # Keyed writes: each landed exactly once; its twin got the replay or "in progress".
    for write in keyed:
        statuses = sorted(a.status or 0 for a in write.answers)
        assert 201 in statuses, statuses
        assert set(statuses) <= {200, 201, 409}, statuses
    assert present_ids(database, "itinerary_items", [w.id for w in keyed]) == {w.id for w in keyed}
    [(stored_keys,)] = database.rows(
        "SELECT count(*) FROM idempotency_keys WHERE key = ANY(%s)", [w.key for w in keyed]
    )
    assert stored_keys == KEYED_WRITES
    for write in keyed:  # sent again: the stored answer, nothing written twice
        again = write.send(first)
        assert again.status == 201, (again.status, again.body)
        assert again.headers.get("idempotent-replayed") == "true"
    # If-Match: exactly one racer won; every other got 412 with the winner's version.
    race = sorted(a.status or 0 for a in answers["if_match"])
    assert race == [200] + [412] * (IF_MATCH_RACERS - 1), race
    [winner] = [a for a in answers["if_match"] if a.status == 200]
    for loser in (a for a in answers["if_match"] if a.status == 412):
        assert loser.body["current"]["title"] == winner.body["title"]
    # Moves: all applied (no unique-key clash on the order key), all on day 2.
    assert [a.status for a in answers["move"]] == [200] * MOVERS
    listed = expect(
        call(first, "GET", f"/trips/{trip}/items?day={DAY_2}&limit=100", token=alice.token), 200
    )["items"]
    keys = [item["order_key"] for item in listed]
    assert len(set(keys)) == len(keys) == MOVERS + 1  # the movers and the batch's item
    assert {m["id"] for m in movers} <= {item["id"] for item in listed}
    # The batch: three writes applied in order; sent again, each is replayed, none doubled.
    [batch_answer] = answers["batch"]
    results = expect(batch_answer, 200)["results"]
    assert [(r["id"], r["result"]) for r in results] == [
        ("create", "applied"),
        ("edit", "applied"),
        ("move", "applied"),
    ]
    again = expect(
        call(second, "POST", f"/trips/{trip}/mutations", token=alice.token, json_body=batch), 200
    )["results"]
    assert [r["result"] for r in again] == ["applied"] * 3
    assert [r["body"] for r in again] == [r["body"] for r in results]
    assert database.rows(
        "SELECT title, day::text FROM itinerary_items WHERE id = %s", batch_item
    ) == [("Batched and edited", DAY_2)]
    # Long polls: each saw the one change, without holding a server connection meanwhile.
    [poked] = answers["poke"]
    expect(poked, 200)
    for polled in answers["poll"]:
        changes = expect(polled, 200)["changes"]
        assert [(c["entity"], c["op"]) for c in changes] == [("trip", "upsert")]
    poll_after_poke = [
        a.started + a.elapsed - (poked.started + poked.elapsed) for a in answers["poll"]
    ]
    assert max(poll_after_poke) < SLACK + 1.0, poll_after_poke
    assert all(a.status == 200 for a in answers["read"])

    # A statement past the (server-side) statement timeout: 504, while reads flow meanwhile.
    blocked = item_write(trip, alice, people, 99)
    meanwhile: list[Answer] = []
    with database.trip_locked(trip):

        def read_meanwhile() -> None:
            for _ in range(5):
                meanwhile.append(call(second, "GET", f"/trips/{quiet_trip}", token=bob.token))

        _all_at_once([lambda: blocked.send(first), read_meanwhile])
    [timed_out] = blocked.answers
    assert timed_out.status == 504, (timed_out.status, timed_out.body)
    assert timed_out.code == "database_timeout"
    assert (
        STATEMENT_TIMEOUT_MS / 1000 * 0.95
        <= timed_out.elapsed
        < STATEMENT_TIMEOUT_MS / 1000 + SLACK
    )
    assert [a.status for a in meanwhile] == [200] * 5
    assert present_ids(database, "itinerary_items", [blocked.id]) == set()
    expect(blocked.send(second), 201)

    pools = [p for p in bouncer.show("POOLS") if p["database"] == "tripsync"]
    for api in apis:
        assert "on the server but" not in api.log(), api.log()  # the start-up check agreed
    report(
        "behind PgBouncer (transaction mode)",
        {
            "set-up": f"2 API processes x {SETTINGS['DB_POOL_SIZE']} client connections → "
            f"PgBouncer pool_size={SERVER_CONNECTIONS}; timeouts by ALTER ROLE ... IN DATABASE",
            "default settings through PgBouncer": "refused: unsupported startup parameter: options",
            "burst": f"{len(actions)} clients at once, {len(everything)} requests in "
            f"{burst:.1f} s: {status_counts(everything)}",
            "PgBouncer": f"at most {watch.max_servers} server connections, "
            f"{watch.max_active_clients} clients active and {watch.max_waiting} waiting at once",
            "keyed writes": f"{KEYED_WRITES} sent twice at once → {KEYED_WRITES} rows, "
            f"{stored_keys} keys; resent: {KEYED_WRITES} replays",
            "If-Match race": f"{IF_MATCH_RACERS} racers → 1 x 200, {IF_MATCH_RACERS - 1} x 412",
            "moves": f"{MOVERS} concurrent moves into one day → {MOVERS} x 200, distinct keys",
            "long polls": f"{LONG_POLLS} waiting on {SERVER_CONNECTIONS} server connections; "
            f"answered {max(poll_after_poke) * 1000:.0f} ms at most after the change",
            "mutations batch": "3 applied; resent: 3 applied as replays, nothing doubled",
            "statement past 1500 ms": f"{timed_out.status} {timed_out.code} after "
            f"{timed_out.elapsed * 1000:.0f} ms; 5 reads meanwhile all 200 "
            f"({latency_figures(meanwhile)['max_latency_ms']} ms at most); 201 when resent",
            "pool at the end": {k: pools[0][k] for k in ("cl_active", "sv_idle", "sv_used")},
        },
    )


def test_live_sync_behind_pgbouncer_listens_on_its_own_direct_connection(
    database: Database, bouncer: LocalPgBouncer, start_api: Callable[..., ApiProcess]
) -> None:
    # LISTEN needs a session of its own, which transaction pooling does not give: the
    # requests go through PgBouncer, the listener straight to PostgreSQL (DB_LISTEN_URL).
    api = start_api(DATABASE_URL=bouncer.url, DB_LISTEN_URL=database.url, **SETTINGS)
    alice = register(api, database, "Alice")
    trip = create_trip(api, alice, "Live")
    version = _trip_version(api, alice, trip)
    listeners = database.rows(
        "SELECT query FROM pg_stat_activity WHERE application_name = 'tripsync-listener'"
    )
    assert [query for (query,) in listeners] == [f"LISTEN {CHANNEL}"]
    through_bouncer = [
        c for c in bouncer.show("CLIENTS") if c.get("application_name") == "tripsync-listener"
    ]
    assert through_bouncer == []

    async def follow() -> dict[str, float]:
        rows: dict[tuple[str, str], Any] = {}
        stream = Subscriber("sse", api.port, alice.token, trip, version, rows)
        poll = Subscriber("long_poll", api.port, alice.token, trip, version, dict(rows))
        tasks = stream.tasks() + poll.tasks()
        try:
            while not stream.event_versions:  # the stream began with the trip's head
                await asyncio.sleep(0.01)
            await asyncio.sleep(1.0)  # the long poll is waiting by now
            sent = time.monotonic()
            status, _ = await Http(api.port, alice.token).call(
                "PATCH", f"/trips/{trip}", {"name": "Live, changed"}, {"If-Match": "*"}
            )
            assert status == 200
            woken: dict[str, float] = {}
            while len(woken) < 2 and time.monotonic() < sent + 10:
                for name, subscriber in (("event stream", stream), ("long poll", poll)):
                    if name not in woken and subscriber.cursor > version:
                        woken[name] = time.monotonic() - sent
                await asyncio.sleep(0.005)
            return woken
        finally:
            await stop(tasks)

    woken = asyncio.run(follow())
    # Both heard of the write within a second (the long poll would otherwise wait 20 s).
    assert set(woken) == {"event stream", "long poll"}, woken
    assert max(woken.values()) < 1.0, woken
    report(
        "live sync behind PgBouncer (transaction mode)",
        {
            "set-up": "requests through PgBouncer (pool_size=2); DB_LISTEN_URL straight to "
            "PostgreSQL, where its LISTEN connection is (none through PgBouncer)",
            "write → copy updated (send to applied changes)": ", ".join(
                f"{name} {seconds * 1000:.0f} ms" for name, seconds in woken.items()
            ),
        },
    )
