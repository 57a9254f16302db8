"""Benchmark live sync on one uvicorn worker: write → event latency for Server-Sent Events and
long polls with 1, 1,000 and 10,000 subscribers, the worker's memory per subscriber, database
statements per idle subscriber, and an ordinary GET's p99 with 10,000 idle subscribers.

    make bench-live                                  # ~5-10 min on a 2-core machine
    BENCH_LIVE_BEFORE=/path/to/checkout make bench-live   # also the long poll of that code

Everything runs on 127.0.0.1: an embedded PostgreSQL (with pg_stat_statements) under
.data/bench-live-postgres, one `uvicorn app.main:app` process per transport (default
settings, no --limit-concurrency, --backlog 4096), and this process's asyncio client (raw
sockets, one connection per subscriber). Every subscriber is its own user, a viewer of one
shared trip; the trip's owner writes (`POST /trips/{id}/items`) one at a time, and the
latency of a write is measured from the moment its request is sent to the moment each
subscriber has it (an SSE `version` event, or a long poll's answer). The open-file limit is
raised to its hard limit here, which the uvicorn child inherits.

Environment: BENCH_LIVE_SUBSCRIBERS (1,1000,10000), BENCH_LIVE_TRANSPORTS (sse,long_poll),
BENCH_LIVE_BEFORE (a checkout of older code, e.g. `git worktree add /tmp/before 199056e`,
whose long poll is measured too, at BENCH_LIVE_BEFORE_SUBSCRIBERS, 1,1000). Prints tables
and writes bench-results/live.json.
"""

import asyncio
import contextlib
import io
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import psycopg2

from alembic import command
from app.core.db import REPO_DIR, alembic_config
from bench.tokens import signed_in
from devtools.local_postgres import LocalPostgres, free_port

SECRET = "bench-secret-bench-secret-bench-secret-0123"  # noqa: S105 (a throwaway server's)
DATABASE = "tripsync_live"
OWNER = uuid.UUID("00000000-0000-4000-8000-00000000c000")
TRIP = uuid.UUID("00000000-0000-4000-8000-00000000c001")
# Writes per subscriber count, each fanned out to every subscriber. A long poll's fan-out costs
# a request per subscriber (~5 ms of the worker each), so fewer writes keep the run short.
WRITES = {"sse": {1: 50, 1_000: 10, 10_000: 5}, "long_poll": {1: 50, 1_000: 5, 10_000: 1}}
WRITE_GAP = 0.05  # between one write reaching everyone and the next
DELIVERY_DEADLINE = 60.0  # a write not received by then counts as missed
CONNECT_BATCH = 250
LONG_POLL_WAIT = 30  # the API's maximum, as a client would use
IDLE_WINDOW = {"sse": 20.0, "long_poll": float(LONG_POLL_WAIT)}  # ≥ one heartbeat / one wait
GETS = 400  # sequential GET /trips/{id} per measurement
RETRY_AFTER = 1.0  # a 503/429 answer is retried after this, as its Retry-After says
STAGE_LIMIT = 600.0  # seconds for one transport's whole run (all its subscriber counts)


def _ints(name: str, default: str) -> list[int]:
    return [int(part) for part in os.environ.get(name, default).split(",") if part]


