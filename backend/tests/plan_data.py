"""Realistic shapes for the query-plan tests, seeded with set-based SQL in the caller's
transaction (so they are rolled back with it).

The shapes follow bench/seed.py (deterministic ids, 14-day trips, items going round the days
and the unscheduled list with the app's order keys, expenses with a second revision now and
then, equal splits), but are written by INSERT ... SELECT over generate_series: 200,000 items
in a second or two rather than through the API. The big trip is a small part of each table,
as in production, so the planner's statistics look like production's.
"""

import uuid
from dataclasses import dataclass
from datetime import date

from sqlalchemy import Connection, text

from app.expenses.service import backfill_totals
from bench.seed import (
    ALPHABET,
    EXPENSE,
    ITEM,
    PARTICIPANT,
    REVISION,
    TRIP,
    TRIP_DAYS,
    USER,
    bench_uuid,
)

USERS = 5_000
SESSIONS_PER_USER = 2
TRIPS = 10_000  # trip 0 is the big one; every trip has three members and a guest
MY_TRIPS = 30  # trips 0..29 belong to the test's user
BIG_TRIP_ITEMS = 50_000
ITEMS_PER_TRIP = 10  # the others: ~100,000 items
BIG_TRIP_EXPENSES = 3_000
EXPENSES_PER_TRIP = 2
START = date(2027, 3, 1)  # the big trip's first day; trip t starts t % 300 days later
# Each kind of row has its own range of versions; the big trip's items are the latest.
ITEMS_FROM_VERSION = 100_000
HEAD_VERSION = ITEMS_FROM_VERSION + BIG_TRIP_ITEMS

# Ids are bench_uuid(kind, number): the kind of row (bench/seed.py's, then ours), a serial.
ID_KINDS = {
    "user": USER,
    "trip": TRIP,
    "participant": PARTICIPANT,
    "item": ITEM,
    "expense": EXPENSE,
    "revision": REVISION,
    "settlement": 7,
    "checklist": 8,
    "checklist_item": 9,
    "tombstone": 10,
}

_SETUP = (
    """
    CREATE FUNCTION pg_temp.plan_id(kind integer, number bigint) RETURNS uuid
    LANGUAGE sql IMMUTABLE
    RETURN (lpad(to_hex(kind), 8, '0') || '-0000-4000-8000-' || lpad(to_hex(number), 12, '0'))
        ::uuid
    """,
    # Every trip: its people, first day, and how many items and expenses it has (and the
    # serial number of its first ones, which make their ids).
    """
    CREATE TEMPORARY TABLE plan_trips ON COMMIT DROP AS
    SELECT t, pg_temp.plan_id(:trip, t) AS id,
           CASE WHEN t < :my_trips THEN CAST(:me AS uuid)
                ELSE pg_temp.plan_id(:user, t % :users + 1) END AS owner_id,
           pg_temp.plan_id(:user, (t + 1) % :users + 1) AS editor_id,
           pg_temp.plan_id(:user, (t + 2) % :users + 1) AS viewer_id,
           CAST(:start AS date) + t % 300 AS start_date,
           CASE WHEN t = 0 THEN :big_trip_items ELSE :items_per_trip END AS items,
           CASE WHEN t = 0 THEN 0
                ELSE :big_trip_items + (t - 1) * :items_per_trip END AS first_item,
           CASE WHEN t = 0 THEN :big_trip_expenses ELSE :expenses_per_trip END AS expenses,
           CASE WHEN t = 0 THEN 0
                ELSE :big_trip_expenses + (t - 1) * :expenses_per_trip END AS first_expense
    FROM generate_series(0, :trips - 1) AS t
    """,
    # Every revision of every expense: e numbers the expense overall, n within its trip; one
    # in five was edited once.
    """
    CREATE TEMPORARY TABLE plan_revisions ON COMMIT DROP AS
    SELECT trip.t, trip.id AS trip_id, trip.owner_id, trip.start_date, n, e, number,
           pg_temp.plan_id(:expense, e) AS expense_id,
           pg_temp.plan_id(:revision, e * 2 + number - 1) AS id,
           500 + (e * 7919 + number * 131) % 50000 AS amount
    FROM plan_trips AS trip,
         generate_series(0, trip.expenses - 1) AS n,
         LATERAL (SELECT trip.first_expense + n AS e) AS serial,
         generate_series(1, CASE WHEN n % 5 = 0 THEN 2 ELSE 1 END) AS number
    """,
)

