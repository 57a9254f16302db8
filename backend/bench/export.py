"""Measure the ledger export (`GET /trips/{id}/export?format=csv`) of a trip with 10,000
expenses: time, bytes, rows, and the memory it costs the server, through a real uvicorn
process on 127.0.0.1; then, in this process under tracemalloc, the same CSV consumed chunk by
chunk as it streams against the whole document held at once (the non-streamed baseline).

    make bench-export          # embedded PostgreSQL unless BENCH_DATABASE_URL is set

The trip is seeded with set-based SQL (generate_series), straight into the tables, and
reused when it is already there. Prints a table and writes bench-results/export.json.
"""

import json
import os
import statistics
import tempfile
import time
import tracemalloc
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import psycopg2

from alembic import command
from app.core.config import with_psycopg2
from app.core.db import REPO_DIR, alembic_config
from bench.api_process import running_api
from bench.tokens import signed_in
from devtools.local_postgres import LocalPostgres, free_port

EXPENSES = 10_000
SETTLEMENTS = 100
PARTICIPANTS = 6
TRIP_ID = uuid.UUID("00000000-0000-4000-8000-00000000e001")
USER_ID = uuid.UUID("00000000-0000-4000-8000-00000000e002")
SECRET = "bench-secret-bench-secret-bench-secret-0123"  # noqa: S105 (a throwaway server's)
RUNS = 3

# Ids are md5 hashes of a label and a number, cast to uuid: stable, so a reseed is idempotent.
_SEED = f"""
INSERT INTO users (id, email, full_name, password_hash, is_active, email_verified_at)
VALUES ('{USER_ID}', 'bench-export@example.com', 'Bench Owner', 'x', true, now());
INSERT INTO trips (id, name, destination, start_date, end_date, timezone, description,
                   base_currency, hide_amounts_from_viewers, version, head_version)
VALUES ('{TRIP_ID}', 'Export', '', '2027-01-01', '2027-12-31', 'UTC', '', 'EUR', false, 1, 1);
INSERT INTO trip_members (trip_id, user_id, role, version)
VALUES ('{TRIP_ID}', '{USER_ID}', 'owner', 1);
INSERT INTO trip_participants (trip_id, id, user_id, name, version)
SELECT '{TRIP_ID}', md5('p' || p)::uuid, CASE WHEN p = 0 THEN '{USER_ID}'::uuid END,
       'Person ' || p, 1
FROM generate_series(0, {PARTICIPANTS - 1}) AS p;
INSERT INTO trip_expenses (trip_id, id, version)
SELECT '{TRIP_ID}', md5('e' || n)::uuid, 1 FROM generate_series(1, {EXPENSES}) AS n;
INSERT INTO trip_expense_revisions (trip_id, id, expense_id, number, action, title, category,
    notes, amount_minor, currency, exchange_rate, rate_source, base_amount_minor, spent_on,
    split_mode)
SELECT '{TRIP_ID}', md5('r' || n)::uuid, md5('e' || n)::uuid, 1, 'created',
       'Expense ' || n || ', "quoted"', 'food', '', {PARTICIPANTS} * (100 + n), 'EUR', 1,
       'base', {PARTICIPANTS} * (100 + n), date '2027-01-01' + n % 300, 'equal'
FROM generate_series(1, {EXPENSES}) AS n;
UPDATE trip_expenses AS e SET current_revision_id = r.id
FROM trip_expense_revisions AS r
WHERE e.trip_id = '{TRIP_ID}' AND r.trip_id = e.trip_id AND r.expense_id = e.id;
INSERT INTO trip_expense_payers (trip_id, revision_id, participant_id, amount_minor,
                                 base_amount_minor)
SELECT '{TRIP_ID}', md5('r' || n)::uuid, md5('p' || n % {PARTICIPANTS})::uuid,
       {PARTICIPANTS} * (100 + n), {PARTICIPANTS} * (100 + n)
FROM generate_series(1, {EXPENSES}) AS n;
INSERT INTO trip_expense_splits (trip_id, revision_id, participant_id, amount_minor,
                                 base_amount_minor)
SELECT '{TRIP_ID}', md5('r' || n)::uuid, md5('p' || p)::uuid, 100 + n, 100 + n
FROM generate_series(1, {EXPENSES}) AS n, generate_series(0, {PARTICIPANTS - 1}) AS p;
INSERT INTO trip_settlements (trip_id, id, from_participant_id, to_participant_id,
    amount_minor, currency, exchange_rate, rate_source, base_amount_minor, settled_on, note)
SELECT '{TRIP_ID}', md5('s' || n)::uuid, md5('p' || n % {PARTICIPANTS})::uuid,
       md5('p' || (n + 1) % {PARTICIPANTS})::uuid, 1000 + n, 'EUR', 1, 'base', 1000 + n,
       date '2027-06-01' + n % 30, 'settlement ' || n
FROM generate_series(1, {SETTLEMENTS}) AS n;
ANALYZE trip_expenses, trip_expense_revisions, trip_expense_payers, trip_expense_splits;
"""  # noqa: S608 (this module's constants only)