def raise_open_file_limit() -> int:
    """Soft RLIMIT_NOFILE up to the hard limit; the uvicorn child inherits it."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))]


def figures_ms(seconds: list[float]) -> dict[str, float]:
    if not seconds:
        return {"p50_ms": float("nan"), "p95_ms": float("nan"), "p99_ms": float("nan")}
    return {
        "p50_ms": round(statistics.median(seconds) * 1000, 1),
        "p95_ms": round(percentile(seconds, 0.95) * 1000, 1),
        "p99_ms": round(percentile(seconds, 0.99) * 1000, 1),
    }


# --- the database ----------------------------------------------------------------------------


def start_database() -> tuple[LocalPostgres, str]:
    """The embedded server with pg_stat_statements loaded, and a fresh database on it."""
    server = LocalPostgres(REPO_DIR / ".data" / "bench-live-postgres", free_port(), durable=False)
    server.start()
    admin = psycopg2.connect(server.url)
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute("SHOW shared_preload_libraries")
        row = cursor.fetchone()
        if row is None or "pg_stat_statements" not in row[0]:
            cursor.execute("ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'")
            admin.close()
            server.stop()
            server.start()
            admin = psycopg2.connect(server.url)
            admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        cursor.execute(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")
    admin.close()
    return server, server.ensure_database(DATABASE)


def seed(url: str, users: int) -> list[uuid.UUID]:
    """The owner, one trip, and `users` viewers of it (their ids are returned)."""
    viewers = [uuid.UUID(f"00000000-0000-4000-8001-{n:012x}") for n in range(users)]
    connection = psycopg2.connect(url)
    with connection, connection.cursor() as cursor:
        rows = io.StringIO()
        for user in [OWNER, *viewers]:
            rows.write(f"{user}\t{user.hex}@example.com\tBench {user.hex[-6:]}\tx\tt\t2027-01-01\n")
        rows.seek(0)
        cursor.copy_expert(
            "COPY users (id, email, full_name, password_hash, is_active, email_verified_at)"
            " FROM STDIN",
            rows,
        )
        cursor.execute(
            "INSERT INTO trips (id, name, destination, start_date, end_date, timezone,"
            " description, base_currency, hide_amounts_from_viewers, version, head_version)"
            " VALUES (%s, 'Live', '', '2027-01-01', '2027-01-14', 'UTC', '', 'EUR', false, 1, 1)",
            (str(TRIP),),
        )
        members = io.StringIO()
        members.write(f"{TRIP}\t{OWNER}\towner\t1\n")
        for user in viewers:
            members.write(f"{TRIP}\t{user}\tviewer\t1\n")
        members.seek(0)
        cursor.copy_expert(
            "COPY trip_members (trip_id, user_id, role, version) FROM STDIN", members
        )
        cursor.execute("ANALYZE")
    connection.close()
    return viewers


def statements(server: LocalPostgres) -> int:
    """Statements the bench database has run so far (pg_stat_statements, read from `postgres`
    so that this query is not counted)."""
    connection = psycopg2.connect(server.url)
    try:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT coalesce(sum(calls), 0) FROM pg_stat_statements"
                " WHERE dbid = (SELECT oid FROM pg_database WHERE datname = %s)",
                (DATABASE,),
            )
            row = cursor.fetchone()
            return int(row[0]) if row else 0
    finally:
        connection.close()


# --- the API process -------------------------------------------------------------------------


class Api:
    """`uvicorn app.main:app`, one worker, from `backend` (this checkout's or another's)."""

    def __init__(self, database_url: str, backend: Path) -> None:
        self.port = free_port()
        self.log = Path(tempfile.mkstemp(prefix="bench-live-", suffix=".log")[1])
        environment = {
            **os.environ,
            "DATABASE_URL": database_url,
            "ENVIRONMENT": "test",
            "SECRET_KEY": SECRET,
            "LOG_LEVEL": "WARNING",
            "EMAIL_DELIVERY": "memory",
            "FRONTEND_DIR": "",
        }
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(  # noqa: S603 (this interpreter, no shell)
                [
                    sys.executable,
                    "-m",
                    "uvicorn",
                    "app.main:app",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                    "--backlog",
                    "4096",
                    "--timeout-graceful-shutdown",
                    "5",
                    "--log-level",
                    "warning",
                    "--no-access-log",
                ],
                env=environment,
                cwd=backend,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def rss_kib(self) -> int:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise RuntimeError("no VmRSS")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self.log.unlink(missing_ok=True)


def _request(method: str, path: str, token: str, body: Any = None, **headers: str) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", f"Authorization: Bearer {token}"]
    lines += [f"{name.replace('_', '-')}: {value}" for name, value in headers.items()]
    payload = b""
    if body is not None:
        payload = json.dumps(body).encode()
        lines += ["Content-Type: application/json", f"Content-Length: {len(payload)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + payload


class Client:
    """One keep-alive connection for the writer and the measured GETs."""

    def __init__(self, port: int, token: str) -> None:
        self.port = port
        self.token = token
        self.streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def call(
        self, method: str, path: str, body: Any = None, **headers: str
    ) -> tuple[int, Any]:
        if self.streams is not None and self.streams[0].at_eof():
            self.close()  # the server closed the idle keep-alive connection
        if self.streams is None:
            self.streams = await asyncio.open_connection("127.0.0.1", self.port)
        reader, writer = self.streams
        writer.write(_request(method, path, self.token, body, **headers))
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").lower()
        length = 0
        for line in head.split("\r\n"):
            if line.startswith("content-length:"):
                length = int(line.split(":", 1)[1])
        raw = await reader.readexactly(length)
        if "connection: close" in head:
            writer.close()
            self.streams = None
        return int(head.split(" ", 2)[1]), json.loads(raw) if raw else None

    async def wait_until_up(self, seconds: float = 60) -> None:
        deadline = time.monotonic() + seconds
        while True:
            try:
                await self.call("GET", "/health/live")
                return
            except OSError:
                self.streams = None
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.1)

    def close(self) -> None:
        if self.streams is not None:
            self.streams[1].close()
            self.streams = None


# --- subscribers -----------------------------------------------------------------------------


@dataclass
class Hub:
    """Every subscriber of a run, and how many have seen the version being waited for."""

    subscribers: list["Subscriber"] = field(default_factory=list)
    head: int = 0  # the trip's newest version the writer knows of
    target: int = 0
    reached: int = 0
    everyone: asyncio.Event = field(default_factory=asyncio.Event)
    errors: dict[str, int] = field(default_factory=dict)

    def error(self, label: str) -> None:
        self.errors[label] = self.errors.get(label, 0) + 1

    def expect(self, version: int) -> None:
        self.head = self.target = version
        self.reached = sum(1 for s in self.subscribers if s.latest >= version)
        self.everyone.clear()
        if self.reached >= len(self.subscribers):
            self.everyone.set()

    def seen(self, before: int, after: int) -> None:
        if before < self.target <= after:
            self.reached += 1
            if self.reached >= len(self.subscribers):
                self.everyone.set()


class Subscriber(asyncio.Protocol):
    """One connection; `receipts` are (version, perf_counter) in order of arrival."""

    def __init__(self, hub: Hub, port: int, token: str) -> None:
        self.hub = hub
        self.port = port
        self.token = token
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        self.latest = hub.head
        self.receipts: list[tuple[int, float]] = []
        self.ready = asyncio.get_running_loop().create_future()
        self.closing = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.buffer = b""
        self.start()

    def start(self) -> None:
        raise NotImplementedError

    def received(self, version: int, at: float) -> None:
        if version > self.latest:
            before, self.latest = self.latest, version
            self.receipts.append((version, at))
            self.hub.seen(before, version)
        if not self.ready.done():
            self.ready.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if self.closing:
            return
        self.hub.error("connection dropped")
        asyncio.get_running_loop().call_later(RETRY_AFTER, self.reconnect)

    def reconnect(self) -> None:
        async def connect() -> None:
            try:
                await asyncio.get_running_loop().create_connection(
                    lambda: self, "127.0.0.1", self.port
                )
            except OSError:
                self.hub.error("connect failed")
                asyncio.get_running_loop().call_later(RETRY_AFTER, self.reconnect)

        if not self.closing:
            asyncio.ensure_future(connect())  # noqa: RUF006 (kept alive by the loop until done)

    def close(self) -> None:
        self.closing = True
        if self.transport is not None:
            self.transport.close()


class SseSubscriber(Subscriber):
    """`GET /sync/events` with the access token (as a native client); a reconnect sends
    Last-Event-ID."""

    def __init__(self, hub: Hub, port: int, token: str) -> None:
        super().__init__(hub, port, token)
        self.last_event_id: str | None = None
        self.chunked = False
        self.streaming = False
        self.text = b""
        self.heartbeats = 0

    def start(self) -> None:
        assert self.transport is not None
        headers = {"Accept": "text/event-stream"}
        if self.last_event_id is not None:
            headers["Last-Event-ID"] = self.last_event_id
        self.streaming = False
        self.text = b""
        self.transport.write(_request("GET", "/sync/events", self.token, **headers))

    def data_received(self, data: bytes) -> None:
        now = time.perf_counter()
        self.buffer += data
        if not self.streaming:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buffer[:end].lower()
            self.buffer = self.buffer[end + 4 :]
            status = int(head.split(b" ", 2)[1])
            if status != 200:
                self.hub.error(f"SSE {status}")
                if not self.ready.done():
                    self.ready.set_result(None)
                self.closing = True
                assert self.transport is not None
                self.transport.close()
                return
            self.streaming = True
            self.chunked = b"transfer-encoding: chunked" in head
        if self.chunked:
            while (line_end := self.buffer.find(b"\r\n")) >= 0:
                size = int(self.buffer[:line_end].split(b";")[0], 16)
                if len(self.buffer) < line_end + 4 + size:
                    break
                self.text += self.buffer[line_end + 2 : line_end + 2 + size]
                self.buffer = self.buffer[line_end + 4 + size :]
        else:
            self.text, self.buffer = self.text + self.buffer, b""
        self.text = self.text.replace(b"\r\n", b"\n")
        while (end := self.text.find(b"\n\n")) >= 0:
            block, self.text = self.text[:end], self.text[end + 2 :]
            self.event(block, now)

    def event(self, block: bytes, at: float) -> None:
        kind, data = "message", b""
        for line in block.split(b"\n"):
            if line.startswith(b":"):
                self.heartbeats += 1
            elif line.startswith(b"event:"):
                kind = line[6:].strip().decode()
            elif line.startswith(b"data:"):
                data += line[5:].strip()
            elif line.startswith(b"id:"):
                self.last_event_id = line[3:].strip().decode()
        if kind == "version":
            self.received(int(json.loads(data)["version"]), at)


class LongPollSubscriber(Subscriber):
    """`GET /trips/{id}/changes?since=&wait=30` again and again on one keep-alive connection."""

    def start(self) -> None:
        if self.transport is None or self.closing:
            return
        path = f"/trips/{TRIP}/changes?since={self.latest}&wait={LONG_POLL_WAIT}"
        self.transport.write(_request("GET", path, self.token))
        if not self.ready.done():
            self.ready.set_result(None)  # armed, as far as the client can tell

    def data_received(self, data: bytes) -> None:
        now = time.perf_counter()
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        head = self.buffer[:end].lower()
        length = 0
        for line in head.split(b"\r\n"):
            if line.startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        if len(self.buffer) < end + 4 + length:
            return
        body, self.buffer = self.buffer[end + 4 : end + 4 + length], self.buffer[end + 4 + length :]
        status = int(head.split(b" ", 2)[1])
        if status == 200:
            self.received(int(json.loads(body)["version"]), now)
            self.start()
        else:
            self.hub.error(f"long poll {status}")
            asyncio.get_running_loop().call_later(RETRY_AFTER, self.start)


# --- a run -----------------------------------------------------------------------------------


async def connect(
    hub: Hub, make: Callable[[], Subscriber], count: int, pace: Callable[[], Awaitable[None]]
) -> None:
    """`count` more subscribers, CONNECT_BATCH at a time, each batch ready before the next."""
    loop = asyncio.get_running_loop()
    while count > 0:
        batch = [make() for _ in range(min(CONNECT_BATCH, count))]
        count -= len(batch)

        async def open_one(subscriber: Subscriber) -> None:
            for _attempt in range(5):
                try:
                    await loop.create_connection(lambda: subscriber, "127.0.0.1", subscriber.port)
                    await asyncio.wait_for(asyncio.shield(subscriber.ready), 60)
                    return
                except (OSError, TimeoutError):
                    hub.error("connect failed")
                    await asyncio.sleep(RETRY_AFTER)

        await asyncio.gather(*(open_one(subscriber) for subscriber in batch))
        hub.subscribers.extend(batch)
        await pace()


async def fan_out(hub: Hub, writer: Client, writes: int) -> dict[str, Any]:
    """`writes` writes one after another; each one's latency to every subscriber."""
    latencies: list[float] = []
    write_seconds: list[float] = []
    missed = 0
    for n in range(writes):
        sent = time.perf_counter()
        status, body = await writer.call(
            "POST",
            f"/trips/{TRIP}/items",
            {"kind": "activity", "title": f"Live {n}"},
            Idempotency_Key=str(uuid.uuid4()),
        )
        write_seconds.append(time.perf_counter() - sent)
        if status != 201:
            hub.error(f"write {status}")
            continue
        version = int(body["version"])
        hub.expect(version)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(hub.everyone.wait(), DELIVERY_DEADLINE)
        for subscriber in hub.subscribers:
            when = next((at for v, at in subscriber.receipts if v >= version), None)
            if when is None:
                missed += 1
            else:
                latencies.append(when - sent)
        await asyncio.sleep(WRITE_GAP)
    return {
        "writes": writes,
        "samples": len(latencies),
        **figures_ms(latencies),
        "missed": missed,
        "write_p50_ms": figures_ms(write_seconds)["p50_ms"],
    }


