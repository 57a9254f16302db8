"""Query plans on realistic shapes: the trip routes reach their rows through indexes, item
pages come in index order, and page 5,000 reads about as many buffers as page 1.

The data (tests/plan_data.py) is seeded once for the module and rolled back at its end. The
SQL is what the routes really send, recorded from the connection, and is explained with the
same parameters; the planner is left free (no enable_seqscan=off): with realistic statistics
it must choose the index by itself.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Connection, Engine, event

from app.core.pagination import Position, encode_cursor, scope_of_list
from app.users.models import User
from tests import factories, plan_data, support

PAGE_LIMIT = 10
DEEP_PAGE = plan_data.BIG_TRIP_ITEMS // PAGE_LIMIT  # page 5,000: the last one, unscheduled items
MIDDLE_PAGE = DEEP_PAGE // 2  # page 2,500: on a day, with the unscheduled items still to come
ITEMS_ROUTE = "/trips/{trip_id}/items"
DAY = plan_data.START + timedelta(days=3)  # a day of the big trip: ~3,300 items
SCANS = {"Index Scan", "Index Only Scan", "Bitmap Heap Scan"}
SORTS = {"Sort", "Incremental Sort"}


@dataclass(frozen=True)
class Statement:
    sql: str
    parameters: Any

    def __str__(self) -> str:
        return " ".join(self.sql.split())


@dataclass(frozen=True)
class World:
    connection: Connection
    client: TestClient
    user: User
    seeded: plan_data.Seeded


@pytest.fixture(scope="module")
def world(engine: Engine) -> Iterator[World]:
    """Like the `connection` and `client` fixtures, for the whole module: seeding is slow."""
    from app.main import app

    with support.rolled_back(engine) as connection:
        with support.session_on(connection) as session:
            user = factories.make_user(session)
        seeded = plan_data.seed(connection, me=user.id, password_hash=factories.password_hash())
        yield World(connection, TestClient(app, raise_server_exceptions=False), user, seeded)
    # The rolled-back rows stay behind as dead ones, and ANALYZE's row counts outlive the
    # rollback: vacuum, so that the rest of the run finds the tables as they were.
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.exec_driver_sql(f"VACUUM {', '.join(plan_data.TABLES)}")


@contextmanager
def recorded(connection: Connection) -> Iterator[list[Statement]]:
    """Every statement sent on the connection, with its parameters, as the driver got them."""
    statements: list[Statement] = []

    def record(_conn: Any, _cursor: Any, sql: str, parameters: Any, *_: Any) -> None:
        statements.append(Statement(sql, parameters))

    event.listen(connection, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        event.remove(connection, "before_cursor_execute", record)


def explain(connection: Connection, statement: Statement, *, analyze: bool = False) -> Any:
    """The plan of exactly what the app sent: the same text and parameters, the same driver."""
    options = "ANALYZE, BUFFERS, FORMAT JSON" if analyze else "FORMAT JSON"
    dbapi_connection = connection.connection.dbapi_connection
    assert dbapi_connection is not None
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"EXPLAIN ({options}) {statement.sql}", statement.parameters)
        row = cursor.fetchone()
    finally:
        cursor.close()
    assert row is not None
    return row[0][0]["Plan"]


def nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from nodes(child)


def render(plan: dict[str, Any], depth: int = 0) -> str:
    """Roughly EXPLAIN's text format: a line per node, with what it scans, sorts and filters."""
    line = "  " * depth + plan["Node Type"]
    if "Index Name" in plan:
        line += f" using {plan['Index Name']}"
    if "Relation Name" in plan:
        line += f" on {plan['Relation Name']}"
    for key in ("Sort Key", "Index Cond", "Recheck Cond", "Filter"):
        if key in plan:
            line += f"  {key}: {plan[key]}"
    line += f"  (rows={plan['Plan Rows']}"
    if "Actual Rows" in plan:
        line += f", actual={plan['Actual Rows']}, buffers={buffers(plan)}"
    line += ")"
    return "\n".join([line, *(render(child, depth + 1) for child in plan.get("Plans", []))])


def buffers(plan: dict[str, Any]) -> int:
    """Shared buffers the node and its children touched, cached or not: repeatable, not timed."""
    return int(plan["Shared Hit Blocks"]) + int(plan["Shared Read Blocks"])


def shown(statement: Statement, plan: dict[str, Any]) -> str:
    return f"\n{statement}\n{render(plan)}"


def item_cursor(world: World, offset: int, day: date | None = None) -> str:
    """The cursor a client holds after reading `offset + 1` items: that of the last one."""
    row = world.connection.exec_driver_sql(
        "SELECT day, order_key, id FROM itinerary_items"
        " WHERE trip_id = %(trip)s AND (%(day)s::date IS NULL OR day = %(day)s::date)"
        " ORDER BY day ASC NULLS LAST, order_key OFFSET %(offset)s LIMIT 1",
        {"trip": str(world.seeded.big_trip_id), "day": day, "offset": offset},
    ).one()
    item_day, key, item_id = row
    sort_key = f"{item_day.isoformat() if item_day else ''}/{key}"
    scope = scope_of_list(
        ITEMS_ROUTE,
        path={"trip_id": str(world.seeded.big_trip_id)},
        filters={"day": [day.isoformat()] if day else []},
        user_id=world.user.id,
    )
    return encode_cursor(Position(sort_key, item_id), scope)


