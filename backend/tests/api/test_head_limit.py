"""Over-long URLs (414) and header sections (431) are problems, in the app and through uvicorn.

In process, through the app and its whole middleware stack; then through a real uvicorn server
with each of its HTTP parsers (httptools, h11) and the options the Dockerfile and `make dev`
give it, sending the request head in pieces as a slow client would, where the server's own
limits come into play. A request head beyond those is uvicorn's plain-text 400, as
docs/operations.md says.
"""

import json
import select
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import uvicorn
from fastapi.testclient import TestClient
from sqlmodel import Session
from starlette.types import Receive, Scope, Send

from app.api.head_limit import H11_MAX_INCOMPLETE_EVENT_SIZE, RequestHeadLimit
from app.core.config import get_settings
from devtools.local_postgres import free_port
from tests import factories, support

DOCKERFILE = Path(__file__).resolve().parents[2] / "Dockerfile"
KIB = 1024
A_16_KB_CURSOR = "c" * 16 * KIB


def test_the_limits_are_the_settings_defaults() -> None:
    settings = get_settings()
    assert (settings.MAX_URL_BYTES, settings.MAX_HEADER_BYTES) == (60 * KIB, 64 * KIB)


def test_a_16_kb_cursor_reaches_the_app_and_is_a_problem(
    client: TestClient, session: Session
) -> None:
    """What uvicorn (with h11's defaults) once answered itself, in plain text."""
    user = factories.make_user(session)
    response = client.get("/trips", params={"cursor": A_16_KB_CURSOR}, headers=support.auth(user))
    body = support.assert_problem(response, 422, "validation_error")
    assert body["errors"][0]["loc"] == ["query", "cursor"]


def test_a_url_over_the_limit_is_a_414_problem(client: TestClient, session: Session) -> None:
    user = factories.make_user(session)
    path = "/trips?padding="  # a parameter the route ignores
    at_limit = path + "p" * (get_settings().MAX_URL_BYTES - len(path))
    assert client.get(at_limit, headers=support.auth(user)).status_code == 200
    body = support.assert_problem(client.get(at_limit + "p"), 414, "uri_too_long")
    assert body["detail"] == "The URL is longer than the limit of 61440 bytes."
    # Refused before routing and authentication: an unknown path, anonymous, is the same.
    support.assert_problem(client.get(f"/nowhere?{'q' * 61 * KIB}"), 414, "uri_too_long")


def test_a_sync_cursor_of_a_thousand_trips_fits(client: TestClient, session: Session) -> None:
    user = factories.make_user(session)
    longest = "c" * 60_000  # the /sync cursor's maxLength: a forged one, refused by the route
    response = client.get("/sync", params={"cursor": longest}, headers=support.auth(user))
    support.assert_problem(response, 400, "invalid_cursor")
    stream = client.get("/sync/events", headers={**support.auth(user), "Last-Event-ID": longest})
    assert stream.status_code != 431


def test_headers_over_the_limit_are_a_431_problem(client: TestClient, session: Session) -> None:
    user = factories.make_user(session)
    headers = {**support.auth(user), "X-Padding": "p" * 64 * KIB}
    body = support.assert_problem(client.get("/trips", headers=headers), 431, "headers_too_large")
    assert body["detail"] == "The request headers are larger than the limit of 65536 bytes."
    # Many small headers count together.
    many = {**support.auth(user), **{f"X-Padding-{n}": "p" * 1000 for n in range(70)}}
    support.assert_problem(client.get("/trips", headers=many), 431, "headers_too_large")
    # A large but allowed set of headers is served.
    allowed = {**support.auth(user), "X-Padding": "p" * 60 * KIB}
    assert client.get("/trips", headers=allowed).status_code == 200


def test_a_browser_can_read_the_refusal(client: TestClient) -> None:
    origin = get_settings().CORS_ORIGINS[0]
    response = client.get(f"/trips?{'q' * 61 * KIB}", headers={"Origin": origin})
    support.assert_problem(response, 414, "uri_too_long")
    assert response.headers["access-control-allow-origin"] == origin
    assert response.headers["x-content-type-options"] == "nosniff"


# --- Through uvicorn ---------------------------------------------------------------------------


async def _served(scope: Scope, receive: Receive, send: Send) -> None:
    await send({"type": "http.response.start", "status": 204, "headers": []})
    await send({"type": "http.response.body", "body": b""})