async def get_p99(client: Client) -> dict[str, Any]:
    seconds, failures = [], 0
    for _ in range(GETS):
        started = time.perf_counter()
        status, _body = await client.call("GET", f"/trips/{TRIP}")
        seconds.append(time.perf_counter() - started)
        failures += status != 200
    return {"requests": GETS, **figures_ms(seconds), "failures": failures}


async def run_transport(
    transport: str,
    backend: Path,
    counts: list[int],
    database_url: str,
    server: LocalPostgres,
    tokens: list[str],
    owner_token: str,
) -> dict[str, Any]:
    api = Api(database_url, backend)
    writer = Client(api.port, owner_token)
    reader = Client(api.port, owner_token)
    hub = Hub()
    result: dict[str, Any] = {"latency": {}, "errors": hub.errors}
    try:
        await writer.wait_until_up()
        if transport == "sse":
            status, _ = await writer.call("GET", "/sync/events?token=probe")
            if status == 404:
                return {"unavailable": "GET /sync/events answers 404 in this checkout"}
        for _ in range(50):  # warm up the worker before its memory is read
            await reader.call("GET", f"/trips/{TRIP}")
        await fan_out(hub, writer, 5)
        result["get_no_subscribers"] = await get_p99(reader)
        rss_before = api.rss_kib()
        kind = SseSubscriber if transport == "sse" else LongPollSubscriber
        unused_tokens = iter(tokens)  # one user per subscriber

        async def pace() -> None:  # the batch's requests are in: FIFO admission is past them
            await reader.call("GET", f"/trips/{TRIP}")

        for count in counts:
            started = time.monotonic()
            await connect(
                hub,
                lambda: kind(hub, api.port, next(unused_tokens)),
                count - len(hub.subscribers),
                pace,
            )
            connect_seconds = time.monotonic() - started
            await asyncio.sleep(0.5)
            figures = await fan_out(hub, writer, WRITES[transport].get(count, 1))
            result["latency"][str(count)] = {
                "connect_s": round(connect_seconds, 1),
                **figures,
                "errors_so_far": sum(hub.errors.values()),
            }
            print(f"  {transport} {count}: {result['latency'][str(count)]}", flush=True)
        idle = len(hub.subscribers)
        await asyncio.sleep(2)  # the last fan-out's re-polls settle
        rss_after = api.rss_kib()
        window = IDLE_WINDOW[transport]
        before_statements = statements(server)
        await asyncio.sleep(window)
        idle_statements = statements(server) - before_statements
        result["idle"] = {
            "subscribers": idle,
            "rss_mib_before": round(rss_before / 1024, 1),
            "rss_mib_after": round(rss_after / 1024, 1),
            "rss_kib_per_subscriber": round((rss_after - rss_before) / max(idle, 1), 1),
            "window_s": window,
            "statements": idle_statements,
            "statements_per_subscriber_per_minute": round(
                idle_statements / max(idle, 1) / (window / 60), 3
            ),
            "get_with_idle_subscribers": await get_p99(reader),
        }
        if transport == "sse":
            result["idle"]["heartbeats_received"] = sum(
                s.heartbeats for s in hub.subscribers if isinstance(s, SseSubscriber)
            )
        return result
    finally:
        for subscriber in hub.subscribers:
            subscriber.close()
        writer.close()
        reader.close()
        await asyncio.sleep(0.5)
        await asyncio.to_thread(api.stop)


