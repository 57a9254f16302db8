"""The daily fetch of ECB's reference rates from FX_SOURCE_URL, run by the worker process.

ECB publishes a business day's rates at about 16:00 Frankfurt time. Every CHECK_SECONDS the
job works out the last day whose rates should be out by now; when fx_rates has nothing that
recent and it has not fetched for that day yet, it fetches the file (bounded by
FX_FETCH_TIMEOUT_SECONDS and MAX_DOWNLOAD_BYTES) and imports it in one transaction. A failure
is logged and retried at the next check: it never stops the worker. On a holiday nothing new
appears and it fetches once for that day, not every check.
"""

import logging
import tempfile
import threading
import urllib.request
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from app.core.columns import utcnow
from app.core.config import Settings
from app.core.db import get_sessionmaker
from app.fx import service
from app.fx.service import ImportResult

logger = logging.getLogger(__name__)

CHECK_SECONDS = 3600
# ECB's full history is about 2 MB zipped, 15 MB as XML.
MAX_DOWNLOAD_BYTES = 64 * 1024 * 1024
_FRANKFURT = ZoneInfo("Europe/Berlin")
_PUBLISHED_BY = time(16, 30)


def expected_day(now: datetime) -> date:
    """The latest weekday whose rates ECB has published by `now` (holidays aside)."""
    local = now.astimezone(_FRANKFURT)
    day = local.date() if local.time() >= _PUBLISHED_BY else local.date() - timedelta(days=1)
    while day.weekday() >= 5:  # Saturday, Sunday
        day -= timedelta(days=1)
    return day


def fetch_and_import(url: str, *, timeout: float) -> ImportResult:
    """Download `url` (at most MAX_DOWNLOAD_BYTES) and import it, all or nothing."""
    if not url.startswith(("http://", "https://")):
        raise ValueError("FX_SOURCE_URL must be an http(s) URL")
    request = urllib.request.Request(url, headers={"User-Agent": "TripSync fx"})  # noqa: S310
    with tempfile.SpooledTemporaryFile(max_size=4 * 1024 * 1024) as body:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            size = 0
            while chunk := response.read(64 * 1024):
                size += len(chunk)
                if size > MAX_DOWNLOAD_BYTES:
                    raise ValueError(f"the file is larger than {MAX_DOWNLOAD_BYTES} bytes")
                body.write(chunk)
        body.seek(0)
        with get_sessionmaker()() as session:
            result = service.import_file(session=session, stream=body)
            session.commit()
    return result


class DailyRates:
    """The job's state: the day it last fetched for, so a holiday costs one fetch."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.fetched_for: date | None = None

    def run_once(self, *, now: datetime | None = None) -> ImportResult | None:
        """Fetch if the expected day's rates are missing; None when not due or on failure."""
        url = self.settings.FX_SOURCE_URL
        if url is None:
            return None
        wanted = expected_day(now or utcnow())
        try:
            with get_sessionmaker()() as session:
                latest = service.latest_day(session=session)
            if (latest is not None and latest >= wanted) or self.fetched_for == wanted:
                return None
            result = fetch_and_import(str(url), timeout=self.settings.FX_FETCH_TIMEOUT_SECONDS)
        except Exception as error:  # logged; the next check tries again
            logger.warning("fx: fetching %s failed: %s: %s", url, type(error).__name__, error)
            return None
        self.fetched_for = wanted
        logger.info(
            "fx: imported %d rates for %d days (%s to %s)",
            result.rates,
            result.days,
            result.first_day,
            result.last_day,
        )
        return result

    def run(self, stop: threading.Event) -> None:
        """Check now, then every CHECK_SECONDS, until `stop` is set."""
        while not stop.is_set():
            self.run_once()
            stop.wait(CHECK_SECONDS)