_STATEMENTS = (
    """
    INSERT INTO users (id, email, full_name, password_hash, is_active, email_verified_at)
    SELECT pg_temp.plan_id(:user, u), 'plan' || u || '@example.com', 'Plan User ' || u,
           :password_hash, true, now()
    FROM generate_series(1, :users) AS u
    """,
    # Two signed-in devices each: every request's authentication reads this table.
    """
    INSERT INTO user_sessions (id, user_id, device_label, refresh_key, refresh_hash, expires_at)
    SELECT gen_random_uuid(), pg_temp.plan_id(:user, u), 'Device ' || d, gen_random_uuid(),
           sha256(convert_to(u || '/' || d, 'UTF8')), now() + INTERVAL '30 days'
    FROM generate_series(1, :users) AS u, generate_series(1, :sessions_per_user) AS d
    """,
    """
    INSERT INTO trips (id, name, destination, start_date, end_date, timezone, description,
                       base_currency, hide_amounts_from_viewers, version, head_version,
                       created_by, created_at, updated_at)
    SELECT id, 'Trip ' || t, 'City ' || t % 300, start_date, start_date + :trip_days - 1,
           'Europe/Paris', '', 'EUR', false, 1, :head_version, owner_id,
           TIMESTAMPTZ '2026-01-01' + t * INTERVAL '1 minute',
           TIMESTAMPTZ '2026-01-01' + t * INTERVAL '1 minute'
    FROM plan_trips
    """,
    """
    INSERT INTO trip_members (trip_id, user_id, role, version)
    SELECT id, member.user_id, member.role, 1
    FROM plan_trips,
         LATERAL (VALUES (owner_id, 'owner'), (editor_id, 'editor'), (viewer_id, 'viewer'))
                 AS member (user_id, role)
    """,
    # Each member's participant (numbers 8t, 8t + 1, 8t + 2; the owner's first), and a guest.
    """
    INSERT INTO trip_participants (trip_id, id, user_id, name, version)
    SELECT id, pg_temp.plan_id(:participant, t * 8 + k),
           (ARRAY[owner_id, editor_id, viewer_id, NULL])[k + 1],
           CASE WHEN k = 3 THEN 'Guest ' || t ELSE '' END, 1
    FROM plan_trips, generate_series(0, 3) AS k
    """,
    # Round the trip's days, then one more slot for the unscheduled items (NULL day).
    """
    INSERT INTO itinerary_items (trip_id, id, kind, title, notes, day, order_key,
                                 place_name, place_address, booking_reference, created_by,
                                 version)
    SELECT id, pg_temp.plan_id(:item, first_item + n),
           (ARRAY['activity', 'lodging', 'transport', 'meal', 'note'])[n % 5 + 1],
           'Item ' || n, 'Notes for item ' || n,
           CASE WHEN slot < :trip_days THEN start_date + slot END,
           substr(:alphabet, place / 3844 % 62 + 1, 1)
               || substr(:alphabet, place / 62 % 62 + 1, 1)
               || substr(:alphabet, place % 62 + 1, 1) || '1',
           CASE WHEN n % 5 = 1 THEN 'Hotel ' || n % 97 END,
           CASE WHEN n % 5 = 1 THEN 'Rue ' || n % 50 END,
           '', owner_id, :items_from_version + n
    FROM plan_trips, generate_series(0, items - 1) AS n,
         LATERAL (SELECT n % (:trip_days + 1) AS slot, n / (:trip_days + 1) AS place) AS spot
    """,
    # The owner takes part in every lodging.
    """
    INSERT INTO itinerary_item_participants (trip_id, item_id, participant_id)
    SELECT id, pg_temp.plan_id(:item, first_item + n), pg_temp.plan_id(:participant, t * 8)
    FROM plan_trips, generate_series(0, items - 1) AS n
    WHERE n % 5 = 1
    """,
    """
    INSERT INTO trip_expenses (trip_id, id, created_by, version)
    SELECT trip_id, expense_id, owner_id, 1000 + n FROM plan_revisions WHERE number = 1
    """,
    """
    INSERT INTO trip_expense_revisions (trip_id, id, expense_id, number, action, title,
                                        category, notes, amount_minor, currency,
                                        exchange_rate, rate_source, base_amount_minor,
                                        spent_on, split_mode, actor_id)
    SELECT trip_id, id, expense_id, number,
           CASE number WHEN 1 THEN 'created' ELSE 'updated' END, 'Expense ' || n, 'food', '',
           amount, 'EUR', 1, 'base', amount, start_date + n % :trip_days, 'equal', owner_id
    FROM plan_revisions
    """,
    """
    INSERT INTO trip_expense_payers (trip_id, revision_id, participant_id, amount_minor,
                                     base_amount_minor)
    SELECT trip_id, id, pg_temp.plan_id(:participant, t * 8 + n % 4), amount, amount
    FROM plan_revisions
    """,
    # Equal splits between the four participants; the first ones get the remainder.
    """
    INSERT INTO trip_expense_splits (trip_id, revision_id, participant_id, amount_minor,
                                     base_amount_minor)
    SELECT trip_id, id, pg_temp.plan_id(:participant, t * 8 + k), share, share
    FROM plan_revisions, generate_series(0, 3) AS k,
         LATERAL (SELECT amount / 4 + CASE WHEN k < amount % 4 THEN 1 ELSE 0 END AS share)
                 AS shares
    """,
    # The expense → current revision reference is not deferrable: set once both exist.
    """
    UPDATE trip_expenses AS expense SET current_revision_id = latest.id
    FROM (SELECT DISTINCT ON (trip_id, expense_id) trip_id, expense_id, id
          FROM plan_revisions ORDER BY trip_id, expense_id, number DESC) AS latest
    WHERE expense.trip_id = latest.trip_id AND expense.id = latest.expense_id
    """,
    """
    INSERT INTO trip_settlements (trip_id, id, from_participant_id, to_participant_id,
                                  amount_minor, currency, exchange_rate, rate_source,
                                  base_amount_minor,
                                  settled_on, note, created_by, version)
    SELECT id, pg_temp.plan_id(:settlement, t), pg_temp.plan_id(:participant, t * 8 + 3),
           pg_temp.plan_id(:participant, t * 8), 1000, 'EUR', 1, 'base', 1000, start_date, '',
           owner_id, 5000
    FROM plan_trips
    """,
    """
    INSERT INTO checklists (trip_id, id, kind, title, created_by, version)
    SELECT id, pg_temp.plan_id(:checklist, t), 'packing', 'Bags', owner_id, 6000
    FROM plan_trips
    """,
    """
    INSERT INTO checklist_items (trip_id, id, checklist_id, text, done, private, created_by,
                                 version)
    SELECT id, pg_temp.plan_id(:checklist_item, t), pg_temp.plan_id(:checklist, t), 'Socks',
           false, false, owner_id, 7000
    FROM plan_trips
    """,
    """
    INSERT INTO sync_tombstones (trip_id, version, entity, entity_id)
    SELECT id, 8000 + d, 'item', pg_temp.plan_id(:tombstone, t * 2 + d)
    FROM plan_trips, generate_series(0, 1) AS d
    """,
)

