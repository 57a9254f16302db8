"""A client that disconnects in the middle of its request body, against a real uvicorn: one
INFO line, no error, no traceback, no 500 (app.api.routing.AppRequest, app.core.errors)."""

import logging
import socket
import threading
import time
from collections.abc import Iterator

import pytest
import uvicorn

from devtools.local_postgres import free_port


@pytest.fixture(scope="module")
def server() -> Iterator[int]:
    """The app under uvicorn on a thread of this process, so its log records reach caplog."""
    from app.main import app

    port = free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, lifespan="off", log_config=None, access_log=False
    )
    running = uvicorn.Server(config)
    thread = threading.Thread(target=running.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not running.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    yield port
    running.should_exit = True
    thread.join(timeout=10)


def _send_half_a_body(port: int, headers: dict[str, str]) -> None:
    body = b'{"email": "half@example.com", "password": "correct horse battery", "name": "Half"}'
    head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    request = (
        f"POST /auth/register HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n{head}\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", port), timeout=5) as client:
        client.sendall(request + body[: len(body) // 2])
        time.sleep(0.2)  # the server is now waiting for the rest
    # Closed: the server's next receive() is http.disconnect.


def _disconnect_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if "client disconnected" in r.getMessage()]


@pytest.mark.parametrize(
    "headers",
    [
        {},  # FastAPI reads the body (it would answer 400 "error parsing the body")
        {"Idempotency-Key": "half-a-body"},  # the route class reads it first (it was a 500)
    ],
    ids=["plain", "idempotency-key"],
)
def test_a_client_gone_mid_body_is_logged_at_info_not_as_an_error(
    server: int, caplog: pytest.LogCaptureFixture, headers: dict[str, str]
) -> None:
    caplog.set_level(logging.INFO)
    _send_half_a_body(server, headers)
    deadline = time.monotonic() + 5
    while not _disconnect_records(caplog) and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.2)  # anything logged after the handler (uvicorn's own complaints) arrives too

    [record] = _disconnect_records(caplog)
    assert record.levelno == logging.INFO
    assert record.getMessage().endswith("POST /auth/register")
    assert record.exc_info is None
    serious = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert serious == [], [r.getMessage() for r in serious]
    assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"
