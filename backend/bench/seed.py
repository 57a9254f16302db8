"""Seed the benchmark data set with COPY, straight into the tables (not through the API).

At BENCH_SCALE=1: 1,000 users, 10,000 trips of 14 days, 1,000,000 itinerary items (two trips
with 50,000 each, the rest spread evenly), 200,000 expenses (one trip with 10,000) with ~20 %
edited once (two revisions), one payer and equal splits between every participant of the
trip, 10 % of them in USD at a frozen rate; the participants' running totals are then filled
from that ledger, as the API's writes would have kept them. Sizes scale linearly with
BENCH_SCALE, with small floors so a tiny scale still has every shape. Ids are deterministic;
a `bench_marker` row records the scale and what the harness needs (the bench user, its
trips), so a second run reuses the data.
"""

import io
import json
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any
from zoneinfo import ZoneInfo

import psycopg2
from psycopg2 import extensions
from sqlalchemy import ClauseElement
from sqlalchemy.dialects.postgresql.psycopg2 import PGDialect_psycopg2

from app.expenses.service import backfill_totals

ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
PASSWORD = "bench-password-1"  # noqa: S105 (every seeded user's, on a throwaway database)
TIMEZONE = "Europe/Paris"
TRIP_DAYS = 14
KINDS = ("activity", "lodging", "transport", "meal", "note")
USD_RATE = Decimal("0.92")
CHUNK_ROWS = 50_000

# Trip numbers with a role in the benchmark; all belong to the bench user (user 0).
BIG_TRIP, BIG_TRIP_2, BALANCE_TRIP = 0, 1, 2
SPECIAL_TRIPS = 3
OWN_TRIPS = 8  # trips 3-7 are ordinary trips of the bench user, whatever the scale


def bench_uuid(kind: int, n: int) -> uuid.UUID:
    """A deterministic, version-4-shaped id: the kind of row, then its number."""
    return uuid.UUID(f"{kind:08x}-0000-4000-8000-{n:012x}")


USER, TRIP, PARTICIPANT, ITEM, EXPENSE, REVISION = 1, 2, 3, 4, 5, 6


def order_key(n: int) -> str:
    """The n-th key of a day: three base-62 digits and a final 1, so never a trailing 0."""
    digits = ""
    for _ in range(3):
        n, digit = divmod(n, 62)
        digits = ALPHABET[digit] + digits
    return digits + "1"


@dataclass(frozen=True)
class Sizes:
    scale: float
    users: int
    trips: int
    items: int
    big_trip_items: int
    expenses: int
    balance_trip_expenses: int

    @classmethod
    def of(cls, scale: float) -> "Sizes":
        def scaled(full: int, floor: int) -> int:
            return max(floor, round(full * scale))

        return cls(
            scale=scale,
            users=scaled(1_000, 20),
            trips=scaled(10_000, 20),
            items=scaled(1_000_000, 2_000),
            big_trip_items=scaled(50_000, 500),
            expenses=scaled(200_000, 400),
            balance_trip_expenses=scaled(10_000, 100),
        )


@dataclass
class Seeded:
    """What the harness needs to know about the data, stored in the marker row."""

    sizes: dict[str, Any]
    user_id: str
    user_email: str
    user_emails: list[str]
    big_trip_id: str
    big_trip_items: int
    balance_trip_id: str
    typical_trip_id: str
    typical_trip_day: str
    my_trip_ids: list[str]
    seconds: float = 0.0
    counts: dict[str, int] = field(default_factory=dict)


def _copy(cursor: extensions.cursor, table: str, columns: str, rows: Iterable[str]) -> int:
    """COPY tab-separated lines in chunks (\\N is NULL); returns the number of rows."""
    total, buffer, count = 0, io.StringIO(), 0
    for line in rows:
        buffer.write(line)
        count += 1
        if count == CHUNK_ROWS:
            buffer.seek(0)
            cursor.copy_expert(f"COPY {table} ({columns}) FROM STDIN", buffer)
            total, buffer, count = total + count, io.StringIO(), 0
    if count:
        buffer.seek(0)
        cursor.copy_expert(f"COPY {table} ({columns}) FROM STDIN", buffer)
        total += count
    return total


