"""Liveness and readiness probes for load balancers and orchestrators."""

from anyio import CapacityLimiter, to_thread
from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import exc as sa_exc
from sqlalchemy import text

from app.core.admission import DatabaseSlot, get_admission
from app.core.db import SchemaState, get_sessionmaker, schema_state_of
from app.core.errors import error_responses, problem_response

router = APIRouter(prefix="/health", tags=["health"])


class Health(BaseModel):
    status: str
    revision: str | None = None


@router.get("/live", response_model=Health)
async def live() -> Health:
    """The process is up; says nothing about the database.

    Async and without a session: it needs neither a worker thread nor a database slot, so it
    answers while every thread or slot is taken by slow database work.
    """
    return Health(status="ok")


# The whole readiness check (its database slot, a connection, two queries) answers within this,
# whatever the database does: a probe that waits longer than the orchestrator's is no probe.
READY_DEADLINE_SECONDS = 1.0


@router.get("/ready", response_model=Health, responses=error_responses(503))
async def ready() -> Health | JSONResponse:
    """The database answers and its schema is one the app can serve: at the migrations' head,
    or ahead of it (a newer release migrated it during a rolling deploy). Within a second."""
    slot = DatabaseSlot(get_admission())
    await slot.acquire(deadline=READY_DEADLINE_SECONDS)  # 503 server_busy when none is free
    try:
        # A thread of its own: the request pool's threads may all be busy with slow work.
        schema = await to_thread.run_sync(_schema_state, limiter=CapacityLimiter(1))
    except (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.TimeoutError):
        return problem_response(
            503,
            "database_unavailable",
            "Service Unavailable",
            "The database is unreachable.",
            headers={"Retry-After": "1"},
        )
    finally:
        slot.release()
    if not schema.serves:
        return problem_response(503, "schema_not_at_head", "Service Unavailable", schema.describe())
    return Health(status="ok", revision=schema.revision)


def _schema_state() -> SchemaState:
    with get_sessionmaker()() as session:
        session.exec(text("SELECT 1"))  # type: ignore[call-overload]
        return schema_state_of(session.connection())
