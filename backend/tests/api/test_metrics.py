"""GET /metrics (app.api.metrics): only with METRICS_TOKEN, and what a scrape shows."""

import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr
from sqlalchemy import Engine, text
from sqlmodel import Session

from app.core.config import get_settings
from app.core.deps import SessionDep
from app.feed.events import reread_worker_state
from app.main import create_app
from app.sync.live import Listener
from app.users.models import User
from tests import factories, support

BACKEND = Path(__file__).resolve().parents[2]
TOKEN = "metrics-" + "x" * 32
SCRAPE = {"Authorization": f"Bearer {TOKEN}"}
DURATION = "tripsync_http_request_duration_seconds"

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def _scrape(client: TestClient) -> Samples:
    response = client.get("/metrics", headers=SCRAPE)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def _value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def _with_metrics(**settings: object) -> FastAPI:
    changes = {"METRICS_TOKEN": SecretStr(TOKEN), **settings}
    return create_app(get_settings().model_copy(update=changes))


@pytest.mark.usefixtures("connection")
def test_metrics_are_served_only_to_the_holder_of_the_token() -> None:
    public = TestClient(create_app(), raise_server_exceptions=False)  # METRICS_TOKEN unset
    support.assert_problem(public.get("/metrics"), 404, "not_found")
    support.assert_problem(public.get("/metrics", headers=SCRAPE), 404, "not_found")

    client = TestClient(_with_metrics(), raise_server_exceptions=False)
    support.assert_problem(client.get("/metrics"), 401, "not_authenticated")
    for wrong in (f"Bearer {TOKEN}x", TOKEN, "Bearer ", f"Basic {TOKEN}"):
        refused = client.get("/metrics", headers={"Authorization": wrong})
        support.assert_problem(refused, 401, "not_authenticated")
    support.assert_problem(client.post("/metrics", headers=SCRAPE), 405)
    assert client.get("/metrics", headers=SCRAPE).status_code == 200


@pytest.mark.usefixtures("connection")
def test_request_latency_is_labelled_by_route_template_and_status() -> None:
    client = TestClient(_with_metrics(), raise_server_exceptions=False)
    route = "/trips/{trip_id}"
    before = _scrape(client)
    trip_ids = [uuid.uuid4(), uuid.uuid4()]
    for trip_id in trip_ids:
        support.assert_problem(client.get(f"/trips/{trip_id}"), 401)
    assert client.get("/health/live").status_code == 200
    support.assert_problem(client.get(f"/no/such/{uuid.uuid4()}"), 404)
    after = _scrape(client)

    def count(name: str, **labels: str) -> float:
        return _value(after, name, **labels) - _value(before, name, **labels)

    assert count(f"{DURATION}_count", route=route, method="GET", status="401") == 2
    assert count(f"{DURATION}_count", route="/health/live", method="GET", status="200") == 1
    assert count(f"{DURATION}_count", route="unmatched", method="GET", status="404") == 1
    bucket = _value(after, f"{DURATION}_bucket", route=route, method="GET", status="401", le="+Inf")
    assert bucket >= 2
    labels = " ".join(value for _, pairs in after for _, value in pairs)
    assert not any(str(trip_id) in labels for trip_id in trip_ids)  # no raw paths
    for gauge in ("tripsync_db_pool_checked_out", "tripsync_db_pool_overflow"):
        assert (gauge, frozenset()) in after
    assert _value(after, "tripsync_db_pool_size") == get_settings().DB_POOL_SIZE
    assert ("tripsync_sse_streams", frozenset()) in after
    assert ("tripsync_long_polls_waiting", frozenset()) in after


@pytest.mark.usefixtures("connection")
def test_the_outbox_backlog_counts_unsent_mail() -> None:
    client = TestClient(_with_metrics(), raise_server_exceptions=False)
    before = _value(_scrape(client), "tripsync_outbox_backlog")
    registered = client.post(
        "/auth/register",
        json={
            "email": f"metrics-{uuid.uuid4().hex[:8]}@example.com",
            "password": support.PASSWORD,
            "full_name": "Metrics",
        },
    )
    assert registered.status_code == 202, registered.text  # queues a verification mail
    assert _value(_scrape(client), "tripsync_outbox_backlog") == before + 1


POOL_TIMEOUT = 0.5


@pytest.fixture
def two_slots(engine: Engine, environment: Callable[..., None]) -> FastAPI:
    """An app (committed sessions, its own pool of two) that admits two requests at once."""
    environment(
        DATABASE_URL=engine.url.render_as_string(False),
        THREADPOOL_SIZE="4",
        DB_POOL_SIZE="2",
        DB_MAX_OVERFLOW="0",
        DB_POOL_TIMEOUT=str(POOL_TIMEOUT),
    )
    return _with_metrics()