def _sql(statement: ClauseElement) -> str:
    """A SQLAlchemy statement as PostgreSQL text, values inlined, for a psycopg2 cursor."""
    compiled = statement.compile(
        dialect=PGDialect_psycopg2(),  # type: ignore[no-untyped-call]
        compile_kwargs={"literal_binds": True},
    )
    return str(compiled)


def _split_equal(amount: int, participant_ids: list[uuid.UUID]) -> list[int]:
    """Largest remainder with equal weights: the first ones (by id) get the extra units."""
    base, extra = divmod(amount, len(participant_ids))
    return [base + (1 if index < extra else 0) for index in range(len(participant_ids))]


class _Plan:
    """Which trips, members, participants and counts the data set has."""

    def __init__(self, sizes: Sizes) -> None:
        self.sizes = sizes
        self.start = date(2027, 3, 1)
        self.members: list[list[tuple[int, str]]] = []  # per trip: (user number, role)
        for trip in range(sizes.trips):
            owner = 0 if trip < OWN_TRIPS else trip % sizes.users
            people = [(owner, "owner")]
            for offset, role in ((7 * trip + 1, "editor"), (13 * trip + 2, "viewer")):
                user = offset % sizes.users
                if all(user != other for other, _ in people):
                    people.append((user, role))
            self.members.append(people)
        rest = sizes.items - 2 * sizes.big_trip_items
        others = sizes.trips - 2
        self.items = [sizes.big_trip_items, sizes.big_trip_items] + [
            rest // others + (1 if n < rest % others else 0) for n in range(others)
        ]
        rest = sizes.expenses - sizes.balance_trip_expenses
        others = sizes.trips - 1
        self.expenses = [0] * sizes.trips
        self.expenses[BALANCE_TRIP] = sizes.balance_trip_expenses
        other_trips = [trip for trip in range(sizes.trips) if trip != BALANCE_TRIP]
        for index, trip in enumerate(other_trips):
            self.expenses[trip] = rest // others + (1 if index < rest % others else 0)

    def trip_start(self, trip: int) -> date:
        return self.start + timedelta(days=trip % 300)

    def participants(self, trip: int) -> list[uuid.UUID]:
        """Members' participants, then one guest; sorted by id like the ledger's tie-break."""
        count = len(self.members[trip]) + 1
        return sorted(bench_uuid(PARTICIPANT, trip * 8 + n) for n in range(count))


def _users(sizes: Sizes, password_hash: str) -> Iterator[str]:
    for n in range(sizes.users):
        yield (
            f"{bench_uuid(USER, n)}\tbench{n}@example.com\tBench User {n}\t{password_hash}"
            "\tt\t2026-01-01 00:00:00+00\n"
        )


