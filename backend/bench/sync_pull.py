"""Benchmark the sync feed on a trip with 100,000 rows: pull 10,000 changes from scratch, and
one change from a recent version, through a real uvicorn process on 127.0.0.1.

    make bench-sync            # embedded PostgreSQL unless BENCH_DATABASE_URL is set

Seeding uses COPY and is reused when the trip is already there. Prints a table and writes
bench-results/sync.json.
"""

import io
import json
import os
import statistics
import tempfile
import time
import urllib.request
import uuid
from typing import Any

import psycopg2

from alembic import command
from app.core.config import with_psycopg2
from app.core.db import REPO_DIR, alembic_config
from bench.api_process import running_api
from bench.tokens import signed_in
from devtools.local_postgres import LocalPostgres, free_port

ROWS = 100_000
TRIP_ID = uuid.UUID("00000000-0000-4000-8000-00000000b001")
USER_ID = uuid.UUID("00000000-0000-4000-8000-00000000b002")
SECRET = "bench-secret-bench-secret-bench-secret-0123"  # noqa: S105 (a throwaway server's)
ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def _key(n: int) -> str:
    digits = ""
    for _ in range(3):
        n, digit = divmod(n, 62)
        digits = ALPHABET[digit] + digits
    return digits + "1"  # never ends in "0", as order keys must not


def seed(url: str) -> None:
    connection = psycopg2.connect(url)
    with connection, connection.cursor() as cursor:
        cursor.execute("SELECT head_version FROM trips WHERE id = %s", (str(TRIP_ID),))
        if cursor.fetchone() is not None:
            print("reusing the seeded trip")
            return
        started = time.perf_counter()
        cursor.execute(
            "INSERT INTO users (id, email, full_name, password_hash, is_active, email_verified_at)"
            " VALUES (%s, 'bench@example.com', 'Bench', 'x', true, now())",
            (str(USER_ID),),
        )
        cursor.execute(
            "INSERT INTO trips (id, name, destination, start_date, end_date, timezone,"
            " description, base_currency, hide_amounts_from_viewers, version, head_version)"
            " VALUES (%s, 'Bench', '', '2027-01-01', '2027-12-31', 'UTC', '', 'EUR', false, 1, %s)",
            (str(TRIP_ID), ROWS + 1),
        )
        cursor.execute(
            "INSERT INTO trip_members (trip_id, user_id, role, version)"
            " VALUES (%s, %s, 'owner', 1)",
            (str(TRIP_ID), str(USER_ID)),
        )
        rows = io.StringIO()
        for n in range(ROWS):
            rows.write(f"{TRIP_ID}\t{uuid.uuid4()}\tactivity\tItem {n}\t\t\t{_key(n)}\t{n + 2}\n")
        rows.seek(0)
        cursor.copy_expert(
            "COPY itinerary_items (trip_id, id, kind, title, notes, booking_reference, order_key,"
            " version) FROM STDIN",
            rows,
        )
        cursor.execute("ANALYZE itinerary_items")
        print(f"seeded {ROWS} items in {time.perf_counter() - started:.1f} s")
    connection.close()


def _get(base: str, path: str, token: str) -> tuple[float, Any]:
    request = urllib.request.Request(  # noqa: S310 (http://127.0.0.1 only)
        base + path, headers={"Authorization": f"Bearer {token}"}
    )
    started = time.perf_counter()
    with urllib.request.urlopen(request, timeout=120) as response:  # noqa: S310 (127.0.0.1)
        body = json.loads(response.read())
    return time.perf_counter() - started, body


def _timed(runs: int, action: Any) -> dict[str, float]:
    seconds = sorted(action() for _ in range(runs))
    return {
        "runs": runs,
        "median_ms": round(statistics.median(seconds) * 1000, 1),
        "p95_ms": round(seconds[max(0, int(len(seconds) * 0.95) - 1)] * 1000, 1),
    }


def run(url: str) -> dict[str, Any]:
    command.upgrade(alembic_config(url), "head")
    seed(with_psycopg2(url).replace("postgresql+psycopg2://", "postgresql://"))
    with running_api(url, SECRET) as (base, _server):
        [token] = signed_in(with_psycopg2(url), [USER_ID], SECRET)
        changes = f"/trips/{TRIP_ID}/changes"

        def from_scratch() -> float:
            total, since, pulled = 0.0, 0, 0
            while pulled < 10_000:
                elapsed, page = _get(base, f"{changes}?since={since}&limit=1000", token)
                total += elapsed
                pulled += len(page["changes"])
                since = page["version"]
            return total

        latest = ROWS + 1

        def recent() -> float:
            elapsed, page = _get(base, f"{changes}?since={latest - 1}", token)
            assert len(page["changes"]) == 1, page
            return elapsed

        return {
            "rows_in_trip": ROWS,
            "pull_10000_changes_from_scratch": _timed(5, from_scratch),
            "pull_1_change_from_recent_version": _timed(50, recent),
        }


def main() -> None:
    url = os.environ.get("BENCH_DATABASE_URL")
    server = None
    if not url:
        data = REPO_DIR / ".data" / "bench-postgres"
        server = LocalPostgres(data, free_port(), durable=False)
        server.start()
        url = server.ensure_database("tripsync_bench")
    try:
        results = run(url)
    finally:
        if server is not None:
            server.stop()
    out = REPO_DIR / "bench-results"
    out.mkdir(exist_ok=True)
    (out / "sync.json").write_text(json.dumps(results, indent=2))
    print(f"\nSync feed, trip with {ROWS:,} rows, 1 uvicorn worker, {os.cpu_count()} cores")
    print("| scenario | runs | median ms | p95 ms |")
    print("|---|---|---|---|")
    for name, figures in results.items():
        if isinstance(figures, dict):
            print(f"| {name} | {figures['runs']} | {figures['median_ms']} | {figures['p95_ms']} |")


if __name__ == "__main__":
    tempfile.tempdir = None
    main()
