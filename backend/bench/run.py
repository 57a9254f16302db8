"""`make bench`: seed a realistic data set, run TripSync under wrk, compare with a raw ceiling.

    make bench                                   # full size (BENCH_SCALE=1), 8 s per run: ~15 min
    BENCH_SCALE=0.01 BENCH_DURATION=3s make bench  # a quick look
    make bench BENCH_BASELINE_REF=9378a84        # A/B against that commit: bench/ab.py

Environment: BENCH_SCALE (1), BENCH_SECONDS (a number; overrides BENCH_DURATION),
BENCH_DURATION (8s: with the 2 s warm-up, 3 servers x 11 scenarios x 2 connection counts fit
in 20 minutes), BENCH_CONNECTIONS (32,256), BENCH_WORKERS (1,2), BENCH_THREADS (wrk threads,
2), BENCH_TIMEOUT (10s), BENCH_WARMUP (unmeasured wrk run before each measured one, 2s),
BENCH_SCENARIOS (comma-separated names, default all), BENCH_DATABASE_URL (else an embedded
PostgreSQL under .data/bench-postgres, one database per scale), BENCH_PGBOUNCER (1: after the
direct runs, one more with the largest BENCH_WORKERS through a PgBouncer in transaction mode
that the bench starts and stops; 0: not; only: that run alone), BENCH_PGBOUNCER_POOL (its
server connections, 20).

The raw ceiling (bench/raw_app.py) runs the reads it answers with TripSync's bytes; each
read's bodies are compared once before any measurement, and one that differs is not measured
on it. The service runs as in production (ENVIRONMENT=production, LOG_LEVEL=WARNING, no
access log); only the login limits are raised, so the login scenario measures logins, not
429s.
Results: bench-results/results.json, results.md and results.png.
"""

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psycopg2

from alembic import command
from app.core.db import REPO_DIR, alembic_config
from bench.seed import PASSWORD, Seeded, ensure_seeded
from bench.tokens import signed_in
from devtools.local_pgbouncer import LocalPgBouncer, pgbouncer_binary
from devtools.local_postgres import LocalPostgres, free_port

SECRET = "bench-secret-bench-secret-bench-secret-0123"  # noqa: S105 (a throwaway server's)
OUT = REPO_DIR / "bench-results"
DURATION = "8s"  # per measured run
PAGE_LIMIT = 10  # 50,000 items in pages of 10: page 5,000 is the last one
TRIPS_LIMIT = 100  # list my trips: one page of up to 100
# The reads the raw ceiling (bench/raw_app.py) answers with TripSync's bytes.
READ_SCENARIOS = ("list_trips", "get_trip", "list_day_items", "items_page_1")
WRITE_SCENARIOS = ("create_item", "update_item")


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    body: str | None = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Scenario:
    name: str
    title: str
    requests: list[Request]
    expected: int = 200


@dataclass
class Result:
    server: str
    workers: int
    scenario: str
    connections: int
    duration_s: float
    requests: int
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    errors: int
    error_detail: dict[str, int]
    peak_rss_mb: list[float]


def _env_list(name: str, default: str) -> list[str]:
    return [part.strip() for part in os.environ.get(name, default).split(",") if part.strip()]


def duration() -> str:
    """wrk's -d of each measured run: BENCH_SECONDS (a number), else BENCH_DURATION (8s)."""
    seconds = os.environ.get("BENCH_SECONDS")
    if seconds:
        return f"{float(seconds):g}s"
    return os.environ.get("BENCH_DURATION", DURATION)


def _psycopg_url(url: str) -> str:
    return url.replace("postgresql+psycopg2://", "postgresql://")


