"""Liveness and readiness probes for load balancers and orchestrators."""

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import exc as sa_exc
from sqlalchemy import text

from app.core.db import schema_state_of
from app.core.deps import SessionDep
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


@router.get("/ready", response_model=Health, responses=error_responses(503))
def ready(session: SessionDep) -> Health | JSONResponse:
    """The database answers and its schema is one the app can serve: at the migrations' head,
    or ahead of it (a newer release migrated it during a rolling deploy)."""
    try:
        session.exec(text("SELECT 1"))  # type: ignore[call-overload]
        schema = schema_state_of(session.connection())
    except (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.TimeoutError):
        return problem_response(
            503,
            "database_unavailable",
            "Service Unavailable",
            "The database is unreachable.",
            headers={"Retry-After": "1"},
        )
    if not schema.serves:
        return problem_response(503, "schema_not_at_head", "Service Unavailable", schema.describe())
    return Health(status="ok", revision=schema.revision)