def _items(plan: _Plan, versions: list[int]) -> Iterator[str]:
    zone = ZoneInfo(TIMEZONE)
    utc_offsets: dict[date, timedelta] = {}
    serial = 0
    for trip in range(plan.sizes.trips):
        trip_id = bench_uuid(TRIP, trip)
        start = plan.trip_start(trip)
        owner = bench_uuid(USER, plan.members[trip][0][0])
        per_day = [0] * (TRIP_DAYS + 1)
        for n in range(plan.items[trip]):
            slot = n % (TRIP_DAYS + 1)  # the last slot: unscheduled
            key = order_key(per_day[slot])
            per_day[slot] += 1
            kind = KINDS[n % len(KINDS)]
            day = None if slot == TRIP_DAYS else start + timedelta(days=slot)
            times = "\\N\t\\N\t\\N\t\\N\t\\N\t\\N"
            if day is not None and kind in ("activity", "meal", "transport"):
                offset = utc_offsets.get(day)
                if offset is None:
                    noon = datetime(day.year, day.month, day.day, 12, tzinfo=zone)
                    offset = utc_offsets[day] = noon.utcoffset() or timedelta()
                local = datetime(day.year, day.month, day.day, 8) + timedelta(minutes=n % 720)
                end = local + timedelta(minutes=90)
                times = (
                    f"{local.isoformat()}\t{TIMEZONE}\t{(local - offset).isoformat()}+00"
                    f"\t{end.isoformat()}\t{TIMEZONE}\t{(end - offset).isoformat()}+00"
                )
            place = "\\N\t\\N\t\\N\t\\N\t\\N"
            if kind == "lodging":
                place = f"Hotel {n % 97}\tRue {n % 50} 1\t48.85\t2.35\t\\N"
            versions[trip] += 1
            day_text = "\\N" if day is None else day.isoformat()
            yield (
                f"{trip_id}\t{bench_uuid(ITEM, serial)}\t{kind}\t{kind.title()} {n}"
                f"\tNotes for item {n}\t{day_text}\t{key}"
                f"\t{times}\t{place}\t\t{owner}\t{versions[trip]}\n"
            )
            serial += 1


def _item_participants(plan: _Plan) -> Iterator[str]:
    serial = 0
    for trip in range(plan.sizes.trips):
        trip_id = bench_uuid(TRIP, trip)
        participant = plan.participants(trip)[0]
        for n in range(plan.items[trip]):
            if KINDS[n % len(KINDS)] == "lodging":
                yield f"{trip_id}\t{bench_uuid(ITEM, serial)}\t{participant}\n"
            serial += 1


@dataclass
class _Ledger:
    expenses: list[str] = field(default_factory=list)
    revisions: list[str] = field(default_factory=list)
    payers: list[str] = field(default_factory=list)
    splits: list[str] = field(default_factory=list)
    current: list[str] = field(default_factory=list)


def _ledger_of(plan: _Plan, trip: int, first_serial: int, versions: list[int]) -> _Ledger:
    ledger = _Ledger()
    trip_id = bench_uuid(TRIP, trip)
    owner = bench_uuid(USER, plan.members[trip][0][0])
    participants = plan.participants(trip)
    start = plan.trip_start(trip)
    for n in range(plan.expenses[trip]):
        serial = first_serial + n
        expense_id = bench_uuid(EXPENSE, serial)
        versions[trip] += 1
        ledger.expenses.append(f"{trip_id}\t{expense_id}\t\\N\t{owner}\t{versions[trip]}\n")
        numbers = 2 if n % 5 == 0 else 1
        for number in range(1, numbers + 1):
            revision_id = bench_uuid(REVISION, serial * 2 + number - 1)
            amount = 500 + (serial * 7919 + number * 131) % 50_000
            usd = n % 10 == 3
            currency, rate, source = (
                ("USD", USD_RATE, "client") if usd else ("EUR", Decimal(1), "base")
            )
            base = int((amount * rate).quantize(Decimal(1), rounding=ROUND_HALF_EVEN))
            action = "created" if number == 1 else "updated"
            spent_on = start + timedelta(days=n % TRIP_DAYS)
            ledger.revisions.append(
                f"{trip_id}\t{revision_id}\t{expense_id}\t{number}\t{action}\tExpense {n}"
                f"\tfood\t\t{amount}\t{currency}\t{rate}\t{source}\t{base}\t{spent_on}\tequal"
                f"\t{owner}\n"
            )
            payer = participants[n % len(participants)]
            ledger.payers.append(f"{trip_id}\t{revision_id}\t{payer}\t{amount}\t{base}\n")
            shares = zip(
                participants,
                _split_equal(amount, participants),
                _split_equal(base, participants),
                strict=True,
            )
            for participant, share, base_share in shares:
                ledger.splits.append(
                    f"{trip_id}\t{revision_id}\t{participant}\t\\N\t\\N\t{share}\t{base_share}\n"
                )
        ledger.current.append(f"{trip_id}\t{expense_id}\t{revision_id}\n")
    return ledger