def _print_tables(results: dict[str, Any], limit: int) -> None:
    print(
        f"\nLive sync, 1 uvicorn worker, {os.cpu_count()} cores, loopback; open-file limit "
        f"{limit} (raised to the hard limit, inherited by uvicorn)"
    )
    print("Write → event latency: from sending the write (POST /trips/{id}/items) to each")
    print("subscriber's receipt; every subscriber follows the written trip.")
    print("| transport | subscribers | writes | samples | p50 ms | p95 ms | p99 ms | missed |")
    print("|---|---|---|---|---|---|---|---|")
    for name, run in results["runs"].items():
        if "unavailable" in run:
            print(f"| {name} | - | - | - | {run['unavailable']} | | | |")
            continue
        for count, row in run["latency"].items():
            print(
                f"| {name} | {int(count):,} | {row['writes']} | {row['samples']:,} |"
                f" {row['p50_ms']} | {row['p95_ms']} | {row['p99_ms']} | {row['missed']} |"
            )
    print("\nIdle subscribers (after the fan-outs above):")
    print(
        "| transport | idle | worker RSS MiB before → after | KiB per subscriber |"
        " statements/subscriber/min | GET /trips/{id} p99 ms none → idle | errors |"
    )
    print("|---|---|---|---|---|---|---|")
    for name, run in results["runs"].items():
        if "idle" not in run:
            continue
        idle = run["idle"]
        print(
            f"| {name} | {idle['subscribers']:,} | {idle['rss_mib_before']} →"
            f" {idle['rss_mib_after']} | {idle['rss_kib_per_subscriber']} |"
            f" {idle['statements_per_subscriber_per_minute']} ({idle['statements']} in"
            f" {idle['window_s']:.0f} s) | {run['get_no_subscribers']['p99_ms']} →"
            f" {idle['get_with_idle_subscribers']['p99_ms']} | {run['errors'] or 0} |"
        )


