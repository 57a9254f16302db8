"""Where each table lives on a Citus cluster, and the step that puts it there.

`make migrate` (app.cli migrate) runs `distribute` after the migrations. On a database with
the `citus` extension it makes the trip tables distributed by trip (co-located with `trips`,
so a trip's rows share one shard group on one worker), `users` and `fx_rates` reference
tables (a copy on every node, joined locally), and keeps the rest on the coordinator as Citus
local tables, each for the reason written beside it. Without Citus it does nothing. Running
it again changes nothing; a table a later migration adds is placed on the next run, and a
test fails until PLACEMENTS names it (a table that is not the app's is left alone).

docs/operations.md ("Scaling out") tells what ran, which requests fan out, and why.
"""

import logging
from dataclasses import dataclass
from enum import StrEnum
from typing import Any
from weakref import WeakKeyDictionary

from sqlalchemy import Connection, Engine, text
from sqlalchemy.orm import Session

logger = logging.getLogger(__name__)


class Placement(StrEnum):
    # Hash-distributed by trip_id (trips: by id), co-located with `trips`.
    BY_TRIP = "by_trip"
    # A copy on every node: writes are 2PC to all of them, reads and joins are local.
    REFERENCE = "reference"
    # One copy, on the coordinator, in Citus's metadata (so it can hold foreign keys to the
    # reference tables and be joined with distributed ones).
    COORDINATOR = "coordinator"
    # Outside Citus altogether: Alembic's own bookkeeping.
    PLAIN = "plain"


@dataclass(frozen=True)
class TablePlacement:
    placement: Placement
    # Why here, and what a transaction that writes it costs on the cluster.
    reason: str


_TRIP = "a trip's rows, addressed with its trip_id: one shard group, one worker per request"

PLACEMENTS: dict[str, TablePlacement] = {
    "trips": TablePlacement(Placement.BY_TRIP, "the co-location anchor, distributed by id"),
    **{
        name: TablePlacement(Placement.BY_TRIP, _TRIP)
        for name in (
            "trip_members",
            "trip_participants",
            "trip_invitations",
            "trip_invite_links",
            "trip_share_links",
            "trip_activity",
            "itinerary_items",
            "itinerary_item_participants",
            "checklists",
            "checklist_items",
            "trip_expenses",
            "trip_expense_revisions",
            "trip_expense_payers",
            "trip_expense_splits",
            "trip_settlements",
            "trip_participant_totals",
            "sync_tombstones",
        )
    },
    "users": TablePlacement(
        Placement.REFERENCE,
        "every trip table points at users (created_by, user_id) and member lists join them; "
        "a registration or profile change commits on every node (2PC), which is rare",
    ),
    "fx_rates": TablePlacement(
        Placement.REFERENCE,
        "read by expense conversions inside a trip's transaction, written once a day by the "
        "rate import: a 2PC to every node per import",
    ),
    "user_sessions": TablePlacement(
        Placement.COORDINATOR,
        "read on every authenticated request by id and by refresh key (two unique keys, so no "
        "one distribution column); a login or refresh commits on the coordinator alone",
    ),
    "user_two_factor": TablePlacement(
        Placement.COORDINATOR,
        "per user, read at login beside user_sessions; coordinator-only transactions",
    ),
    "user_recovery_codes": TablePlacement(
        Placement.COORDINATOR,
        "keyed by user_two_factor, so placed with it; coordinator-only transactions",
    ),
    "password_reset_tokens": TablePlacement(
        Placement.COORDINATOR,
        "looked up by token hash and locked FOR UPDATE; coordinator-only transactions",
    ),
    "calendar_feed_tokens": TablePlacement(
        Placement.COORDINATOR,
        "looked up by token hash (a unique key other than the user); coordinator-only writes",
    ),
    "idempotency_keys": TablePlacement(
        Placement.COORDINATOR,
        "written in the same transaction as the request's trip write, so such a request "
        "commits on the coordinator and one worker (2PC), never more; cleanup claims expired "
        "keys FOR UPDATE SKIP LOCKED, which distributed tables refuse without a trip",
    ),
    "rate_limit_counters": TablePlacement(
        Placement.COORDINATOR,
        "one small upsert per limited request in its own transaction: a coordinator-only "
        "commit, no hop to a worker; cleanup uses FOR UPDATE SKIP LOCKED across keys",
    ),
    "outbox_messages": TablePlacement(
        Placement.COORDINATOR,
        "workers claim the next mail FOR UPDATE SKIP LOCKED across all rows, which only a "
        "non-distributed table allows; queued beside a trip write it costs a 2PC with its worker",
    ),
    "alembic_version": TablePlacement(
        Placement.PLAIN, "the migrations' bookkeeping, read by the app at start-up only"
    ),
}

# Citus wants each distributed table's unique keys to contain its distribution column, and
# foreign keys between distributed tables to include it: the schema is shaped that way.
_DISTRIBUTION_COLUMN = {"trips": "id"}