def _seed(cursor: extensions.cursor, sizes: Sizes, password_hash: str) -> dict[str, int]:
    plan = _Plan(sizes)
    counts: dict[str, int] = {}
    counts["users"] = _copy(
        cursor,
        "users",
        "id, email, full_name, password_hash, is_active, email_verified_at",
        _users(sizes, password_hash),
    )
    versions = [1] * sizes.trips
    trips = (
        f"{bench_uuid(TRIP, trip)}\tTrip {trip}\tCity {trip % 300}\t{plan.trip_start(trip)}"
        f"\t{plan.trip_start(trip) + timedelta(days=TRIP_DAYS - 1)}\t{TIMEZONE}\t\tEUR\tf\t1"
        f"\t{bench_uuid(USER, plan.members[trip][0][0])}\n"
        for trip in range(sizes.trips)
    )
    counts["trips"] = _copy(
        cursor,
        "trips",
        "id, name, destination, start_date, end_date, timezone, description, base_currency,"
        " hide_amounts_from_viewers, version, created_by",
        trips,
    )
    counts["trip_members"] = _copy(
        cursor,
        "trip_members",
        "trip_id, user_id, role, version",
        (
            f"{bench_uuid(TRIP, trip)}\t{bench_uuid(USER, user)}\t{role}\t1\n"
            for trip in range(sizes.trips)
            for user, role in plan.members[trip]
        ),
    )

    def participants() -> Iterator[str]:
        for trip in range(sizes.trips):
            people = plan.members[trip]
            for n, (user, _) in enumerate(people):
                participant = bench_uuid(PARTICIPANT, trip * 8 + n)
                yield f"{bench_uuid(TRIP, trip)}\t{participant}\t{bench_uuid(USER, user)}\t\t1\n"
            guest = bench_uuid(PARTICIPANT, trip * 8 + len(people))
            yield f"{bench_uuid(TRIP, trip)}\t{guest}\t\\N\tGuest {trip}\t1\n"

    counts["trip_participants"] = _copy(
        cursor, "trip_participants", "trip_id, id, user_id, name, version", participants()
    )
    counts["itinerary_items"] = _copy(
        cursor,
        "itinerary_items",
        "trip_id, id, kind, title, notes, day, order_key, start_local, start_timezone,"
        " start_utc, end_local, end_timezone, end_utc, place_name, place_address, latitude,"
        " longitude, place_external_id, booking_reference, created_by, version",
        _items(plan, versions),
    )
    counts["itinerary_item_participants"] = _copy(
        cursor,
        "itinerary_item_participants",
        "trip_id, item_id, participant_id",
        _item_participants(plan),
    )
    for name in ("trip_expenses", "trip_expense_revisions", "trip_expense_payers"):
        counts[name] = 0
    counts["trip_expense_splits"] = 0
    cursor.execute(
        "CREATE TEMP TABLE bench_current (trip_id uuid, expense_id uuid, revision_id uuid)"
        " ON COMMIT DROP"
    )
    serial, batch = 0, _Ledger()
    for trip in range(sizes.trips):
        ledger = _ledger_of(plan, trip, serial, versions)
        serial += plan.expenses[trip]
        for name in ("expenses", "revisions", "payers", "splits", "current"):
            getattr(batch, name).extend(getattr(ledger, name))
        if len(batch.splits) >= CHUNK_ROWS or trip == sizes.trips - 1:
            counts["trip_expenses"] += _copy(
                cursor,
                "trip_expenses",
                "trip_id, id, current_revision_id, created_by, version",
                batch.expenses,
            )
            counts["trip_expense_revisions"] += _copy(
                cursor,
                "trip_expense_revisions",
                "trip_id, id, expense_id, number, action, title, category, notes,"
                " amount_minor, currency, exchange_rate, rate_source, base_amount_minor, spent_on,"
                " split_mode, actor_id",
                batch.revisions,
            )
            counts["trip_expense_payers"] += _copy(
                cursor,
                "trip_expense_payers",
                "trip_id, revision_id, participant_id, amount_minor, base_amount_minor",
                batch.payers,
            )
            counts["trip_expense_splits"] += _copy(
                cursor,
                "trip_expense_splits",
                "trip_id, revision_id, participant_id, shares, percent, amount_minor,"
                " base_amount_minor",
                batch.splits,
            )
            _copy(cursor, "bench_current", "trip_id, expense_id, revision_id", batch.current)
            batch = _Ledger()
    # The expense → current revision reference is not deferrable: set it once both exist.
    cursor.execute(
        "UPDATE trip_expenses e SET current_revision_id = c.revision_id FROM bench_current c"
        " WHERE e.trip_id = c.trip_id AND e.id = c.expense_id"
    )
    # What the API's writes would have kept: the running totals balances read.
    cursor.execute(_sql(backfill_totals()))
    counts["trip_participant_totals"] = cursor.rowcount
    # Every row's version is at most the trip's head: the sync feed sees a consistent clock.
    cursor.execute("CREATE TEMP TABLE bench_heads (id uuid, head bigint) ON COMMIT DROP")
    _copy(
        cursor,
        "bench_heads",
        "id, head",
        (f"{bench_uuid(TRIP, trip)}\t{versions[trip]}\n" for trip in range(sizes.trips)),
    )
    cursor.execute("UPDATE trips t SET head_version = h.head FROM bench_heads h WHERE t.id = h.id")
    return counts