async def bench(limit: int) -> dict[str, Any]:
    counts = _ints("BENCH_LIVE_SUBSCRIBERS", "1,1000,10000")
    transports = os.environ.get("BENCH_LIVE_TRANSPORTS", "sse,long_poll").split(",")
    before = os.environ.get("BENCH_LIVE_BEFORE")
    server, url = start_database()
    try:
        command.upgrade(alembic_config(url), "head")
        viewers = seed(url, max(counts))
        owner_token, *tokens = signed_in(url, [OWNER, *viewers], SECRET)
        runs: dict[str, Any] = {}
        here = REPO_DIR / "backend"
        for transport in transports:
            print(f"running {transport} …", flush=True)
            runs[transport] = await _bounded(
                run_transport(transport, here, counts, url, server, tokens, owner_token)
            )
            _save({"partial": True, "runs": runs})  # a later stage that fails loses only itself
        if before:
            before_counts = _ints("BENCH_LIVE_BEFORE_SUBSCRIBERS", "1,1000")
            git = ["git", "-C", before, "rev-parse", "--short", "HEAD"]
            revision = subprocess.run(git, capture_output=True, text=True, check=False)  # noqa: S603
            name = f"long_poll before ({revision.stdout.strip() or before})"
            print(f"running {name} …", flush=True)
            runs[name] = await _bounded(
                run_transport(
                    "long_poll",
                    Path(before) / "backend",
                    before_counts,
                    url,
                    server,
                    tokens,
                    owner_token,
                )
            )
            _save({"partial": True, "runs": runs})
    finally:
        server.stop()
    return {"machine": f"{os.cpu_count()} cores, loopback", "open_file_limit": limit, "runs": runs}


async def _bounded(run: Awaitable[dict[str, Any]]) -> dict[str, Any]:
    """A transport's run, stopped after STAGE_LIMIT seconds (its figures so far are lost, the
    others kept): the bench always ends by itself."""
    try:
        return await asyncio.wait_for(run, STAGE_LIMIT)
    except TimeoutError:
        print(f"  stopped after {STAGE_LIMIT:.0f} s", flush=True)
        return {"unavailable": f"stopped after {STAGE_LIMIT:.0f} s"}


def _save(results: dict[str, Any]) -> Path:
    out = REPO_DIR / "bench-results"
    out.mkdir(exist_ok=True)
    path = out / "live.json"
    path.write_text(json.dumps(results, indent=2))
    return path


def main() -> None:
    limit = raise_open_file_limit()
    started = time.monotonic()
    try:
        import uvloop

        results = uvloop.run(bench(limit))
    except ImportError:
        results = asyncio.run(bench(limit))
    results["duration_s"] = round(time.monotonic() - started)
    _save(results)
    _print_tables(results, limit)
    print(f"\n{results['duration_s']} s in all; bench-results/live.json")


if __name__ == "__main__":
    main()
