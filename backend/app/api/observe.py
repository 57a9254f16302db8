"""Every request's id, latency metric and (with LOG_FORMAT=json) access line; GET /metrics.

A pure ASGI middleware, installed just inside `HandOff`: it sees every response's status and
headers, and it is done when the request returns. An event stream's request returns once its
headers are out (its body is handed off, app.core.handoff), so the stream counts as one
request that took as long as opening it, not hours; open streams are a gauge of their own.

The request id is the client's `X-Request-ID` when it is 1-128 visible ASCII characters,
else a new one; it is sent back on every response and written on every log line the request
causes (app.core.logs). Not in problem bodies: a resource hidden from the caller and a
missing one answer the same bytes. An in-process sub-request (a queued write of
POST /trips/{trip_id}/mutations) keeps its batch's id.

Labels are the route's template (`/trips/{trip_id}`), never the raw path: ids and tokens
would make a series per trip and put secrets in the metrics and logs.
"""

import logging
import time

from prometheus_client import Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api.metrics import METRICS_PATH, serve_metrics
from app.core.logs import accepted_request_id, new_request_id, request_id_var
from app.core.metrics import REQUEST_DURATION

access_logger = logging.getLogger("app.access")

_HEADER = b"x-request-id"
# The route label of a request no route matched (404s: any path at all).
UNMATCHED = "unmatched"
# Any other method a client sends is labelled `other`: labels stay few whatever comes in.
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def _route_template(scope: Scope) -> str:
    route = scope.get("route")
    template = getattr(route, "path_format", None) or getattr(route, "path", None)
    return template if isinstance(template, str) else UNMATCHED


def _client_request_id(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == _HEADER:
            return accepted_request_id(value)
    return None


class RequestObservation:
    """Use as `app.add_middleware(RequestObservation, metrics_token=..., access_log=...)`."""

    def __init__(self, app: ASGIApp, *, metrics_token: str, access_log: bool) -> None:
        self.app = app
        self.metrics_token = metrics_token
        self.access_log = access_log
        # The histogram's series by (route, method, status): a few hundred at most, and
        # looking one up here is a tenth of what prometheus-client's labels() costs.
        self._series: dict[tuple[str, str, int], Histogram] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.metrics_token and scope["path"] == METRICS_PATH:
            await serve_metrics(scope["app"], self.metrics_token, scope, receive, send)
            return
        started = time.perf_counter()
        request_id = request_id_var.get()
        reset = None
        if request_id is None:  # else a sub-request, which keeps its batch's id
            request_id = _client_request_id(scope) or new_request_id()
            reset = request_id_var.set(request_id)
        header = (_HEADER, request_id.encode("latin-1"))
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), header]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except BaseException:
            # Answered 500 by Starlette's outermost handler (unless a response had started),
            # which sends the id itself: it stays set, this task ends with the request.
            self._record(scope, status, started)
            raise
        self._record(scope, status, started)
        if reset is not None:
            request_id_var.reset(reset)

    def _record(self, scope: Scope, status: int, started: float) -> None:
        duration = time.perf_counter() - started
        route = _route_template(scope)
        method: str = scope["method"] if scope["method"] in _METHODS else "other"
        series = self._series.get((route, method, status))
        if series is None:
            series = REQUEST_DURATION.labels(route, method, str(status))
            self._series[route, method, status] = series
        series.observe(duration)
        if self.access_log and access_logger.isEnabledFor(logging.INFO):
            access_logger.info(
                "%s %s %s",
                method,
                route,
                status,
                extra={
                    "method": method,
                    "route": route,
                    "status": status,
                    "duration_ms": round(duration * 1000, 3),
                },
            )
