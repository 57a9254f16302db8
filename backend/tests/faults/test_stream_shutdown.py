"""Event streams end when uvicorn stops: open streams do not hold a stopping server up."""

import http.client
import signal
import time
from collections.abc import Callable

import pytest

from tests.faults.harness import ApiProcess, Database, create_trip, register, report

pytestmark = pytest.mark.faults

STREAMS = 20


def _open_stream(api: ApiProcess, token: str) -> http.client.HTTPResponse:
    connection = http.client.HTTPConnection("127.0.0.1", api.port, timeout=10)
    connection.request("GET", "/sync/events", headers={"Authorization": f"Bearer {token}"})
    response = connection.getresponse()
    assert response.status == 200, response.read()
    assert response.getheader("content-type", "").startswith("text/event-stream")
    first = [response.readline() for _ in range(2)]  # its first event: the trip's head
    assert b"event: version" in first[0], first
    return response


def test_open_streams_end_when_the_server_stops(
    database: Database, start_api: Callable[..., ApiProcess]
) -> None:
    api = start_api(SSE_MAX_STREAMS_PER_USER=str(STREAMS))
    alice = register(api, database, "Alice")
    create_trip(api, alice, "Streams")
    streams = [_open_stream(api, alice.token) for _ in range(STREAMS)]

    assert api.process is not None
    started = time.monotonic()
    api.process.send_signal(signal.SIGTERM)
    ended = 0
    for stream in streams:
        while stream.readline():  # the rest of the stream, up to its end
            pass
        ended += 1
    api.process.wait(timeout=15)
    stopped = time.monotonic() - started
    report(
        "Event streams at shutdown",
        {
            "streams open": STREAMS,
            "streams ended": ended,
            "server stopped after": f"{stopped:.2f} s",
        },
    )
    assert ended == STREAMS
    # uvicorn shuts down gracefully and then re-raises the SIGTERM it caught.
    assert api.process.returncode in (0, -signal.SIGTERM)
    assert "Traceback" not in api.log(), api.log()
