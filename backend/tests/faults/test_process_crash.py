"""The API process is killed (SIGKILL) while clients write: after a restart every acknowledged
write is there, and no write is half-applied — each is entirely present or entirely absent."""

import itertools
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.faults.harness import (
    ApiProcess,
    Database,
    Load,
    Person,
    Write,
    add_guest,
    call,
    create_trip,
    expect,
    expense_write,
    item_write,
    join_as_editor,
    participant_of,
    register,
    report,
    status_counts,
)

pytestmark = pytest.mark.faults

SETTINGS = {"THREADPOOL_SIZE": "8", "DB_POOL_SIZE": "6", "DB_MAX_OVERFLOW": "0"}
LOAD_BEFORE_KILL = 2.0


def _parts_of_expense(database: Database, write: Write) -> dict[str, Any]:
    """Every row the expense's create writes, as found in the database."""
    trip_id, expense_id = write.trip_id, write.id
    expense = database.rows(
        "SELECT current_revision_id::text, version, deleted_at FROM trip_expenses"
        " WHERE trip_id = %s AND id = %s",
        trip_id,
        expense_id,
    )
    revisions = database.rows(
        "SELECT id::text, number, action, amount_minor FROM trip_expense_revisions"
        " WHERE trip_id = %s AND expense_id = %s",
        trip_id,
        expense_id,
    )
    revision_ids = [row[0] for row in revisions]
    payers = database.rows(
        "SELECT participant_id::text, amount_minor FROM trip_expense_payers"
        " WHERE trip_id = %s AND revision_id = ANY(%s::uuid[])",
        trip_id,
        revision_ids,
    )
    splits = database.rows(
        "SELECT participant_id::text, amount_minor FROM trip_expense_splits"
        " WHERE trip_id = %s AND revision_id = ANY(%s::uuid[])",
        trip_id,
        revision_ids,
    )
    return {
        "expense": expense,
        "revisions": revisions,
        "payers": sorted(payers),
        "splits": sorted(splits),
        **_common_parts(database, write, "expense.created"),
    }


def _parts_of_item(database: Database, write: Write) -> dict[str, Any]:
    item = database.rows(
        "SELECT title, version FROM itinerary_items WHERE trip_id = %s AND id = %s",
        write.trip_id,
        write.id,
    )
    participants = database.rows(
        "SELECT participant_id::text FROM itinerary_item_participants"
        " WHERE trip_id = %s AND item_id = %s",
        write.trip_id,
        write.id,
    )
    return {
        "item": item,
        "participants": sorted(row[0] for row in participants),
        **_common_parts(database, write, "itinerary_item.created"),
    }


def _common_parts(database: Database, write: Write, action: str) -> dict[str, Any]:
    activity = database.rows(
        "SELECT action FROM trip_activity WHERE trip_id = %s AND object_id = %s",
        write.trip_id,
        write.id,
    )
    keys = database.rows("SELECT status_code FROM idempotency_keys WHERE key = %s", write.key)
    return {"activity": activity, "idempotency_keys": keys, "action": action}


def _state(database: Database, write: Write, head_versions: dict[str, int]) -> str:
    """'present' (every part, consistent), 'absent' (no part at all), or what is wrong."""
    if write.kind == "expense":
        parts = _parts_of_expense(database, write)
        rows = [parts["expense"], parts["revisions"], parts["payers"], parts["splits"]]
    else:
        parts = _parts_of_item(database, write)
        rows = [parts["item"], parts["participants"]]
    rows += [parts["activity"], parts["idempotency_keys"]]
    if not any(rows):
        return "absent"
    assert all(rows), f"half-applied {write.kind} {write.id}: {parts}"
    assert parts["activity"] == [(parts["action"],)], parts
    assert parts["idempotency_keys"] == [(201,)], parts
    body = write.body
    if write.kind == "expense":
        [(current_revision, version, deleted_at)] = parts["expense"]
        [(revision_id, number, action, amount)] = parts["revisions"]
        assert (current_revision, number, action, deleted_at) == (revision_id, 1, "created", None)
        assert amount == body["amount_minor"]
        assert parts["payers"] == sorted(
            (p["participant_id"], p["amount_minor"]) for p in body["payers"]
        )
        split_between = sorted(s["participant_id"] for s in body["splits"])
        assert [p for p, _ in parts["splits"]] == split_between
        assert sum(a for _, a in parts["splits"]) == body["amount_minor"]
    else:
        [(title, version)] = parts["item"]
        assert title == body["title"]
        assert parts["participants"] == sorted(body["participant_ids"])
    assert 0 < version <= head_versions[write.trip_id]
    return "present"


