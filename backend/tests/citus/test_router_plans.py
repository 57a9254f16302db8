"""On a Citus coordinator (make test-citus): what a single-trip route sends to a distributed
table is routed to one shard (`Task Count: 1` in its plan), never fanned out to all of them.

The statements are recorded from the test's connection while the routes run, then explained
with the same parameters (EXPLAIN only plans: nothing runs twice).
"""

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Connection, event
from sqlmodel import Session

from app.core.distribution import PLACEMENTS, Placement, citus_installed
from tests import factories, support

TRIP_TABLES = sorted(
    name for name, plan in PLACEMENTS.items() if plan.placement is Placement.BY_TRIP
)
_TOUCHES_TRIP_TABLE = re.compile(r"\b(" + "|".join(TRIP_TABLES) + r")\b")
_PLANNED = ("SELECT", "INSERT", "UPDATE", "DELETE", "WITH")


@pytest.fixture(autouse=True)
def on_citus(connection: Connection) -> None:
    if not citus_installed(connection):
        pytest.skip("not a Citus coordinator: make test-citus runs this")


@contextmanager
def recorded(connection: Connection) -> Iterator[list[tuple[str, Any]]]:
    statements: list[tuple[str, Any]] = []

    def record(_conn: Any, _cursor: Any, sql: str, parameters: Any, *_: Any) -> None:
        statements.append((sql, parameters))

    event.listen(connection, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        event.remove(connection, "before_cursor_execute", record)


def fanned_out(connection: Connection, statements: list[tuple[str, Any]]) -> list[str]:
    """Each statement on a trip table whose plan reaches more than one shard."""
    checked, offenders = 0, []
    for sql, parameters in statements:
        if not sql.lstrip().upper().startswith(_PLANNED) or not _TOUCHES_TRIP_TABLE.search(sql):
            continue
        plan = "\n".join(row[0] for row in connection.exec_driver_sql(f"EXPLAIN {sql}", parameters))
        counts = re.findall(r"Task Count: (\d+)", plan)
        checked += 1
        if not counts or any(count != "1" for count in counts):
            offenders.append(f"{' '.join(sql.split())[:300]}\n{plan}")
    assert checked, "no statement on a trip table was recorded"
    return offenders


def test_single_trip_writes_are_routed_to_one_shard(
    client: TestClient, session: Session, connection: Connection
) -> None:
    owner = factories.make_user(session)
    with recorded(connection) as statements:
        factories.seed_trip_with_everything(client, owner)
    assert fanned_out(connection, statements) == []


def test_single_trip_reads_are_routed_to_one_shard(
    client: TestClient, session: Session, connection: Connection
) -> None:
    owner = factories.make_user(session)
    seeded = factories.seed_trip_with_everything(client, owner)
    base = f"/trips/{seeded['trip']['id']}"
    reads = [
        base,
        f"{base}/items",
        f"{base}/items/{seeded['item']['id']}",
        f"{base}/participants",
        f"{base}/checklists/{seeded['checklist']['id']}/items",
        f"{base}/expenses",
        f"{base}/settlements",
        f"{base}/balances",
        f"{base}/summary",
        f"{base}/snapshot",
        f"{base}/changes?since=0",
        f"{base}/activity",
    ]
    with recorded(connection) as statements:
        for path in reads:
            response = client.get(path, headers=support.auth(owner))
            assert response.status_code == 200, (path, response.text)
    assert fanned_out(connection, statements) == []