def _scenarios(data: Seeded, url: str, token: str | None = None) -> list[Scenario]:
    """The scenarios on the data seeded at `url`, as the bench user (`token`: an access token
    of theirs; by default one of a session made for the run)."""
    from app.core.pagination import Position, encode_cursor, scope_of_list

    if token is None:
        [token] = signed_in(url, [uuid.UUID(data.user_id)], SECRET)
    auth = {"Authorization": f"Bearer {token}"}
    big = data.big_trip_id
    deep_page = data.big_trip_items // PAGE_LIMIT
    with psycopg2.connect(_psycopg_url(url)) as connection, connection.cursor() as cursor:
        # The last row of page deep_page - 1, in the list's order: the cursor of deep_page.
        cursor.execute(
            "SELECT day, order_key, id FROM itinerary_items WHERE trip_id = %s"
            " ORDER BY day ASC NULLS LAST, order_key, id OFFSET %s LIMIT 1",
            (big, (deep_page - 1) * PAGE_LIMIT - 1),
        )
        day, key, item_id = cursor.fetchone() or (None, "", None)
        cursor.execute(
            "SELECT id, trip_id FROM itinerary_items WHERE trip_id = ANY(%s::uuid[])"
            " ORDER BY id LIMIT 1000",
            (data.my_trip_ids,),
        )
        my_items = cursor.fetchall()
        cursor.execute("SELECT head_version FROM trips WHERE id = %s", (big,))
        head = (cursor.fetchone() or (1,))[0]
    position = Position(f"{day.isoformat() if day else ''}/{key}", uuid.UUID(str(item_id)))
    items = scope_of_list("/trips/{trip_id}/items", path={"trip_id": big}, user_id=data.user_id)
    cursor_token = encode_cursor(position, items)
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    json_body = {**auth, "Content-Type": "application/json"}
    logins = [
        Request(
            "POST", "/auth/login", f"username={email.replace('@', '%40')}&password={PASSWORD}", form
        )
        for email in data.user_emails
    ]
    creates = [
        Request(
            "POST",
            f"/trips/{trip}/items",
            json.dumps({"kind": "activity", "title": "Bench visit", "notes": "created under load"}),
            json_body,
        )
        for trip in data.my_trip_ids
    ]
    updates = [
        Request(
            "PATCH",
            f"/trips/{trip}/items/{item}",
            json.dumps({"title": f"Renamed {n}"}),
            {**json_body, "If-Match": "*"},
        )
        for n, (item, trip) in enumerate(my_items)
    ]
    return [
        Scenario(
            "list_trips",
            f"list my trips (limit {TRIPS_LIMIT})",
            [Request("GET", f"/trips?limit={TRIPS_LIMIT}", None, auth)],
        ),
        Scenario(
            "get_trip",
            "get one trip",
            [Request("GET", f"/trips/{data.typical_trip_id}", None, auth)],
        ),
        Scenario(
            "list_day_items",
            "list a day's items",
            [
                Request(
                    "GET",
                    f"/trips/{data.typical_trip_id}/items?day={data.typical_trip_day}",
                    None,
                    auth,
                )
            ],
        ),
        Scenario(
            "items_page_1",
            f"page 1 of a {data.big_trip_items:,}-item trip (limit {PAGE_LIMIT})",
            [Request("GET", f"/trips/{big}/items?limit={PAGE_LIMIT}", None, auth)],
        ),
        Scenario(
            "items_page_deep",
            f"page {deep_page:,} of a {data.big_trip_items:,}-item trip (limit {PAGE_LIMIT})",
            [
                Request(
                    "GET",
                    f"/trips/{big}/items?limit={PAGE_LIMIT}&cursor={cursor_token}",
                    None,
                    auth,
                )
            ],
        ),
        Scenario("create_item", "create an item", creates, expected=201),
        Scenario("update_item", "update an item (If-Match: *)", updates),
        Scenario(
            "balances",
            f"balances of a trip with {data.sizes['balance_trip_expenses']:,} expenses",
            [Request("GET", f"/trips/{data.balance_trip_id}/balances", None, auth)],
        ),
        Scenario(
            "sync_scratch",
            "sync pull from scratch (first 500 changes)",
            [Request("GET", f"/trips/{big}/changes?since=0&limit=500", None, auth)],
        ),
        Scenario(
            "sync_recent",
            "sync pull from a recent version",
            [Request("GET", f"/trips/{big}/changes?since={head - 1}", None, auth)],
        ),
        # Last: Argon2id's 64 MiB per hash raises the workers' RSS for the rest of the run.
        Scenario("login", "log in (Argon2id, production cost)", logins),
    ]


