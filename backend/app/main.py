"""The FastAPI application: routers, error handlers, middleware and lifespan (no create_all)."""

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio.to_thread
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.staticfiles import StaticFiles

from app import models as _models  # noqa: F401  (every table, and the sync version stamping)
from app.activity.router import router as activity_router
from app.api.body_limit import BodySizeLimit
from app.api.head_limit import RequestHeadLimit
from app.api.headers import SecurityHeadersMiddleware
from app.api.memory import tune_malloc
from app.api.metrics import sampling
from app.api.observe import RequestObservation
from app.api.openapi import install_openapi, operation_id
from app.api.routing import include_routers
from app.api.signals import on_exit_signal
from app.checklists.router import router as checklists_router
from app.core.config import Environment, Settings, get_settings
from app.core.db import (
    REPO_DIR,
    StartupRefused,
    check_schema_at_startup,
    check_server_timeouts,
    get_engine,
)
from app.core.errors import install_error_handlers
from app.core.handoff import HandOff
from app.core.logs import REQUEST_ID_HEADER, access_log_enabled, configure_logging
from app.expenses.router import router as expenses_router
from app.exports.router import router as exports_router
from app.feed.events import reread_worker_state
from app.feed.router import router as sync_router
from app.health.router import router as health_router
from app.invitations.router import router as invitations_router
from app.invitations.router import trip_router as trip_invitations_router
from app.invite_links.router import router as join_router
from app.invite_links.router import trip_router as trip_invite_links_router
from app.itinerary.router import calendar_router
from app.itinerary.router import router as itinerary_router
from app.participants.router import router as participants_router
from app.share_links.router import router as shared_router
from app.share_links.router import trip_router as trip_share_links_router
from app.sync.live import listening
from app.trips import hooks as trip_hooks
from app.trips.router import router as trips_router
from app.users import hooks as user_hooks
from app.users.router import auth_router, export_router, users_router

logger = logging.getLogger("app")


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    if missing := trip_hooks.unsubscribed() + user_hooks.unsubscribed():
        raise RuntimeError(f"hooks without a subscriber: {', '.join(missing)}")
    tune_malloc()  # before the first password hash (app.api.memory says why)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        # Sync routes run on AnyIO's thread pool; its size is matched to the connection pool.
        anyio.to_thread.current_default_thread_limiter().total_tokens = settings.THREADPOOL_SIZE
        if settings.ENVIRONMENT is Environment.PRODUCTION:
            try:
                await anyio.to_thread.run_sync(check_schema_at_startup)
            except StartupRefused as refusal:
                logger.critical("%s", refusal)  # the process exits (uvicorn: status 3)
                raise
        if not settings.DB_STARTUP_OPTIONS:
            await anyio.to_thread.run_sync(check_server_timeouts, settings)
        async with (
            listening(settings, reread_worker_state) as listener,
            sampling(app, settings),  # the worker's gauges, with several workers (metrics)
        ):
            app.state.listener = listener  # long polls and event streams wait on it
            try:
                with on_exit_signal(listener.close_streams):  # so a stopping worker can stop
                    yield
            finally:
                app.state.listener = None  # stopped: nothing would wake them any more
        get_engine().dispose()

    app = FastAPI(
        title=settings.PROJECT_NAME,
        version="0.1.0",
        description="Plan one trip together from several devices.",
        lifespan=lifespan,
        # operationId: the route function's name (`update_item`), which generated clients
        # use for their functions; app.api.openapi checks that no two operations share one.
        generate_unique_id_function=operation_id,
    )
    install_error_handlers(app)
    install_openapi(app)
    # Added first, so they run inside CORS: a browser can read the 413, 414 and 431 too.
    app.add_middleware(BodySizeLimit, max_body_bytes=settings.MAX_REQUEST_BODY_BYTES)
    app.add_middleware(
        RequestHeadLimit,
        max_url_bytes=settings.MAX_URL_BYTES,
        max_header_bytes=settings.MAX_HEADER_BYTES,
    )
    app.add_middleware(
        SecurityHeadersMiddleware, hsts=settings.ENVIRONMENT is Environment.PRODUCTION
    )
    app.add_middleware(
        CORSMiddleware,
        allow_origins=settings.CORS_ORIGINS,
        allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
        allow_headers=[
            "Authorization",
            "Content-Type",
            "If-Match",
            "Idempotency-Key",
            "Last-Event-ID",
            REQUEST_ID_HEADER,
        ],
        expose_headers=[
            "ETag",
            "Retry-After",
            "Idempotent-Replayed",
            "Content-Disposition",
            "Location",
            REQUEST_ID_HEADER,
        ],
    )
    # Request ids, latency metrics, access lines and GET /metrics (app.api.observe): inside
    # HandOff, so a handed-off event stream is done when its headers are.
    app.add_middleware(
        RequestObservation,
        metrics_token=settings.METRICS_TOKEN.get_secret_value(),
        access_log=access_log_enabled(settings),
    )
    # Outermost: long-lived bodies (event streams) are sent from here (app.core.handoff).
    app.add_middleware(HandOff)
    include_routers(
        app,
        (
            health_router,
            auth_router,
            users_router,
            export_router(),
            trips_router,
            participants_router,
            trip_invitations_router,
            invitations_router,
            trip_invite_links_router,
            join_router,
            trip_share_links_router,
            shared_router,
            activity_router,
            sync_router,
            exports_router,
            itinerary_router,
            calendar_router,
            checklists_router,
            expenses_router,
        ),
    )

    frontend = (REPO_DIR / settings.FRONTEND_DIR).resolve() if settings.FRONTEND_DIR else None
    if frontend is not None and Path(frontend, "index.html").is_file():
        app.mount("/app", StaticFiles(directory=frontend, html=True), name="frontend")
    return app


configure_logging(get_settings())
app = create_app()