def citus_installed(connection: Connection) -> bool:
    """Whether this database has the citus extension (a Citus coordinator)."""
    return bool(
        connection.execute(text("SELECT 1 FROM pg_extension WHERE extname = 'citus'")).first()
    )


_ON_CITUS: "WeakKeyDictionary[Engine, bool]" = WeakKeyDictionary()


def on_citus(session: Session) -> bool:
    """Whether the session's database is a Citus coordinator; asked once per engine."""
    bind: Any = session.get_bind()
    engine: Engine = bind.engine if isinstance(bind, Connection) else bind
    known = _ON_CITUS.get(engine)
    if known is None:
        known = _ON_CITUS[engine] = citus_installed(session.connection())
    return known


def _placed(connection: Connection) -> dict[str, str]:
    """Each public table Citus already manages: its kind ('h' hash, 'n' reference/local)."""
    rows = connection.execute(
        text(
            "SELECT logicalrelid::regclass::text, partmethod, repmodel FROM pg_dist_partition "
            "JOIN pg_class ON pg_class.oid = logicalrelid "
            "WHERE relnamespace = 'public'::regnamespace"
        )
    ).all()
    return {name: method for name, method, _model in rows}


def _public_tables(connection: Connection) -> list[str]:
    rows = connection.execute(
        text(
            "SELECT relname FROM pg_class WHERE relnamespace = 'public'::regnamespace "
            "AND relkind IN ('r', 'p') ORDER BY relname"
        )
    ).all()
    return [name for (name,) in rows]


def _foreign_keys(connection: Connection) -> list[tuple[str, str, str]]:
    rows = connection.execute(
        text(
            "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) "
            "FROM pg_constraint WHERE contype = 'f' "
            "AND connamespace = 'public'::regnamespace ORDER BY 1, 2"
        )
    ).all()
    return [(table, name, definition) for table, name, definition in rows]


def unplaced_tables(table_names: list[str]) -> list[str]:
    """The tables PLACEMENTS does not name (a new table must be placed deliberately)."""
    return sorted(set(table_names) - set(PLACEMENTS))


def distribute(connection: Connection) -> list[str]:
    """Place every table as PLACEMENTS says, on a Citus coordinator; returns the statements
    it ran (none without Citus, none when everything is placed already).

    Citus converts a table only while no foreign key ties it to a table of another kind, so
    the foreign keys are dropped first and added back once every table is placed, all in one
    transaction: a failure leaves the schema as it was.
    """
    if not citus_installed(connection):
        return []
    tables = _public_tables(connection)
    unknown = unplaced_tables(tables)
    if unknown:
        # Not the app's (a test checks that every model table is in PLACEMENTS): left as is.
        logger.warning("no Citus placement for %s: left where they are", unknown)
        tables = [name for name in tables if name in PLACEMENTS]
    placed = _placed(connection)
    pending = [
        name
        for name in tables
        if PLACEMENTS[name].placement is not Placement.PLAIN and name not in placed
    ]
    if not pending:
        return []
    ran: list[str] = []

    def run(statement: str) -> None:
        connection.execute(text(statement))
        ran.append(statement)

    # Foreign keys to reference and coordinator tables need one connection per node.
    run("SET LOCAL citus.multi_shard_modify_mode TO 'sequential'")
    foreign_keys = [key for key in _foreign_keys(connection) if key[0] in PLACEMENTS]
    for table, name, _definition in foreign_keys:
        run(f'ALTER TABLE "{table}" DROP CONSTRAINT "{name}"')
    # Reference tables first: distributed and coordinator tables point at them.
    by_kind = {kind: [t for t in pending if PLACEMENTS[t].placement is kind] for kind in Placement}
    for table in by_kind[Placement.REFERENCE]:
        run(f"SELECT create_reference_table('{table}')")
    trip_tables = sorted(by_kind[Placement.BY_TRIP], key=lambda table: table != "trips")
    for table in trip_tables:
        column = _DISTRIBUTION_COLUMN.get(table, "trip_id")
        colocate = "none" if table == "trips" else "trips"
        run(
            f"SELECT create_distributed_table('{table}', '{column}', colocate_with => '{colocate}')"
        )
    for table in by_kind[Placement.COORDINATOR]:
        run(f"SELECT citus_add_local_table_to_metadata('{table}')")
    for table, name, definition in foreign_keys:
        run(f'ALTER TABLE "{table}" ADD CONSTRAINT "{name}" {definition}')
    # The few statements that reach every shard (account deletion, cleanup, a user's trip
    # list) then use one connection per node, which lets the same transaction go on to write
    # users or a coordinator table; in parallel mode Citus refuses that. Sessions opened from
    # now on take it.
    name = connection.execute(text("SELECT current_database()")).scalar_one()
    database = connection.dialect.identifier_preparer.quote(name)
    run(f"ALTER DATABASE {database} SET citus.multi_shard_modify_mode TO 'sequential'")
    logger.info("placed %d tables on the Citus cluster", len(pending))
    return ran
