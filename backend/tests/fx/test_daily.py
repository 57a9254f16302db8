"""The worker's daily fetch of FX_SOURCE_URL, against a local HTTP server on 127.0.0.1."""

import http.server
import logging
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

import pytest
from sqlmodel import Session, select

from app.core.config import Settings
from app.fx.daily import DailyRates, expected_day
from app.fx.models import FxRate
from tests.fx.support import ecb_xml

FRIDAY = {"2024-01-05": {"USD": "1.0921", "JPY": "158.54"}}
# Friday 5 January 2024, 17:00 in Frankfurt: that day's rates are out.
FRIDAY_EVENING = datetime(2024, 1, 5, 16, 0, tzinfo=UTC)


@dataclass
class Site:
    """What the local server answers, and the requests it got."""

    body: bytes = b""
    status: int = 200
    delay: float = 0.0
    hits: list[str] = field(default_factory=list)
    url: str = ""


@pytest.fixture
def site() -> Iterator[Site]:
    state = Site()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state.hits.append(self.path)
            time.sleep(state.delay)
            self.send_response(state.status)
            self.send_header("Content-Length", str(len(state.body)))
            self.end_headers()
            self.wfile.write(state.body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/eurofxref-daily.xml"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


def _job(url: str | None, timeout: float = 5.0) -> DailyRates:
    return DailyRates(Settings(FX_SOURCE_URL=url, FX_FETCH_TIMEOUT_SECONDS=timeout))


def _stored(session: Session) -> set[tuple[date, str]]:
    session.expire_all()
    return {(rate.day, rate.currency) for rate in session.exec(select(FxRate)).all()}


def test_the_expected_day_follows_ecbs_publication() -> None:
    # ECB publishes around 16:00 Frankfurt time, on weekdays.
    assert expected_day(datetime(2024, 1, 5, 14, 0, tzinfo=UTC)) == date(2024, 1, 4)
    assert expected_day(FRIDAY_EVENING) == date(2024, 1, 5)
    assert expected_day(datetime(2024, 1, 7, 12, 0, tzinfo=UTC)) == date(2024, 1, 5)  # Sunday
    assert expected_day(datetime(2024, 1, 8, 9, 0, tzinfo=UTC)) == date(2024, 1, 5)  # Monday


def test_the_job_fetches_missing_rates_once(session: Session, site: Site) -> None:
    site.body = ecb_xml(FRIDAY)
    job = _job(site.url)
    result = job.run_once(now=FRIDAY_EVENING)
    assert result is not None
    assert (result.days, result.rates) == (1, 2)
    assert _stored(session) == {(date(2024, 1, 5), "USD"), (date(2024, 1, 5), "JPY")}
    # Up to date: no second fetch, by this job or a fresh one (a restarted worker).
    assert job.run_once(now=FRIDAY_EVENING) is None
    assert _job(site.url).run_once(now=datetime(2024, 1, 7, tzinfo=UTC)) is None
    assert len(site.hits) == 1


def test_a_holiday_costs_one_fetch(session: Session, site: Site) -> None:
    site.body = ecb_xml(FRIDAY)
    job = _job(site.url)
    job.run_once(now=FRIDAY_EVENING)
    monday = datetime(2024, 1, 8, 17, 0, tzinfo=UTC)  # say ECB was closed: still Friday's file
    assert job.run_once(now=monday) is not None
    assert job.run_once(now=monday) is None
    assert len(site.hits) == 2


@pytest.mark.parametrize(
    ("status", "body", "delay"),
    [
        (404, b"<html>Not found</html>", 0.0),
        (200, b"<html><body>Maintenance</body></html>", 0.0),
        (200, b"Date,USD,\n2024-01-05,1.1,\n2024-01-04,broken,\n", 0.0),
        (200, b"", 1.0),  # slower than the timeout
    ],
)
def test_a_failed_fetch_is_logged_and_changes_nothing(
    session: Session,
    site: Site,
    caplog: pytest.LogCaptureFixture,
    status: int,
    body: bytes,
    delay: float,
) -> None:
    site.status, site.body, site.delay = status, body, delay
    job = _job(site.url, timeout=0.3)
    with caplog.at_level(logging.WARNING, logger="app.fx.daily"):
        assert job.run_once(now=FRIDAY_EVENING) is None
    assert "fx: fetching" in caplog.text
    assert _stored(session) == set()
    # Not marked as fetched: the next check tries again.
    site.status, site.body, site.delay = 200, ecb_xml(FRIDAY), 0.0
    assert job.run_once(now=FRIDAY_EVENING) is not None


def test_an_unreachable_source_does_not_stop_the_job(
    session: Session, caplog: pytest.LogCaptureFixture
) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with caplog.at_level(logging.WARNING, logger="app.fx.daily"):
        assert _job(f"http://127.0.0.1:{port}/rates.xml").run_once(now=FRIDAY_EVENING) is None
    assert "URLError" in caplog.text


def test_without_a_source_url_nothing_runs(session: Session) -> None:
    assert _job(None).run_once(now=FRIDAY_EVENING) is None


def test_the_loop_checks_at_once_and_stops_when_told(session: Session, site: Site) -> None:
    site.body = ecb_xml(FRIDAY)
    stop = threading.Event()
    job = _job(site.url)
    thread = threading.Thread(target=job.run, args=(stop,))
    thread.start()
    deadline = time.monotonic() + 10
    while job.fetched_for is None and time.monotonic() < deadline:
        time.sleep(0.02)
    stop.set()
    thread.join(timeout=10)
    assert not thread.is_alive()
    assert len(site.hits) == 1
