"""Logging: plain text for a terminal, or one JSON object per line (LOG_FORMAT=json), and the
id of the request a line was written for.

The request id is set by the API's request middleware (app.api.observe) in a context
variable, which AnyIO copies into the worker thread that runs a sync route, so every line a
request causes carries it, whichever logger writes it.
"""

import itertools
import json
import logging
import os
import re
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

from app.core.config import LogFormat, Settings

REQUEST_ID_HEADER = "X-Request-ID"
# A client's own id is kept when it is 1 to 128 visible ASCII characters; else a new one.
_VALID_REQUEST_ID = re.compile(r"[\x21-\x7e]{1,128}")

request_id_var: ContextVar[str | None] = ContextVar("tripsync_request_id", default=None)


def accepted_request_id(value: bytes | None) -> str | None:
    """The client's `X-Request-ID` when it is usable as ours (printable, bounded), else None."""
    if value is None:
        return None
    text = value.decode("latin-1")
    return text if _VALID_REQUEST_ID.fullmatch(text) else None


class _RequestIds:
    """New request ids: a random prefix per process and a counter, 32 hex characters.

    Unique without asking the kernel for anything per request (uuid4's randomness costs
    ~10 µs here, even getpid ~5 µs): they identify, they protect nothing. A forked process
    draws a prefix of its own.
    """

    def __init__(self) -> None:
        self._start()
        os.register_at_fork(after_in_child=self._start)

    def _start(self) -> None:
        self._prefix = os.urandom(8).hex()
        self._counter = itertools.count()

    def next(self) -> str:
        return f"{self._prefix}{next(self._counter):016x}"


new_request_id = _RequestIds().next


def current_request_id() -> str | None:
    return request_id_var.get()


# The access line's fields (app.api.observe passes them as `extra`).
ACCESS_FIELDS = ("method", "route", "status", "duration_ms")


class JsonFormatter(logging.Formatter):
    """time, level, logger, message, request_id; the access fields when given; exception."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", current_request_id()),
        }
        for field in ACCESS_FIELDS:
            if (value := getattr(record, field, None)) is not None:
                line[field] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)


_TEXT_FORMAT = "%(levelname)s %(name)s: %(message)s"
# uvicorn's own loggers: in JSON mode they write JSON too, through the root's handler. Its
# access log is replaced by the app's own line (`app.access`), which knows the route.
_UVICORN = ("uvicorn", "uvicorn.error")


def _record_with_request_id(factory: Any) -> Any:
    """Each record carries the request id of the moment it was made, so a handler that
    formats it later (a queue, a test's capture) still has it."""

    def make_record(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record: logging.LogRecord = factory(*args, **kwargs)
        record.request_id = request_id_var.get()
        return record

    make_record.with_request_id = True  # type: ignore[attr-defined]
    return make_record


def configure_logging(settings: Settings) -> None:
    """Set up the root logger once per process for LOG_FORMAT and LOG_LEVEL."""
    factory = logging.getLogRecordFactory()
    if not getattr(factory, "with_request_id", False):
        logging.setLogRecordFactory(_record_with_request_id(factory))
    root = logging.getLogger()
    if settings.LOG_FORMAT is LogFormat.TEXT:
        logging.basicConfig(level=settings.LOG_LEVEL, format=_TEXT_FORMAT)
        return
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    root.handlers[:] = [handler]
    root.setLevel(settings.LOG_LEVEL)
    for name in _UVICORN:
        uvicorn_logger = logging.getLogger(name)
        uvicorn_logger.handlers.clear()
        uvicorn_logger.propagate = True
    logging.getLogger("uvicorn.access").disabled = True


def access_log_enabled(settings: Settings) -> bool:
    """The app writes its own access line in JSON mode (uvicorn's is off then)."""
    return settings.LOG_FORMAT is LogFormat.JSON
