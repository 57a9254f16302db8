"""What the fault tests share: a durable PostgreSQL of their own, a real uvicorn process on a
free 127.0.0.1 port, an HTTP client that records every answer and never raises, seeding
through the API, and one way to print the figures docs/reliability.md quotes.

Nothing here touches the machine's own PostgreSQL server: every database is a LocalPostgres
in the test's temporary folder, and every load is bounded in count and time.
"""

import http.client
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg2
import psycopg2.extensions

from alembic import command
from app.core.db import BACKEND_DIR, alembic_config
from devtools.local_postgres import LocalPostgres, free_port

PASSWORD = "correct horse battery"
TRIP_DATES = {"start_date": "2027-05-01", "end_date": "2027-05-04"}
# Settings every API process of the fault suite runs with (plus the test's own).
BASE_SETTINGS = {
    "ENVIRONMENT": "test",
    "LOG_LEVEL": "WARNING",
    "EMAIL_DELIVERY": "memory",
    "ARGON2_TIME_COST": "1",
    "ARGON2_MEMORY_COST_KIB": "1024",
    "FRONTEND_DIR": "",
}


# --- the database ----------------------------------------------------------------------------


@dataclass
class Database:
    """A durable PostgreSQL of the test's own, migrated to the head."""

    server: LocalPostgres
    url: str

    @classmethod
    def start(cls) -> "Database":
        # Not under pytest's tmp_path: another pytest run starting meanwhile resets that
        # tree to mode 0700, and the server (its own system user under root) loses its data.
        folder = Path(tempfile.mkdtemp(prefix="tripsync-faults-"))
        server = LocalPostgres(folder / "pg", durable=True)
        server.start()
        url = server.ensure_database("tripsync")
        command.upgrade(alembic_config(url), "head")
        return cls(server, url)

    def remove(self) -> None:
        """Stop the server and delete its data."""
        try:
            self.server.stop()
        finally:
            shutil.rmtree(self.server.data_dir.parent, ignore_errors=True)

    @contextmanager
    def connect(self) -> Iterator[psycopg2.extensions.connection]:
        """A direct connection, outside the app (autocommit unless told otherwise)."""
        connection = psycopg2.connect(self.url, connect_timeout=5)
        connection.autocommit = True
        try:
            yield connection
        finally:
            connection.close()

    def rows(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        with self.connect() as connection, connection.cursor() as cursor:
            cursor.execute(sql, params)
            return list(cursor.fetchall())

    def execute(self, sql: str, *params: Any) -> None:
        with self.connect() as connection, connection.cursor() as cursor:
            cursor.execute(sql, params)

    @contextmanager
    def trip_locked(self, trip_id: str) -> Iterator[None]:
        """Hold the trip's row lock from another connection: every write to it then waits."""
        with self.connect() as connection:
            connection.autocommit = False
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1 FROM trips WHERE id = %s FOR UPDATE", (trip_id,))
            try:
                yield
            finally:
                connection.rollback()

    def server_pids(self) -> list[int]:
        """The postmaster (from postmaster.pid) and every process it has started (/proc)."""
        postmaster = int((self.server.data_dir / "postmaster.pid").read_text().split()[0])
        children = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue  # gone meanwhile
            # The command name is in parentheses and may hold spaces; the parent follows it.
            if int(stat.rsplit(")", 1)[1].split()[1]) == postmaster:
                children.append(int(entry.name))
        return [postmaster, *children]

    @contextmanager
    def frozen(self) -> Iterator[list[int]]:
        """Hang the server as a frozen machine would: SIGSTOP on every one of its processes
        (the postmaster first, so it starts no new ones), SIGCONT on all of them after, always.
        The kernel still accepts connections and acknowledges packets; nothing answers."""
        [postmaster, *_] = stopped = self.server_pids()
        try:
            os.kill(postmaster, signal.SIGSTOP)
            stopped = self.server_pids()  # with the postmaster stopped, the list is final
            for pid in stopped[1:]:
                os.kill(pid, signal.SIGSTOP)
            yield stopped
        finally:
            for pid in stopped:
                with suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGCONT)


# --- the API process -------------------------------------------------------------------------