@contextmanager
def _uvicorn(http: str, h11_max_incomplete_event_size: int | None = None) -> Iterator[int]:
    """A uvicorn server in a thread, in front of the head limits of the app's settings."""
    settings = get_settings()
    limited = RequestHeadLimit(
        _served, max_url_bytes=settings.MAX_URL_BYTES, max_header_bytes=settings.MAX_HEADER_BYTES
    )
    port = free_port()
    config = uvicorn.Config(
        limited,
        host="127.0.0.1",
        port=port,
        http=http,
        lifespan="off",
        log_level="error",
        h11_max_incomplete_event_size=h11_max_incomplete_event_size,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(10)


def _send_head(port: int, target: str, headers: dict[str, str]) -> tuple[int, str, bytes]:
    """Send a GET in 4 KiB pieces, each its own TCP segment; return status, type and body.

    A server that answers before the head is complete closes with our data unread, which may
    reset the connection: sending stops once an answer is there, and a reset that lost the
    answer is tried again.
    """
    head = f"GET {target} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n"
    head += "".join(f"{name}: {value}\r\n" for name, value in headers.items()) + "\r\n"
    data = head.encode()
    for _ in range(5):
        answer = b""
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            try:
                for start in range(0, len(data), 4096):
                    if select.select([sock], [], [], 0)[0]:
                        break  # answered already
                    sock.sendall(data[start : start + 4096])
                    time.sleep(0.003)
                while chunk := sock.recv(65536):
                    answer += chunk
            except (BrokenPipeError, ConnectionResetError):
                pass
        if answer:
            break
    else:
        raise AssertionError("no answer")
    status_line, _, rest = answer.partition(b"\r\n")
    header_block, _, body = rest.partition(b"\r\n\r\n")
    fields = dict(
        line.decode().lower().split(": ", 1) for line in header_block.split(b"\r\n") if line
    )
    return int(status_line.split()[1]), fields.get("content-type", ""), body


# Each parser, with the options the image and `make dev` give uvicorn.
SERVERS: dict[str, int | None] = {"httptools": None, "h11": H11_MAX_INCOMPLETE_EVENT_SIZE}
# Over the app's URL limit, below httptools' (64 KiB); and headers over the app's limit.
A_62_KIB_URL = "/trips?cursor=" + "c" * 62 * KIB
HEADERS_OF_70_KIB = {"X-Padding": "p" * 70 * KIB}


@pytest.mark.parametrize("http", sorted(SERVERS))
def test_uvicorn_lets_the_app_refuse_long_heads_as_problems(http: str) -> None:
    with _uvicorn(http, SERVERS[http]) as port:
        status, media_type, body = _send_head(port, A_62_KIB_URL, {})
        assert (status, media_type) == (414, "application/problem+json"), body
        assert json.loads(body)["code"] == "uri_too_long"

        status, media_type, body = _send_head(port, "/trips", HEADERS_OF_70_KIB)
        assert (status, media_type) == (431, "application/problem+json"), body
        assert json.loads(body)["code"] == "headers_too_large"

        # A head at the largest limits the settings allow, plus one byte, reaches the app.
        most = {"X-Padding": "p" * 128 * KIB}
        assert _send_head(port, A_62_KIB_URL[: 60 * KIB + 1], most)[0] == 414

        assert _send_head(port, "/trips", {"X-Small": "s"})[0] == 204


@pytest.mark.parametrize(
    ("http", "target", "headers"),
    [
        ("httptools", "/" + "u" * 64 * KIB, {}),
        ("h11", "/", {"X-Padding": "p" * 300 * KIB}),
    ],
)
def test_beyond_the_server_limits_uvicorn_answers_400_in_plain_text(
    http: str, target: str, headers: dict[str, str]
) -> None:
    """The rest, as docs/operations.md describes it: what the app never sees."""
    with _uvicorn(http, SERVERS[http]) as port:
        status, media_type, _ = _send_head(port, target, headers)
        assert (status, media_type.split(";")[0]) == (400, "text/plain")


def test_h11_without_the_option_would_answer_a_20_kb_cursor_itself() -> None:
    """Why the option is set: h11's default (16 KiB of a head still arriving, as it does in
    segments over a real network) is far below the app's limits."""
    with _uvicorn("h11") as port:
        status, media_type, _ = _send_head(port, "/trips?cursor=" + "c" * 20 * KIB, {})
        assert (status, media_type.split(";")[0]) == (400, "text/plain")


def test_the_image_runs_uvicorn_with_the_option() -> None:
    setting = f"UVICORN_H11_MAX_INCOMPLETE_EVENT_SIZE={H11_MAX_INCOMPLETE_EVENT_SIZE}"
    assert setting in DOCKERFILE.read_text()