TABLES = (
    "users",
    "user_sessions",
    "trips",
    "trip_members",
    "trip_participants",
    "itinerary_items",
    "itinerary_item_participants",
    "trip_expenses",
    "trip_expense_revisions",
    "trip_expense_payers",
    "trip_expense_splits",
    "trip_settlements",
    "trip_participant_totals",
    "checklists",
    "checklist_items",
    "sync_tombstones",
)


@dataclass(frozen=True)
class Seeded:
    big_trip_id: uuid.UUID
    head_version: int


def seed(connection: Connection, *, me: uuid.UUID, password_hash: str) -> Seeded:
    """Seed every table the trip routes read, then ANALYZE them (all in this transaction).

    `me` (an existing user) owns the big trip and the next MY_TRIPS - 1.
    """
    parameters = {
        "me": str(me),
        "password_hash": password_hash,
        "alphabet": ALPHABET,
        "users": USERS,
        "sessions_per_user": SESSIONS_PER_USER,
        "trips": TRIPS,
        "my_trips": MY_TRIPS,
        "big_trip_items": BIG_TRIP_ITEMS,
        "items_per_trip": ITEMS_PER_TRIP,
        "big_trip_expenses": BIG_TRIP_EXPENSES,
        "expenses_per_trip": EXPENSES_PER_TRIP,
        "trip_days": TRIP_DAYS,
        "start": START,
        "items_from_version": ITEMS_FROM_VERSION,
        "head_version": HEAD_VERSION,
        **ID_KINDS,
    }
    # Seeding is no request: the API's statement timeout does not apply (on a busy machine).
    timeout = connection.exec_driver_sql("SHOW statement_timeout").scalar()
    connection.exec_driver_sql("SET LOCAL statement_timeout = 0")
    for statement in _SETUP:
        connection.execute(text(statement), parameters)
    # The rows are consistent by construction: skipping the foreign-key triggers (which
    # only a superuser may) makes seeding about twice as fast.
    superuser = connection.exec_driver_sql("SHOW is_superuser").scalar() == "on"
    if superuser:
        connection.exec_driver_sql("SET LOCAL session_replication_role = replica")
    for statement in _STATEMENTS:
        connection.execute(text(statement), parameters)
    # The running totals balances read, filled from the ledger as `make bench` seeds them.
    connection.execute(backfill_totals())
    if superuser:
        connection.exec_driver_sql("SET LOCAL session_replication_role = origin")
    connection.execute(
        text("SELECT set_config('statement_timeout', :timeout, true)"), {"timeout": timeout}
    )
    for table in TABLES:
        connection.exec_driver_sql(f"ANALYZE {table}")
    return Seeded(big_trip_id=bench_uuid(TRIP, 0), head_version=HEAD_VERSION)
