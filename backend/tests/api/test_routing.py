"""include_routers: a feature's plain routes become AppRoutes with every option they had."""

import inspect
import typing
from collections.abc import Iterator
from typing import Any

from fastapi import APIRouter, FastAPI, status
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from pydantic import BaseModel
from sqlmodel import Session

from app.api.routing import IDEMPOTENCY_HEADER, AppRoute, idempotency_guard, include_routers
from app.core.admission import DatabaseSlot
from app.core.deps import BEFORE_SESSION


class Thing(BaseModel):
    name: str
    note: str | None = None


def _router() -> APIRouter:
    router = APIRouter(prefix="/things", tags=["things"], responses={404: {"description": "No"}})

    @router.post(
        "/{thing_id}",
        response_model=Thing,
        status_code=status.HTTP_201_CREATED,
        summary="Make a thing",
        description="Makes it.",
        response_description="The thing",
        deprecated=True,
        operation_id="make_thing",
        response_model_exclude_none=True,
        openapi_extra={"x-kind": "thing"},
    )
    def make_thing(thing_id: int, thing: Thing) -> Any:
        return thing

    @router.get("/hidden", include_in_schema=False)
    def hidden() -> dict[str, str]:
        return {"hidden": "yes"}

    return router


def _operation(app: FastAPI) -> dict[str, Any]:
    operation: dict[str, Any] = app.openapi()["paths"]["/things/{thing_id}"]["post"]
    return operation


def test_a_plain_route_keeps_every_option_as_an_app_route() -> None:
    plain = FastAPI()
    plain.include_router(_router())
    assembled = FastAPI()
    include_routers(assembled, [_router()])

    before, after = _operation(plain), _operation(assembled)
    # What AppRoute adds to a write: the Idempotency-Key header and its responses.
    assert IDEMPOTENCY_HEADER in {p["name"] for p in after["parameters"]}
    assert {"400", "409", "413", "422"} <= set(after["responses"])
    for key in ("summary", "description", "deprecated", "operationId", "tags", "x-kind"):
        assert after[key] == before[key], key
    assert after["responses"]["201"]["description"] == "The thing"
    assert after["responses"]["404"] == {"description": "No"}
    assert "/things/hidden" not in assembled.openapi()["paths"]


def test_included_routes_are_app_routes_guarded_first() -> None:
    router = _router()
    assembled = FastAPI()
    include_routers(assembled, [router])
    routes = [route for route in router.routes if isinstance(route, APIRoute)]
    assert routes
    assert all(isinstance(route, AppRoute) for route in routes)
    write = next(route for route in routes if "POST" in (route.methods or ()))
    assert write.dependant.dependencies[0].call is idempotency_guard

    with TestClient(assembled) as client:
        made = client.post("/things/1", json={"name": "tent"})
        assert made.status_code == 201
        assert made.json() == {"name": "tent"}  # response_model_exclude_none still applies
        assert client.get("/things/hidden").json() == {"hidden": "yes"}


def test_including_a_router_twice_converts_it_once() -> None:
    router = _router()
    include_routers(FastAPI(), [router])
    converted = list(router.routes)
    include_routers(FastAPI(), [router])
    assert router.routes == converted


def _api_routes(routes: Any) -> Iterator[APIRoute]:
    """The app's routes, those of included routers too (`app.routes` lists the routers)."""
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        router = getattr(route, "original_router", None)
        if router is not None:
            yield from _api_routes(router.routes)


def _dependencies(dependant: Any) -> Iterator[Any]:
    for dependency in dependant.dependencies:
        yield dependency
        yield from _dependencies(dependency)


def _on_event_loop(call: Any) -> bool:
    method = call if inspect.isfunction(call) else getattr(call, "__call__", None)  # noqa: B004
    return inspect.iscoroutinefunction(method) or inspect.isasyncgenfunction(method)


def _types(hint: Any) -> Iterator[Any]:
    """The hint and every type it wraps (Annotated, Iterator[...], unions)."""
    yield hint
    for argument in typing.get_args(hint):
        yield from _types(argument)


def _waits(call: Any) -> bool:
    """A dependency that takes or gives a session (or a database slot) waits on the server,
    as does one declared `before_session` (a rate limit counted on a connection of its own).
    A class (a form FastAPI builds) cannot be a coroutine."""
    if call in BEFORE_SESSION or isinstance(call, type):
        return True
    hints = typing.get_type_hints(call, include_extras=True).values()
    return any(kind in (Session, DatabaseSlot) for hint in hints for kind in _types(hint))


def test_only_dependencies_that_wait_on_the_database_run_on_the_thread_pool() -> None:
    """FastAPI runs each plain `def` dependency on the thread pool: a trip there and back per
    request. One that only computes (parses a header, checks a role) is `async def`."""
    from app.main import app

    routes = list(_api_routes(app.routes))
    assert len(routes) > 80  # the check sees the routes
    sync = {
        dependency.call.__qualname__
        for route in routes
        for dependency in _dependencies(route.dependant)
        if not _on_event_loop(dependency.call) and not _waits(dependency.call)
    }
    assert not sync, sorted(sync)