def seed(url: str) -> None:
    connection = psycopg2.connect(url)
    with connection, connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM trips WHERE id = %s", (str(TRIP_ID),))
        if cursor.fetchone() is not None:
            print("reusing the seeded trip")
            return
        started = time.perf_counter()
        cursor.execute(_SEED)
        print(f"seeded {EXPENSES:,} expenses in {time.perf_counter() - started:.1f} s")
    connection.close()


def _peak_rss_kib(pid: int) -> int:
    """The process's peak resident set so far (VmHWM), in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError("no VmHWM in /proc")


def _download(base: str, path: str, token: str) -> tuple[float, float, int, int]:
    """Seconds to the first byte and to the last, bytes and CSV lines of one download."""
    request = urllib.request.Request(  # noqa: S310 (http://127.0.0.1 only)
        base + path, headers={"Authorization": f"Bearer {token}"}
    )
    started = time.perf_counter()
    size = lines = 0
    first = 0.0
    with urllib.request.urlopen(request, timeout=300) as response:  # noqa: S310 (127.0.0.1)
        while chunk := response.read(64 * 1024):
            if not first:
                first = time.perf_counter() - started
            size += len(chunk)
            lines += chunk.count(b"\r\n")
    return first, time.perf_counter() - started, size, lines


def over_http(url: str) -> dict[str, Any]:
    with running_api(url, SECRET) as (base, server):
        [token] = signed_in(with_psycopg2(url), [USER_ID], SECRET)
        # Warm up on a small read of the same trip: imports, pools, caches.
        _download(base, f"/trips/{TRIP_ID}/balances", token)
        before = _peak_rss_kib(server.pid)
        runs = [_download(base, f"/trips/{TRIP_ID}/export?format=csv", token) for _ in range(RUNS)]
        after = _peak_rss_kib(server.pid)
    return {
        "runs": RUNS,
        "first_byte_ms_median": round(statistics.median(r[0] for r in runs) * 1000, 1),
        "total_ms_median": round(statistics.median(r[1] for r in runs) * 1000, 1),
        "bytes": runs[0][2],
        "data_rows": runs[0][3] - 1,
        "server_peak_rss_before_kib": before,
        "server_peak_rss_growth_kib": after - before,
    }


def in_process(url: str) -> dict[str, Any]:
    """tracemalloc's peak while the CSV is consumed chunk by chunk (as the response sends it)
    and while it is joined into one document (a response built before it is sent)."""
    os.environ.update({"DATABASE_URL": url, "SECRET_KEY": SECRET, "ENVIRONMENT": "test"})
    from sqlmodel import Session, create_engine

    from app.core.config import get_settings
    from app.exports.service import ledger_csv
    from app.trips.models import Trip

    get_settings.cache_clear()
    engine = create_engine(with_psycopg2(url))
    figures: dict[str, Any] = {}
    # A first run fills the caches a process keeps (compiled statements, imports), not counted.
    for mode in ("warm-up", "streamed", "joined"):
        with Session(engine) as session:
            trip = session.get_one(Trip, TRIP_ID)
            session.connection()  # connect before measuring
            tracemalloc.start()
            started = time.perf_counter()
            if mode != "joined":
                size = sum(len(chunk) for chunk in ledger_csv(session, trip))
            else:
                size = len(b"".join(list(ledger_csv(session, trip))))
            elapsed = time.perf_counter() - started
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
        figures[mode] = {
            "ms": round(elapsed * 1000, 1),
            "bytes": size,
            "tracemalloc_peak_kib": peak // 1024,
        }
    engine.dispose()
    del figures["warm-up"]
    return figures


def main() -> None:
    url = os.environ.get("BENCH_DATABASE_URL")
    server = None
    if not url:
        server = LocalPostgres(REPO_DIR / ".data" / "bench-export-postgres", free_port())
        server.start()
        url = server.ensure_database("tripsync_bench_export")
    try:
        command.upgrade(alembic_config(url), "head")
        seed(with_psycopg2(url).replace("postgresql+psycopg2://", "postgresql://"))
        results: dict[str, Any] = {
            "expenses": EXPENSES,
            "settlements": SETTLEMENTS,
            "participants": PARTICIPANTS,
            "http": over_http(url),
            "in_process": in_process(url),
        }
    finally:
        if server is not None:
            server.stop()
    out = REPO_DIR / "bench-results"
    out.mkdir(exist_ok=True)
    (out / "export.json").write_text(json.dumps(results, indent=2))
    http, local = results["http"], results["in_process"]
    print(
        f"\nLedger CSV export: {EXPENSES:,} expenses, {SETTLEMENTS} settlements, "
        f"{PARTICIPANTS} participants; 1 uvicorn worker, {os.cpu_count()} cores"
    )
    print(
        f"over HTTP ({RUNS} runs): first byte {http['first_byte_ms_median']} ms, "
        f"whole {http['total_ms_median']} ms (medians), {http['bytes']:,} bytes, "
        f"{http['data_rows']:,} data rows"
    )
    print(
        f"  server peak RSS {http['server_peak_rss_before_kib']:,} KiB before, "
        f"+{http['server_peak_rss_growth_kib']:,} KiB over the exports"
    )
    for mode, figures in local.items():
        print(
            f"in process, {mode}: {figures['ms']} ms, {figures['bytes']:,} bytes, "
            f"tracemalloc peak {figures['tracemalloc_peak_kib']:,} KiB"
        )


if __name__ == "__main__":
    tempfile.tempdir = None
    main()