MARKER = "bench_marker"


def ensure_seeded(url: str, scale: float, password_hash: str) -> Seeded:
    """The seeded data set at this scale: found through the marker row, else created."""
    sizes = Sizes.of(scale)
    connection = psycopg2.connect(url)
    try:
        with connection, connection.cursor() as cursor:
            cursor.execute(
                f"CREATE TABLE IF NOT EXISTS {MARKER} (scale float PRIMARY KEY, meta jsonb)"
            )
            cursor.execute(f"SELECT scale, meta FROM {MARKER}")  # noqa: S608 (a constant)
            found = cursor.fetchall()
        if found:
            if found[0][0] != scale:
                raise SystemExit(
                    f"this database holds the bench data at BENCH_SCALE={found[0][0]}, not "
                    f"{scale}: use another database (the embedded one is per scale)"
                )
            print(f"reusing the data seeded at BENCH_SCALE={scale}")
            return Seeded(**found[0][1])
        started = time.perf_counter()
        with connection, connection.cursor() as cursor:
            cursor.execute("SET LOCAL synchronous_commit = off")
            counts = _seed(cursor, sizes, password_hash)
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute("VACUUM ANALYZE")
        connection.autocommit = False
        plan = _Plan(sizes)
        mine = [trip for trip in range(sizes.trips) if plan.members[trip][0][0] == 0]
        typical = next(trip for trip in mine if trip >= SPECIAL_TRIPS)
        seeded = Seeded(
            sizes=asdict(sizes),
            user_id=str(bench_uuid(USER, 0)),
            user_email="bench0@example.com",
            user_emails=[f"bench{n}@example.com" for n in range(sizes.users)],
            big_trip_id=str(bench_uuid(TRIP, BIG_TRIP)),
            big_trip_items=sizes.big_trip_items,
            balance_trip_id=str(bench_uuid(TRIP, BALANCE_TRIP)),
            typical_trip_id=str(bench_uuid(TRIP, typical)),
            typical_trip_day=(plan.trip_start(typical) + timedelta(days=2)).isoformat(),
            my_trip_ids=[str(bench_uuid(TRIP, trip)) for trip in mine if trip >= SPECIAL_TRIPS],
            seconds=round(time.perf_counter() - started, 1),
            counts=counts,
        )
        with connection, connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {MARKER} (scale, meta) VALUES (%s, %s)",  # noqa: S608 (a constant)
                (scale, json.dumps(asdict(seeded))),
            )
        print(f"seeded {counts} in {seeded.seconds} s")
        return seeded
    finally:
        connection.close()