def test_pool_use_the_admission_queue_and_503s_are_counted(two_slots: FastAPI) -> None:
    app = two_slots
    entered, release = threading.Semaphore(0), threading.Event()

    @app.get("/_test/hold")
    def hold(session: SessionDep) -> int:
        session.exec(text("SELECT 1"))  # type: ignore[call-overload]
        entered.release()
        release.wait(10)
        return 1

    with TestClient(app, raise_server_exceptions=False) as client:
        before = _scrape(client)
        holders = [threading.Thread(target=lambda: client.get("/_test/hold")) for _ in range(2)]
        for thread in holders:
            thread.start()
        waiting: list[int] = []
        try:
            assert entered.acquire(timeout=10)
            assert entered.acquire(timeout=10)
            busy = threading.Thread(
                target=lambda: waiting.append(client.get("/_test/hold").status_code)
            )
            busy.start()
            time.sleep(POOL_TIMEOUT / 3)
            during = _scrape(client)  # while two hold their connections and one waits
            busy.join(10)
        finally:
            release.set()
            for thread in holders:
                thread.join(10)
        after = _scrape(client)

    assert waiting == [503]
    assert _value(during, "tripsync_db_pool_checked_out") == 2
    assert _value(during, "tripsync_db_pool_overflow") == 0
    assert _value(during, "tripsync_admission_waiting", admission="database") == 1
    assert _value(after, "tripsync_admission_waiting", admission="database") == 0

    def count(name: str, **labels: str) -> float:
        return _value(after, name, **labels) - _value(before, name, **labels)

    assert count(f"{DURATION}_count", route="/_test/hold", method="GET", status="503") == 1
    assert count(f"{DURATION}_count", route="/_test/hold", method="GET", status="200") == 2
    assert count("tripsync_http_server_errors_total", status="503", code="server_busy") == 1
    assert count("tripsync_admission_timeouts_total", admission="database") == 1
    assert count("tripsync_admission_wait_seconds_count", admission="database") == 3
    # The two admitted at once are in the first buckets; the one that waited out the timeout
    # is not.
    fast = count("tripsync_admission_wait_seconds_bucket", admission="database", le="0.25")
    assert fast == 2


def test_several_workers_are_added_up_in_multiprocess_mode(tmp_path: Path) -> None:
    """Two processes with one PROMETHEUS_MULTIPROC_DIR: a scrape of either counts both."""
    script = (
        "import sys\n"
        "from fastapi.testclient import TestClient\n"
        "from app.main import app\n"
        "client = TestClient(app)\n"
        "for _ in range(int(sys.argv[1])):\n"
        "    client.get('/health/live')\n"
        "print(client.get('/metrics', headers={'Authorization': sys.argv[2]}).text)\n"
    )
    environment = {
        **os.environ,
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path),
        "METRICS_TOKEN": TOKEN,
        "DATABASE_URL": get_settings().database_url,
    }

    def worker(requests: int) -> Samples:
        finished = subprocess.run(
            [sys.executable, "-c", script, str(requests), SCRAPE["Authorization"]],
            cwd=BACKEND,
            env=environment,
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        return {
            (sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(finished.stdout)
            for sample in family.samples
        }

    worker(2)
    samples = worker(3)
    live = {"route": "/health/live", "method": "GET", "status": "200"}
    assert _value(samples, f"{DURATION}_count", **live) == 5
    assert ("tripsync_outbox_backlog", frozenset()) in samples
    assert ("tripsync_db_pool_size", frozenset()) in samples


@pytest.mark.usefixtures("connection")
def test_open_event_streams_and_waiting_long_polls_are_sampled_when_scraped() -> None:
    app = _with_metrics()
    listener = Listener(get_settings(), reread_worker_state)  # not started: nothing connects
    app.state.listener = listener
    client = TestClient(app, raise_server_exceptions=False)
    streams = [listener.subscribe(uuid.uuid4()) for _ in range(3)]
    listener.unsubscribe(streams.pop())
    with listener.watch(uuid.uuid4(), 1):
        samples = _scrape(client)
    assert _value(samples, "tripsync_sse_streams") == 2
    assert _value(samples, "tripsync_long_polls_waiting") == 1
    app.state.listener = None  # stopped
    samples = _scrape(client)
    assert _value(samples, "tripsync_sse_streams") == 0


@pytest.fixture
def committed_user(engine: Engine) -> Iterator[User]:
    """A user whose writes commit (streams are woken by commits), deleted with their trips."""
    with Session(engine, expire_on_commit=False) as session:
        user = factories.make_user(session)
    yield user
    with engine.begin() as connection:
        connection.execute(text("DELETE FROM trips WHERE created_by = :u"), {"u": user.id})
        connection.execute(
            text("DELETE FROM idempotency_keys WHERE scope LIKE '%' || :u"), {"u": str(user.id)}
        )
        connection.execute(text("DELETE FROM users WHERE id = :u"), {"u": user.id})


def test_an_event_stream_is_one_request_when_opened_and_a_stream_until_it_ends(
    committed_user: User,
) -> None:
    """Its body is handed off (app.core.handoff): the request is over once its headers are
    out, so it is counted then, once, and not held in the latency histogram for hours."""
    app = _with_metrics()
    route = {"route": "/sync/events", "method": "GET", "status": "200"}
    with TestClient(app) as client:
        factories.create_trip(client, committed_user)  # so the stream starts with an event
        before = _scrape(client)
        first_event = threading.Event()

        def read() -> None:
            headers = support.auth(committed_user)
            with client.stream("GET", "/sync/events", headers=headers) as response:
                assert response.status_code == 200
                for line in response.iter_lines():
                    if line.startswith("event:"):
                        first_event.set()

        reader = threading.Thread(target=read)
        reader.start()
        try:
            assert first_event.wait(10)
            during = _scrape(client)
        finally:
            listener = app.state.listener
            listener._loop.call_soon_threadsafe(listener.close_streams)
            reader.join(10)
        after = _scrape(client)

    count = f"{DURATION}_count"
    assert _value(during, count, **route) - _value(before, count, **route) == 1
    assert _value(during, "tripsync_sse_streams") == 1
    assert _value(after, count, **route) - _value(before, count, **route) == 1
    assert _value(after, "tripsync_sse_streams") == 0
    assert _value(during, f"{DURATION}_bucket", le="1.0", **route) == _value(during, count, **route)