def _routes(world: World) -> dict[str, tuple[str, dict[str, Any]]]:
    trip = f"/trips/{world.seeded.big_trip_id}"

    def items(offset: int | None = None, day: date | None = None) -> dict[str, Any]:
        params: dict[str, Any] = {"limit": PAGE_LIMIT}
        if day is not None:
            params["day"] = day.isoformat()
        if offset is not None:
            params["cursor"] = item_cursor(world, offset, day)
        return params

    return {
        "trips": ("/trips", {}),
        "trip": (trip, {}),
        "items page 1": (f"{trip}/items", items()),
        "items page 2,500": (f"{trip}/items", items((MIDDLE_PAGE - 1) * PAGE_LIMIT - 1)),
        "items page 5,000": (f"{trip}/items", items((DEEP_PAGE - 1) * PAGE_LIMIT - 1)),
        "items of a day": (f"{trip}/items", items(day=DAY)),
        "items of a day, page 300": (f"{trip}/items", items(299 * PAGE_LIMIT - 1, DAY)),
        "changes": (f"{trip}/changes", {"since": world.seeded.head_version - 10}),
        "expenses": (f"{trip}/expenses", {}),
        "balances": (f"{trip}/balances", {}),
    }


ROUTES = (
    "trips",
    "trip",
    "items page 1",
    "items page 2,500",
    "items page 5,000",
    "items of a day",
    "items of a day, page 300",
    "changes",
    "expenses",
    "balances",
)
ITEM_PAGES = tuple(name for name in ROUTES if name.startswith("items"))


@pytest.fixture(scope="module")
def reads(world: World) -> dict[str, list[Statement]]:
    """Each route called once, as its owner; the queries it sent, by route."""
    routes = _routes(world)
    assert tuple(routes) == ROUTES
    found = {}
    for name, (path, params) in routes.items():
        with recorded(world.connection) as statements:
            response = world.client.get(path, params=params, headers=support.auth(world.user))
        assert response.status_code == 200, (name, response.text)
        if name in ITEM_PAGES:
            assert len(response.json()["items"]) == PAGE_LIMIT, name
        queries = ("SELECT", "WITH")
        found[name] = [s for s in statements if s.sql.lstrip().upper().startswith(queries)]
    return found


def _items_statement(world: World, statements: list[Statement]) -> tuple[Statement, Any]:
    """The route's query of itinerary_items (not that of their participants) and its plan."""
    for statement in statements:
        plan = explain(world.connection, statement)
        if any(node.get("Relation Name") == "itinerary_items" for node in nodes(plan)):
            return statement, plan
    raise AssertionError(f"no query of itinerary_items among {[str(s) for s in statements]}")


@pytest.mark.parametrize("route", ROUTES)
def test_reads_reach_their_rows_through_indexes(
    world: World, reads: dict[str, list[Statement]], route: str
) -> None:
    for statement in reads[route]:
        plan = explain(world.connection, statement)
        scans = {node["Node Type"] for node in nodes(plan) if "Relation Name" in node}
        assert scans <= SCANS, f"{route}: {sorted(scans - SCANS)}" + shown(statement, plan)


def _page_rows(plan: dict[str, Any]) -> dict[str, Any] | None:
    """The plan of the page's rows: the first Limit above the scans of itinerary_items (the
    statement around it checks the caller and joins the page's documents in that order)."""
    for node in nodes(plan):
        scans = (inner.get("Relation Name") for inner in nodes(node))
        if node["Node Type"] == "Limit" and "itinerary_items" in scans:
            return node
    return None


@pytest.mark.parametrize("route", ITEM_PAGES)
def test_item_pages_come_in_index_order(
    world: World, reads: dict[str, list[Statement]], route: str
) -> None:
    statement, plan = _items_statement(world, reads[route])
    rows = _page_rows(plan)
    assert rows is not None, f"{route}: no Limit above the items" + shown(statement, plan)
    sorts = [node["Node Type"] for node in nodes(rows) if node["Node Type"] in SORTS]
    assert not sorts, f"{route}: the index should give the order" + shown(statement, plan)


@pytest.mark.parametrize(
    ("route", "first"),
    [
        ("items page 2,500", "items page 1"),
        ("items page 5,000", "items page 1"),
        ("items of a day, page 300", "items of a day"),
    ],
)
def test_a_deep_page_reads_about_as_many_buffers_as_the_first(
    world: World, reads: dict[str, list[Statement]], route: str, first: str
) -> None:
    deep_statement, _ = _items_statement(world, reads[route])
    first_statement, _ = _items_statement(world, reads[first])
    deep_plan = explain(world.connection, deep_statement, analyze=True)
    first_plan = explain(world.connection, first_statement, analyze=True)
    deep_rows = _page_rows(deep_plan)
    assert deep_rows is not None, shown(deep_statement, deep_plan)
    assert deep_rows["Actual Rows"] >= PAGE_LIMIT, shown(deep_statement, deep_plan)
    # A few more: a second index range to start (the unscheduled items), or another leaf.
    assert buffers(deep_plan) <= 2 * buffers(first_plan) + 8, (
        f"{route}: {buffers(deep_plan)} buffers, {first}: {buffers(first_plan)}"
        + shown(deep_statement, deep_plan)
        + shown(first_statement, first_plan)
    )
