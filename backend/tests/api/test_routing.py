"""include_routers: a feature's plain routes become AppRoutes with every option they had."""

from typing import Any

from fastapi import APIRouter, FastAPI, status
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from pydantic import BaseModel

from app.api.routing import IDEMPOTENCY_HEADER, AppRoute, idempotency_guard, include_routers


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