def _lua_string(text: str) -> str:
    return json.dumps(text)  # a JSON string literal is a valid Lua one for this ASCII text


LUA_DONE = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"connect":%d,"read":%d,"write":%d,'
    .. '"status":%d,"timeout":%d,"p50":%d,"p90":%d,"p99":%d,"max":%d}\\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
"""


def _lua(scenario: Scenario) -> str:
    """One script per scenario: its requests, taken in turn by each connection's thread."""
    rows = []
    for request in scenario.requests:
        headers = ", ".join(
            f"[{_lua_string(k)}] = {_lua_string(v)}" for k, v in request.headers.items()
        )
        body = _lua_string(request.body) if request.body is not None else "nil"
        method, path = _lua_string(request.method), _lua_string(request.path)
        rows.append(f"  {{{method}, {path}, {{{headers}}}, {body}}},")
    return (
        f"-- {scenario.title}\nlocal requests = {{\n" + "\n".join(rows) + "\n}\n"
        "local i = math.random(#requests) - 1\n"
        "request = function()\n  i = i % #requests + 1\n  local r = requests[i]\n"
        "  return wrk.format(r[1], r[2], r[3], r[4])\nend\n" + LUA_DONE
    )


class RssSampler(threading.Thread):
    """Peak resident memory of each worker process (children of uvicorn, or uvicorn itself)."""

    def __init__(self, server_pid: int) -> None:
        super().__init__(daemon=True)
        self.server_pid = server_pid
        self.peaks: dict[int, int] = {}
        self.stopped = threading.Event()

    def workers(self) -> list[int]:
        children = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == self.server_pid:
                children.append(int(stat.parent.name))
        return children or [self.server_pid]

    def run(self) -> None:
        while not self.stopped.is_set():
            for pid in self.workers():
                try:
                    status = Path(f"/proc/{pid}/status").read_text()
                except OSError:
                    continue
                found = re.search(r"VmRSS:\s+(\d+) kB", status)
                if found:
                    self.peaks[pid] = max(self.peaks.get(pid, 0), int(found.group(1)))
            self.stopped.wait(0.2)

    def stop(self) -> list[float]:
        self.stopped.set()
        self.join()
        return [round(kb / 1024, 1) for _, kb in sorted(self.peaks.items())]


def _call(base: str, request: Request) -> tuple[int, bytes]:
    http = urllib.request.Request(  # noqa: S310 (http://127.0.0.1 only)
        base + request.path,
        data=request.body.encode() if request.body is not None else None,
        headers=request.headers,
        method=request.method,
    )
    try:
        with urllib.request.urlopen(http, timeout=120) as response:  # noqa: S310
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def _start(
    app: str,
    workers: int,
    url: str,
    *,
    python: str = sys.executable,
    cwd: Path | None = None,
    settings: dict[str, str] | None = None,
) -> tuple[subprocess.Popen[bytes], str]:
    """`app` under uvicorn with `python` in `cwd` (this checkout's backend by default)."""
    port = free_port()
    inherited = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env = {
        **inherited,
        "DATABASE_URL": url,
        "ENVIRONMENT": "production",
        "SECRET_KEY": SECRET,
        "EMAIL_DELIVERY": "smtp",
        "LOG_LEVEL": "WARNING",
        "FRONTEND_DIR": "",
        "LOGIN_ATTEMPTS_PER_ACCOUNT": "100000000",
        "LOGIN_ATTEMPTS_PER_ADDRESS": "100000000",
        "ACCESS_TOKEN_EXPIRE_MINUTES": "1440",  # a token from a login lasts the whole run
        **(settings or {}),
    }
    command_line = [python, "-m", "uvicorn", app, "--host", "127.0.0.1"]
    command_line += ["--port", str(port), "--workers", str(workers)]
    command_line += ["--log-level", "warning", "--no-access-log"]
    server = subprocess.Popen(command_line, env=env, cwd=cwd or REPO_DIR / "backend")  # noqa: S603
    base = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            urllib.request.urlopen(base + "/health/live", timeout=1)  # noqa: S310
            return server, base
        except OSError:
            if server.poll() is not None:
                raise SystemExit(f"{app} exited at start-up") from None
            time.sleep(0.1)
    server.terminate()
    raise SystemExit(f"{app} did not start")