class ApiProcess:
    """`uvicorn app.main:app` on a free 127.0.0.1 port, as production runs it (one worker)."""

    def __init__(self, database_url: str, log_path: Path, **settings: str) -> None:
        self.environment = {
            **os.environ,
            **BASE_SETTINGS,
            "DATABASE_URL": database_url,
            **settings,
        }
        self.environment.pop("POSTGRES_SERVER", None)
        self.log_path = log_path
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, seconds: float = 30) -> float:
        """Start and wait until /health/live answers; returns how long that took."""
        started = time.monotonic()
        self.port = free_port()
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "uvicorn",
                    "app.main:app",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                    "--log-level",
                    "warning",
                    "--no-access-log",
                ],
                env=self.environment,
                cwd=BACKEND_DIR,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        while call(self, "GET", "/health/live", timeout=1).status != 200:
            if self.process.poll() is not None or time.monotonic() - started > seconds:
                self.stop()
                raise RuntimeError(f"the API did not start:\n{self.log()}")
            time.sleep(0.05)
        return time.monotonic() - started

    def kill(self) -> None:
        """SIGKILL: no shutdown, no cleanup, connections dropped mid-request."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


# --- HTTP ------------------------------------------------------------------------------------


@dataclass
class Answer:
    """One request and what came back: a status, or the transport error instead."""

    method: str
    path: str
    started: float
    elapsed: float
    status: int | None = None
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    error: str | None = None

    @property
    def ended(self) -> float:
        return self.started + self.elapsed

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    @property
    def refused(self) -> bool:
        """The connection was refused: the request never reached a server."""
        return self.error == "ConnectionRefusedError"

    @property
    def code(self) -> str | None:
        return self.body.get("code") if isinstance(self.body, dict) else None


def call(
    api: ApiProcess,
    method: str,
    path: str,
    *,
    token: str | None = None,
    json_body: Any = None,
    form: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 20,
) -> Answer:
    """Send one request on a fresh connection; never raises."""
    sent = dict(headers or {})
    body: bytes | None = None
    if token is not None:
        sent["Authorization"] = f"Bearer {token}"
    if json_body is not None:
        body, sent["Content-Type"] = json.dumps(json_body).encode(), "application/json"
    elif form is not None:
        body = urllib.parse.urlencode(form).encode()
        sent["Content-Type"] = "application/x-www-form-urlencoded"
    started = time.monotonic()
    connection = http.client.HTTPConnection("127.0.0.1", api.port, timeout=timeout)
    try:
        connection.request(method, path, body=body, headers=sent)
        response = connection.getresponse()
        raw = response.read()
        status, received = response.status, {k.lower(): v for k, v in response.getheaders()}
    except (OSError, http.client.HTTPException) as error:
        return Answer(method, path, started, time.monotonic() - started, error=type(error).__name__)
    finally:
        connection.close()
    try:
        parsed: Any = json.loads(raw) if raw else None
    except ValueError:
        parsed = raw.decode(errors="replace")
    return Answer(method, path, started, time.monotonic() - started, status, parsed, received)


def expect(answer: Answer, status: int) -> Any:
    assert answer.status == status, (answer.method, answer.path, answer.status, answer.body)
    return answer.body


# --- people and trips, through the API ---------------------------------------------------------


@dataclass
class Person:
    name: str
    email: str
    token: str
    participant_id: str = ""


def register(api: ApiProcess, database: Database, name: str) -> Person:
    """A user with a verified address (set in the database: the mail stays in the process)."""
    email = f"{name.lower()}-{uuid.uuid4().hex[:8]}@example.com"
    expect(
        call(
            api,
            "POST",
            "/auth/register",
            json_body={"email": email, "password": PASSWORD, "full_name": name},
        ),
        202,
    )
    database.execute("UPDATE users SET email_verified_at = now() WHERE email = %s", email)
    login = call(api, "POST", "/auth/login", form={"username": email, "password": PASSWORD})
    return Person(name, email, expect(login, 200)["access_token"])


def create_trip(api: ApiProcess, owner: Person, name: str) -> str:
    body = {"name": name, **TRIP_DATES, "base_currency": "EUR"}
    trip_id: str = expect(call(api, "POST", "/trips", token=owner.token, json_body=body), 201)["id"]
    return trip_id


def join_as_editor(api: ApiProcess, owner: Person, trip_id: str, person: Person) -> None:
    invitation = call(
        api,
        "POST",
        f"/trips/{trip_id}/invitations",
        token=owner.token,
        json_body={"email": person.email, "role": "editor"},
    )
    invitation_id = expect(invitation, 201)["id"]
    expect(call(api, "POST", f"/invitations/{invitation_id}/accept", token=person.token), 200)


def add_guest(api: ApiProcess, owner: Person, trip_id: str, name: str) -> str:
    guest = call(
        api, "POST", f"/trips/{trip_id}/guests", token=owner.token, json_body={"name": name}
    )
    guest_id: str = expect(guest, 201)["id"]
    return guest_id


def participant_of(api: ApiProcess, person: Person, trip_id: str) -> str:
    listed = expect(call(api, "GET", f"/trips/{trip_id}/participants", token=person.token), 200)
    [mine] = [p["id"] for p in listed["items"] if p["is_member"] and p["name"] == person.name]
    return str(mine)


# --- writes a test tracks ----------------------------------------------------------------------


@dataclass
class Write:
    """One intended create, with its client-chosen id and Idempotency-Key, and every answer."""

    kind: str  # "item" or "expense"
    trip_id: str
    author: Person
    body: dict[str, Any]
    key: str = field(default_factory=lambda: str(uuid.uuid4()))
    answers: list[Answer] = field(default_factory=list)

    @property
    def id(self) -> str:
        return str(self.body["id"])

    @property
    def path(self) -> str:
        return f"/trips/{self.trip_id}/{'items' if self.kind == 'item' else 'expenses'}"

    def send(self, api: ApiProcess, timeout: float = 20) -> Answer:
        answer = call(
            api,
            "POST",
            self.path,
            token=self.author.token,
            json_body=self.body,
            headers={"Idempotency-Key": self.key},
            timeout=timeout,
        )
        self.answers.append(answer)
        return answer

    @property
    def acknowledged(self) -> bool:
        return any(answer.ok for answer in self.answers)


def item_write(trip_id: str, author: Person, participants: list[str], n: int) -> Write:
    body = {
        "id": str(uuid.uuid4()),
        "kind": "activity",
        "title": f"{author.name} item {n}",
        "day": TRIP_DATES["start_date"],
        "participant_ids": participants,
    }
    return Write("item", trip_id, author, body)


def expense_write(trip_id: str, author: Person, participants: list[str], n: int) -> Write:
    """An expense paid by the first two participants, split equally between all of them."""
    amount = 1000 + n
    first_payer = amount * 6 // 10
    body = {
        "id": str(uuid.uuid4()),
        "title": f"{author.name} expense {n}",
        "amount_minor": amount,
        "currency": "EUR",
        "spent_on": TRIP_DATES["start_date"],
        "payers": [
            {"participant_id": participants[0], "amount_minor": first_payer},
            {"participant_id": participants[1], "amount_minor": amount - first_payer},
        ],
        "split_mode": "equal",
        "splits": [{"participant_id": p} for p in participants],
    }
    return Write("expense", trip_id, author, body)


def present_ids(database: Database, table: str, ids: list[str]) -> set[str]:
    if not ids:
        return set()
    rows = database.rows(f"SELECT id::text FROM {table} WHERE id = ANY(%s::uuid[])", ids)  # noqa: S608 (fixed table names)
    return {row[0] for row in rows}


# --- load --------------------------------------------------------------------------------------


class Load:
    """Worker threads that repeat an action until stopped or a hard deadline, whichever first."""

    def __init__(self, max_seconds: float) -> None:
        self.stop_event = threading.Event()
        self.deadline = time.monotonic() + max_seconds
        self.threads: list[threading.Thread] = []
        self.started = 0.0
        self.stopped = 0.0

    def running(self) -> bool:
        return not self.stop_event.is_set() and time.monotonic() < self.deadline

    def add(self, step: Callable[[], bool | None], pause: float = 0.01) -> None:
        """`step` runs again and again; returning False ends that worker early."""

        def work() -> None:
            while self.running():
                if step() is False:
                    return
                time.sleep(pause)

        self.threads.append(threading.Thread(target=work, daemon=True))

    def __enter__(self) -> "Load":
        self.started = time.monotonic()
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop_event.set()
        for thread in self.threads:
            thread.join(timeout=30)
        self.stopped = time.monotonic()
        assert not any(thread.is_alive() for thread in self.threads), "a load worker hung"


# --- figures -----------------------------------------------------------------------------------


def latency_figures(answers: list[Answer]) -> dict[str, float]:
    if not answers:
        return {"max_latency_ms": 0.0, "median_latency_ms": 0.0}
    seconds = [answer.elapsed for answer in answers]
    return {
        "max_latency_ms": round(max(seconds) * 1000, 1),
        "median_latency_ms": round(statistics.median(seconds) * 1000, 1),
    }


def report(title: str, figures: dict[str, Any]) -> None:
    """Print the figures of a run (visible with `pytest -s`; `make test-faults` shows them)."""
    print(f"\n[faults] {title}")
    for name, value in figures.items():
        print(f"  {name}: {value}")


def status_counts(answers: list[Answer]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for answer in answers:
        label = str(answer.status) if answer.status is not None else (answer.error or "?")
        if answer.code is not None and not answer.ok:
            label += f" {answer.code}"
        counts[label] = counts.get(label, 0) + 1
    return dict(sorted(counts.items()))