def test_a_killed_api_process_leaves_every_write_whole_or_absent(
    database: Database, start_api: Callable[..., ApiProcess]
) -> None:
    api = start_api(**SETTINGS)
    alice, bob = register(api, database, "Alice"), register(api, database, "Bob")
    shared = create_trip(api, alice, "Shared")
    join_as_editor(api, alice, shared, bob)
    own = create_trip(api, bob, "Own")
    people = {
        shared: [
            participant_of(api, alice, shared),
            participant_of(api, bob, shared),
            add_guest(api, alice, shared, "Carol"),
        ],
        own: [participant_of(api, bob, own), add_guest(api, bob, own, "Dana")],
    }

    writes: list[Write] = []
    lock = threading.Lock()
    load = Load(max_seconds=30)

    def writer(author: Person, trip_id: str, make: Callable[..., Write]) -> Callable[[], bool]:
        numbers = itertools.count()

        def step() -> bool:
            write = make(trip_id, author, people[trip_id], next(numbers))
            with lock:
                writes.append(write)
            return not write.send(api).refused  # the process is gone: this client stops

        return step

    load.add(writer(alice, shared, expense_write), pause=0)
    load.add(writer(bob, shared, item_write), pause=0)
    load.add(writer(bob, own, expense_write), pause=0)
    load.add(writer(bob, own, item_write), pause=0)
    with load:
        time.sleep(LOAD_BEFORE_KILL)
        [(open_transactions,)] = database.rows(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE application_name = 'tripsync-api' AND xact_start IS NOT NULL"
        )
        killed_at = time.monotonic()
        api.kill()
        # Every client sees its connection drop or be refused, and stops by itself.
        for thread in load.threads:
            thread.join(timeout=30)

    head_versions = dict(database.rows("SELECT id::text, head_version FROM trips"))
    states = {write.id: _state(database, write, head_versions) for write in writes}
    answers = [write.answers[0] for write in writes]
    acknowledged = [w for w in writes if w.acknowledged]
    errored = [w for w in writes if w.answers[0].status is not None and not w.acknowledged]
    unanswered = [w for w in writes if w.answers[0].status is None and not w.answers[0].refused]
    refused = [w for w in writes if w.answers[0].refused]
    # Acknowledged means committed; refused means never received; the rest is either.
    assert all(states[w.id] == "present" for w in acknowledged)
    assert all(states[w.id] == "absent" for w in refused)
    assert unanswered, "the kill hit no request in flight"
    # Each write took its own trip version: no two transactions share one.
    versions = database.rows(
        "SELECT trip_id, version FROM trip_expenses UNION ALL"
        " SELECT trip_id, version FROM itinerary_items"
    )
    assert len(versions) == len(set(versions))

    restarting = time.monotonic()
    restarted = start_api(**SETTINGS)
    restart_seconds = time.monotonic() - restarting
    expect(call(restarted, "GET", "/health/ready"), 200)
    # The client sends again what it has no answer for, with the same key: all land once.
    resent = [write for write in writes if not write.acknowledged]
    for write in resent:
        expect(write.send(restarted), 201)
    replayed = [w for w in resent if w.answers[-1].headers.get("idempotent-replayed")]
    head_versions = dict(database.rows("SELECT id::text, head_version FROM trips"))
    assert all(_state(database, write, head_versions) == "present" for write in writes)
    in_flight = unanswered + errored

    report(
        "API process killed (SIGKILL) while writing",
        {
            "load": f"{killed_at - load.started:.1f} s by 4 clients writing expenses "
            "(2 payers, 2-3 splits) and items (2-3 participants)",
            "app transactions open on the server just before the kill": open_transactions,
            "writes sent": len(writes),
            "first answers": status_counts(answers),
            "acknowledged (2xx) / found whole": (
                f"{len(acknowledged)} / {sum(states[w.id] == 'present' for w in acknowledged)}"
            ),
            "in flight at the kill (no answer or error)": (
                f"{len(in_flight)}: {sum(states[w.id] == 'present' for w in in_flight)} "
                f"committed whole, {sum(states[w.id] == 'absent' for w in in_flight)} absent, "
                "0 half-applied"
            ),
            "refused after the kill (absent)": len(refused),
            "restart until /health/live answered": f"{restart_seconds:.2f} s",
            "resent with their key after the restart": (
                f"{len(resent)} → all 201 ({len(replayed)} replayed a commit whose answer was lost)"
            ),
        },
    )
