"""GET /metrics: the Prometheus metrics (app.core.metrics), for the holder of METRICS_TOKEN.

Why a token on the app's own port rather than a port of its own: with several uvicorn
workers, only one process could bind a metrics port, and it would vanish with that worker;
here any worker answers a scrape, adding up every worker's values (multi-process mode).
Prometheus sends the token as `authorization: {credentials: ...}`. With METRICS_TOKEN empty
(the default) there is no /metrics at all: the app answers 404 as for any unknown path, so
nothing is exposed unless an operator asks for it. A wrong or missing token is 401.

What a scrape samples at that moment: the worker's connection pool, its open event streams
and waiting long polls (each worker also samples its own every few seconds in multi-process
mode, so the sum covers them all), and the outbox's unsent mail, counted by one bounded
query. Nothing here runs per request.
"""

import asyncio
import hmac
import logging
import os
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, suppress
from typing import Any

import anyio.to_thread
from fastapi import FastAPI
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import QueuePool
from sqlalchemy.exc import SQLAlchemyError
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from app.core.config import Settings
from app.core.db import get_engine, get_sessionmaker
from app.core.errors import problem_response
from app.core.metrics import LONG_POLLS, POOL_CHECKED_OUT, POOL_OVERFLOW, POOL_SIZE, SSE_STREAMS
from app.outbox import service as outbox_service

logger = logging.getLogger(__name__)

METRICS_PATH = "/metrics"
# The outbox backlog is counted up to this many messages (then reported as this many).
OUTBOX_BACKLOG_LIMIT = 10_000
# How often each worker writes its sampled gauges in multi-process mode.
SAMPLE_SECONDS = 5.0


def multiprocess_mode() -> bool:
    return bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))


class OutboxBacklog(Collector):
    """Unsent mail, counted when scraped (a figure of the database, not of a worker)."""

    def describe(self) -> Iterator[GaugeMetricFamily]:
        # Its name, for the registry: without this, registering would run the query.
        yield self._family()

    def collect(self) -> Iterator[GaugeMetricFamily]:
        try:
            with get_sessionmaker()() as session:
                count = outbox_service.count_unsent(session=session, limit=OUTBOX_BACKLOG_LIMIT)
                session.commit()
        except SQLAlchemyError as error:
            logger.warning(
                "metrics: the outbox backlog could not be read: %s", type(error).__name__
            )
            return
        family = self._family()
        family.add_metric([], count)
        yield family

    @staticmethod
    def _family() -> GaugeMetricFamily:
        return GaugeMetricFamily(
            "tripsync_outbox_backlog",
            f"Mail not sent yet (due or waiting for a retry), counted up to "
            f"{OUTBOX_BACKLOG_LIMIT}.",
        )


def _registry() -> CollectorRegistry:
    if multiprocess_mode():
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        registry.register(OutboxBacklog())
        return registry
    REGISTRY.register(OutboxBacklog())
    return REGISTRY


_scraped: CollectorRegistry | None = None


def scrape_registry() -> CollectorRegistry:
    """What a scrape reads; made on first use (multi-process mode is decided at start)."""
    global _scraped  # one per process, like prometheus-client's own registry
    if _scraped is None:
        _scraped = _registry()
    return _scraped


def sample_worker(app: Any) -> None:
    """Write this worker's pool, stream and long-poll figures into their gauges."""
    pool = get_engine().pool
    if isinstance(pool, QueuePool):
        POOL_CHECKED_OUT.set(pool.checkedout())
        POOL_OVERFLOW.set(pool.overflow())
        POOL_SIZE.set(pool.size())
    listener = getattr(app.state, "listener", None)
    SSE_STREAMS.set(listener.streams if listener is not None else 0)
    LONG_POLLS.set(listener.waiting if listener is not None else 0)


def _render(app: Any) -> bytes:
    sample_worker(app)
    return generate_latest(scrape_registry())


def _authorised(scope: Scope, token: str) -> bool:
    expected = f"Bearer {token}".encode()
    for name, value in scope["headers"]:
        if name == b"authorization":
            return hmac.compare_digest(value, expected)
    return False


async def serve_metrics(app: Any, token: str, scope: Scope, receive: Receive, send: Send) -> None:
    """Answer GET /metrics (the token already known to be configured)."""
    if not _authorised(scope, token):
        response: Response = problem_response(
            401,
            "not_authenticated",
            "Unauthorized",
            "The metrics need Authorization: Bearer <METRICS_TOKEN>.",
            headers={"WWW-Authenticate": "Bearer"},
        )
    elif scope["method"] not in ("GET", "HEAD"):
        response = problem_response(
            405,
            "method_not_allowed",
            "Method Not Allowed",
            "Method Not Allowed",
            headers={"Allow": "GET, HEAD"},
        )
    else:
        body = await anyio.to_thread.run_sync(_render, app)
        response = Response(
            body,
            media_type=CONTENT_TYPE_LATEST,
            headers={"Cache-Control": "no-store"},
        )
    await response(scope, receive, send)


@asynccontextmanager
async def sampling(app: FastAPI, settings: Settings) -> AsyncIterator[None]:
    """In the lifespan: with several workers (multi-process mode), each samples its own
    gauges every SAMPLE_SECONDS, and forgets them when it stops."""
    if not multiprocess_mode() or not settings.METRICS_TOKEN.get_secret_value():
        yield
        return

    async def sample_forever() -> None:
        while True:
            sample_worker(app)
            await asyncio.sleep(SAMPLE_SECONDS)

    task = asyncio.create_task(sample_forever())
    try:
        yield
    finally:
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task
        multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]
