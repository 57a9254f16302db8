"""Request ids and access lines (app.api.observe, app.core.logs)."""

import json
import logging
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.core.config import LogFormat, get_settings
from app.core.logs import JsonFormatter, new_request_id
from app.main import create_app
from tests import support

BACKEND = Path(__file__).resolve().parents[2]


def _is_fresh_id(value: str) -> bool:
    return len(value) == 32 and int(value, 16) >= 0


def test_new_request_ids_differ_and_differ_after_a_fork() -> None:
    ids = {new_request_id() for _ in range(1000)}
    assert len(ids) == 1000
    reader, writer = os.pipe()
    child = os.fork()
    if child == 0:  # the forked process: its ids share no prefix with the parent's
        os.write(writer, new_request_id().encode())
        os._exit(0)
    os.waitpid(child, 0)
    forked = os.read(reader, 64).decode()
    os.close(reader)
    os.close(writer)
    assert _is_fresh_id(forked)
    assert forked[:16] != new_request_id()[:16]


def test_a_client_request_id_is_echoed_and_one_is_made_otherwise(client: TestClient) -> None:
    sent = client.get("/health/live", headers={"X-Request-ID": "trace-0a1b/2c3d:4"})
    assert sent.headers["x-request-id"] == "trace-0a1b/2c3d:4"

    made = [client.get("/health/live").headers["x-request-id"] for _ in range(2)]
    assert all(_is_fresh_id(value) for value in made)
    assert made[0] != made[1]

    # Not printable, too long, empty: replaced, never echoed.
    for unusable in ("has space", "x" * 129, "", "tab\there", "é"):
        answered = client.get("/health/live", headers={b"X-Request-ID": unusable.encode()})
        assert _is_fresh_id(answered.headers["x-request-id"]), unusable
    assert (
        client.get("/health/live", headers={"X-Request-ID": "y" * 128}).headers["x-request-id"]
        == "y" * 128
    )


def test_problems_carry_the_request_id_in_their_header_only(client: TestClient) -> None:
    """Not in the body: a hidden and a missing resource answer the same bytes."""
    answered = client.get(f"/trips/{uuid.uuid4()}", headers={"X-Request-ID": "problem-1"})
    body = support.assert_problem(answered, 401, "not_authenticated")
    assert answered.headers["x-request-id"] == "problem-1"
    assert "problem-1" not in answered.text
    made = client.get("/no/such/path")
    support.assert_problem(made, 404)
    assert _is_fresh_id(made.headers["x-request-id"])
    assert "request_id" not in body


@pytest.mark.usefixtures("connection")
def test_an_unexpected_error_carries_the_request_id_too() -> None:
    app = create_app()

    @app.get("/_test/boom")
    def boom() -> None:
        raise RuntimeError("boom")

    client = TestClient(app, raise_server_exceptions=False)
    answered = client.get("/_test/boom", headers={"X-Request-ID": "boom-7"})
    support.assert_problem(answered, 500, "internal_error")
    # Sent from outside every middleware (Starlette's ServerErrorMiddleware), yet with the id.
    assert answered.headers["x-request-id"] == "boom-7"


@pytest.mark.usefixtures("connection")
def test_the_access_line_has_the_route_status_duration_and_request_id(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = create_app(get_settings().model_copy(update={"LOG_FORMAT": LogFormat.JSON}))
    client = TestClient(app, raise_server_exceptions=False)
    trip_id = uuid.uuid4()
    with caplog.at_level(logging.INFO, logger="app.access"):
        client.get(f"/trips/{trip_id}", headers={"X-Request-ID": "access-9"})
    [record] = [record for record in caplog.records if record.name == "app.access"]
    line = json.loads(JsonFormatter().format(record))
    assert line["request_id"] == "access-9"
    assert line["logger"] == "app.access"
    assert line["level"] == "INFO"
    assert (line["method"], line["route"], line["status"]) == ("GET", "/trips/{trip_id}", 401)
    assert 0 <= line["duration_ms"] < 10_000
    assert line["message"] == "GET /trips/{trip_id} 401"
    assert str(trip_id) not in json.dumps(line)  # the template, never the raw path
    assert line["time"].endswith("+00:00")


def test_log_format_json_writes_one_json_object_per_line() -> None:
    """A process started with LOG_FORMAT=json: every line it logs is a JSON object."""
    script = (
        "import logging\n"
        "from fastapi.testclient import TestClient\n"
        "from app.main import app\n"
        "client = TestClient(app)\n"
        "client.get('/health/live', headers={'X-Request-ID': 'json-line-1'})\n"
        "client.get('/no/such/path', headers={'X-Request-ID': 'json-line-2'})\n"
        "logging.getLogger('app.test').warning('outside any request')\n"
    )
    environment = {
        **os.environ,
        "LOG_FORMAT": "json",
        "LOG_LEVEL": "INFO",
        "DATABASE_URL": get_settings().database_url,
    }
    finished = subprocess.run(
        [sys.executable, "-c", script],
        cwd=BACKEND,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    lines = [json.loads(line) for line in finished.stderr.splitlines() if line.strip()]
    access = [line for line in lines if line["logger"] == "app.access"]
    assert [(line["request_id"], line["route"], line["status"]) for line in access] == [
        ("json-line-1", "/health/live", 200),
        ("json-line-2", "unmatched", 404),
    ]
    assert {"time", "level", "logger", "message", "duration_ms", "method"} <= access[0].keys()
    [other] = [line for line in lines if line["logger"] == "app.test"]
    assert other["request_id"] is None
    assert other["level"] == "WARNING"