def _stop(server: subprocess.Popen[bytes]) -> None:
    server.terminate()
    try:
        server.wait(timeout=20)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()


def _wrk(
    base: str,
    scenario: Scenario,
    connections: int,
    server_pid: int,
    *,
    seconds: str | None = None,
    warmup: str | None = None,
) -> dict[str, Any]:
    """One measured wrk run (after an unmeasured warm-up): BENCH_SECONDS / BENCH_DURATION and
    BENCH_WARMUP unless given here (`seconds`, `warmup`: wrk durations such as "9s")."""
    script = OUT / "lua" / f"{scenario.name}.lua"
    script.write_text(_lua(scenario))
    threads = min(int(os.environ.get("BENCH_THREADS", "2")), connections)
    warmup = warmup or os.environ.get("BENCH_WARMUP", "2s")
    wrk = shutil.which("wrk") or "wrk"
    if warmup not in ("0", "0s"):
        # Unmeasured: fills the connection pools at this concurrency first.
        warm = [wrk, f"-t{threads}", f"-c{connections}", f"-d{warmup}", "-s", str(script), base]
        subprocess.run(warm, capture_output=True, check=False)  # noqa: S603
    sampler = RssSampler(server_pid)
    sampler.start()
    done = subprocess.run(  # noqa: S603
        [
            wrk,
            f"-t{threads}",
            f"-c{connections}",
            f"-d{seconds or duration()}",
            f"--timeout={os.environ.get('BENCH_TIMEOUT', '10s')}",
            "-s",
            str(script),
            base,
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    rss = sampler.stop()
    line = next((row for row in done.stdout.splitlines() if row.startswith("BENCH_JSON ")), None)
    if line is None:
        raise SystemExit(f"wrk failed on {scenario.name}: {done.stdout}\n{done.stderr}")
    figures: dict[str, Any] = json.loads(line.removeprefix("BENCH_JSON "))
    figures["rss"] = rss
    return figures


def _measure(
    server: str, workers: int, base: str, pid: int, scenario: Scenario, connections: int
) -> Result:
    figures = _wrk(base, scenario, connections, pid)
    seconds = figures["duration_us"] / 1e6
    detail = {key: figures[key] for key in ("connect", "read", "write", "status", "timeout")}
    result = Result(
        server=server,
        workers=workers,
        scenario=scenario.name,
        connections=connections,
        duration_s=round(seconds, 1),
        requests=figures["requests"],
        rps=round(figures["requests"] / seconds, 1),
        p50_ms=round(figures["p50"] / 1000, 1),
        p90_ms=round(figures["p90"] / 1000, 1),
        p99_ms=round(figures["p99"] / 1000, 1),
        max_ms=round(figures["max"] / 1000, 1),
        errors=sum(detail.values()),
        error_detail=detail,
        peak_rss_mb=figures["rss"],
    )
    print(
        f"{server:18} w={workers} c={connections:<4} {scenario.name:16} {result.rps:9.1f} req/s"
        f"  p50 {result.p50_ms:8.1f}  p99 {result.p99_ms:8.1f} ms  errors {result.errors}"
        f"  rss {result.peak_rss_mb} MB",
        flush=True,
    )
    return result


def same_body(raw: bytes, ours: bytes) -> str:
    """How the raw app's body compares with TripSync's: "bytes" (identical), "json" (the same
    JSON document, keys in another order or other spacing) or "differ"."""
    if raw == ours:
        return "bytes"
    try:
        return "json" if json.loads(raw) == json.loads(ours) else "differ"
    except ValueError:
        return "differ"


def compare_bodies(raw_base: str, our_base: str, scenarios: list[Scenario]) -> dict[str, str]:
    """Each read's first request, once, to the raw app and to TripSync, before any
    measurement: same_body of the two answers per scenario. A scenario whose bodies differ
    is not measured on the raw app: a ceiling that answers something else is no ceiling."""
    found: dict[str, str] = {}
    for scenario in scenarios:
        raw_status, raw_body = _call(raw_base, scenario.requests[0])
        status, body = _call(our_base, scenario.requests[0])
        if status != 200:
            raise SystemExit(f"tripsync {scenario.name}: {status} {body[:300]!r}")
        kind = same_body(raw_body, body) if raw_status == 200 else "differ"
        found[scenario.name] = kind
        if kind == "differ":
            print(
                f"raw {scenario.name}: NOT TripSync's body, not measured"
                f" ({raw_status} {raw_body[:200]!r} against {body[:200]!r})"
            )
        else:
            print(f"raw {scenario.name}: the same body as TripSync ({kind})")
    return found


def check_bodies(url: str, scenarios: list[Scenario]) -> dict[str, str]:
    """compare_bodies against a raw app and a TripSync worker started for it."""
    raw, raw_base = _start("bench.raw_app:app", 1, url)
    try:
        ours, our_base = _start("app.main:app", 1, url)
        try:
            return compare_bodies(raw_base, our_base, scenarios)
        finally:
            _stop(ours)
    finally:
        _stop(raw)


def _run_tripsync(
    label: str,
    workers: int,
    url: str,
    scenarios: list[Scenario],
    connections: list[int],
    **settings: str,
) -> list[Result]:
    """Every scenario at every connection count against `workers` uvicorn workers on `url`."""
    results = []
    server, base = _start("app.main:app", workers, url, settings=settings)
    try:
        for scenario in scenarios:
            status, body = _call(base, scenario.requests[0])
            if status != scenario.expected:
                raise SystemExit(f"{label} {scenario.name}: {status} {body[:300]!r}")
            for count in connections:
                results.append(_measure(label, workers, base, server.pid, scenario, count))
    finally:
        _stop(server)
    return results


def _pgbouncer_sizes(workers: int) -> dict[str, Any]:
    """PgBouncer's pools for `workers` uvicorn workers with the app's default pools.

    Clients: each worker opens at most DB_POOL_SIZE + DB_MAX_OVERFLOW connections (40), so
    max_client_conn covers workers x 40 plus a few for checks. Servers: BENCH_PGBOUNCER_POOL
    (20, one worker's DB_POOL_SIZE), a quarter of the 80 backends two workers may open
    directly: a 2-core PostgreSQL runs only a few statements at once, and a transaction holds
    its server connection only while it runs, not while the request waits for a slot or
    serialises its response.
    """
    from app.core.config import get_settings

    settings = get_settings()
    per_worker = settings.DB_POOL_SIZE + settings.DB_MAX_OVERFLOW
    return {
        "workers": workers,
        "client_connections_per_worker": per_worker,
        "max_client_conn": workers * per_worker + 10,
        "pool_size": int(os.environ.get("BENCH_PGBOUNCER_POOL", "20")),
    }


def _distribute(url: str) -> None:
    from sqlalchemy import create_engine

    from app.core.config import with_psycopg2
    from app.core.distribution import distribute

    engine = create_engine(with_psycopg2(url))
    try:
        with engine.begin() as connection:
            distribute(connection)
    finally:
        engine.dispose()


def run(url: str) -> dict[str, Any]:
    os.environ["SECRET_KEY"] = SECRET
    from app.core.config import get_settings
    from app.core.security import hash_password

    get_settings.cache_clear()
    scale = float(os.environ.get("BENCH_SCALE", "1"))
    command.upgrade(alembic_config(url), "head")
    _distribute(url)  # on a Citus coordinator, as `make migrate` does; else nothing
    data = ensure_seeded(_psycopg_url(url), scale, hash_password(PASSWORD))
    wanted = set(_env_list("BENCH_SCENARIOS", ""))
    scenarios = [s for s in _scenarios(data, url) if not wanted or s.name in wanted]
    connections = [int(c) for c in _env_list("BENCH_CONNECTIONS", "32,256")]
    (OUT / "lua").mkdir(parents=True, exist_ok=True)
    results: list[Result] = []
    # The raw ceiling first, while the data is as seeded (the write scenarios rename items),
    # and only on the reads where its body is TripSync's.
    raw = [s for s in scenarios if s.name in READ_SCENARIOS]
    bodies = check_bodies(url, raw) if raw else {}
    same = [s for s in raw if bodies[s.name] != "differ"]
    if same:
        server, base = _start("bench.raw_app:app", 1, url)
        try:
            for scenario in same:
                for count in connections:
                    results.append(_measure("raw", 1, base, server.pid, scenario, count))
        finally:
            _stop(server)
    workers_list = [int(w) for w in _env_list("BENCH_WORKERS", "1,2")]
    pgbouncer = os.environ.get("BENCH_PGBOUNCER", "1")
    if pgbouncer != "only":
        for workers in workers_list:
            results += _run_tripsync("tripsync", workers, url, scenarios, connections)
    pooled: dict[str, Any] | None = None
    if pgbouncer != "0":
        pooled = _pgbouncer_sizes(max(workers_list))
        # The timeouts the app would have sent, set by PgBouncer on each server connection.
        settings = get_settings()
        timeouts = (
            f"SET statement_timeout = {settings.DB_STATEMENT_TIMEOUT_MS}; "
            f"SET idle_in_transaction_session_timeout = "
            f"{settings.DB_IDLE_IN_TRANSACTION_TIMEOUT_MS}"
        )
        with LocalPgBouncer(
            _psycopg_url(url),
            pool_size=pooled["pool_size"],
            max_client_conn=pooled["max_client_conn"],
            connect_query=timeouts,
        ) as bouncer:
            results += _run_tripsync(
                "tripsync+pgbouncer",
                pooled["workers"],
                bouncer.url,
                scenarios,
                connections,
                DB_STARTUP_OPTIONS="false",
            )
    return {
        "when": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "cores": os.cpu_count(),
        "scale": scale,
        "duration": duration(),
        "data": {"sizes": data.sizes, "rows": data.counts, "seed_seconds": data.seconds},
        "scenarios": {s.name: s.title for s in scenarios},
        "raw_bodies": bodies,
        "pgbouncer": pooled,
        "results": [asdict(result) for result in results],
    }


def _ratios(report: dict[str, Any]) -> list[tuple[str, int, float, float]]:
    """TripSync (1 worker) throughput as a fraction of the raw app's, per read scenario."""
    rows = report["results"]
    ratios = []
    for raw in (r for r in rows if r["server"] == "raw"):
        ours = next(
            (
                r
                for r in rows
                if r["server"] == "tripsync"
                and r["workers"] == 1
                and r["scenario"] == raw["scenario"]
                and r["connections"] == raw["connections"]
            ),
            None,
        )
        if ours and raw["rps"]:
            ratios.append(
                (raw["scenario"], raw["connections"], ours["rps"] / raw["rps"], ours["p99_ms"])
            )
    return ratios


def markdown(report: dict[str, Any]) -> str:
    lines = [
        f"# TripSync benchmark — {report['when']}",
        "",
        f"BENCH_SCALE={report['scale']}, {report['duration']} per run, {report['cores']} cores,"
        f" wrk on 127.0.0.1. Rows: {report['data']['rows']}.",
        "",
        "| server | workers | scenario | conns | req/s | p50 ms | p90 ms | p99 ms | errors |"
        " peak RSS per worker (MB) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report["results"]:
        lines.append(
            f"| {r['server']} | {r['workers']} | {report['scenarios'][r['scenario']]} |"
            f" {r['connections']} | {r['rps']} | {r['p50_ms']} | {r['p90_ms']} | {r['p99_ms']} |"
            f" {r['errors']} | {', '.join(str(m) for m in r['peak_rss_mb'])} |"
        )
    ratios = _ratios(report)
    if ratios:
        lines += ["", "TripSync (1 worker) throughput relative to the raw ASGI + psycopg2 app:", ""]
        lines += ["| scenario | conns | TripSync / raw |", "|---|---|---|"]
        lines += [f"| {name} | {conns} | {ratio:.2f} |" for name, conns, ratio, _ in ratios]
    pooled = report.get("pgbouncer")
    if pooled:
        lines += [
            "",
            f"tripsync+pgbouncer: {pooled['workers']} workers, each with at most"
            f" {pooled['client_connections_per_worker']} connections to a PgBouncer in transaction"
            f" mode (max_client_conn {pooled['max_client_conn']}) holding"
            f" {pooled['pool_size']} server connections to PostgreSQL (default_pool_size).",
        ]
    differ = [name for name, kind in report.get("raw_bodies", {}).items() if kind == "differ"]
    if differ:
        lines += ["", f"Not measured on the raw app (its body differs from TripSync's): {differ}"]
    return "\n".join(lines) + "\n"


def chart(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = report["results"]
    series = sorted({(r["server"], r["workers"], r["connections"]) for r in rows})
    names = list(report["scenarios"])
    figure, (top, bottom) = plt.subplots(2, 1, figsize=(14, 9), sharex=True)
    width = 0.8 / max(1, len(series))
    for index, (server, workers, conns) in enumerate(series):
        by_name = {
            r["scenario"]: r
            for r in rows
            if (r["server"], r["workers"], r["connections"]) == (server, workers, conns)
        }
        xs = [n + index * width for n, name in enumerate(names) if name in by_name]
        label = f"{server} {workers}w c={conns}"
        top.bar(xs, [by_name[n]["rps"] for n in names if n in by_name], width, label=label)
        bottom.bar(xs, [by_name[n]["p99_ms"] for n in names if n in by_name], width, label=label)
    top.set_ylabel("requests/s")
    bottom.set_ylabel("p99 latency (ms, log)")
    bottom.set_yscale("log")
    bottom.set_xticks([n + 0.4 - width / 2 for n in range(len(names))], names, rotation=30)
    top.legend(fontsize=8, ncol=2)
    top.set_title(f"TripSync, BENCH_SCALE={report['scale']}, {report['duration']} per run")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


@contextlib.contextmanager
def bench_database() -> Iterator[str]:
    """BENCH_DATABASE_URL, else a database of the embedded server (one per scale), stopped
    on exit."""
    url = os.environ.get("BENCH_DATABASE_URL")
    if url:
        yield url
        return
    embedded = LocalPostgres(REPO_DIR / ".data" / "bench-postgres", free_port(), durable=False)
    embedded.start()
    try:
        scale = os.environ.get("BENCH_SCALE", "1").replace(".", "_")
        yield embedded.ensure_database(f"tripsync_bench_{scale}")
    finally:
        embedded.stop()


def main() -> None:
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get install -y wrk")
    if os.environ.get("BENCH_BASELINE_REF"):
        from bench import ab

        with bench_database() as url:
            ab.main(url)
        return
    if os.environ.get("BENCH_PGBOUNCER", "1") != "0" and pgbouncer_binary() is None:
        raise SystemExit(
            "pgbouncer is not installed: apt-get install -y pgbouncer, or BENCH_PGBOUNCER=0"
        )
    with bench_database() as url:
        report = run(url)
    OUT.mkdir(exist_ok=True)
    (OUT / "results.json").write_text(json.dumps(report, indent=2))
    (OUT / "results.md").write_text(markdown(report))
    chart(report, OUT / "results.png")
    print()
    for name, conns, ratio, _ in _ratios(report):
        print(f"{name:16} c={conns:<4} TripSync / raw throughput: {ratio:.2f}")
        if ratio > 1:
            print(f"WARNING: TripSync beat the raw ceiling on {name}: the baseline is wrong")
    print(f"\nwritten: {OUT}/results.json, results.md, results.png")


if __name__ == "__main__":
    main()
