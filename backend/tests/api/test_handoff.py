"""Long-lived bodies go out from the outermost middleware, after the request has let go."""

import asyncio
import contextlib
from collections.abc import AsyncIterator

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware
from starlette.testclient import TestClient
from starlette.types import Message, Receive, Scope, Send

from app.api.body_limit import BodySizeLimit
from app.api.head_limit import RequestHeadLimit
from app.api.headers import SecurityHeadersMiddleware
from app.api.observe import RequestObservation
from app.core.handoff import HandOff, hand_off
from app.main import create_app


def test_the_hand_off_is_outermost_and_no_middleware_inside_it_touches_bodies() -> None:
    """A middleware that rewrites bodies (compression, say) would never see a handed-off one:
    adding one must be a decision, made here, not an accident."""
    stack: list[object] = [middleware.cls for middleware in create_app().user_middleware]
    assert stack[0] is HandOff  # the last added, so the outermost
    # Each of these looks at the headers only (reviewed): the body passes untouched.
    assert set(stack[1:]) == {
        RequestObservation,
        CORSMiddleware,
        SecurityHeadersMiddleware,
        RequestHeadLimit,
        BodySizeLimit,
    }


def test_a_handed_off_body_is_sent_after_the_request_let_go_of_what_it_held() -> None:
    timeline: list[str] = []
    seen_scope: dict[str, object] = {}

    @contextlib.asynccontextmanager
    async def held() -> AsyncIterator[None]:
        timeline.append("request holds")
        yield
        timeline.append("request let go")

    async def body(receive: Receive, send: Send) -> None:
        timeline.append("body")
        for part in (b"one ", b"two"):
            await send({"type": "http.response.body", "body": part, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def inner(scope: Scope, receive: Receive, send: Send) -> None:
        async with held():
            scope["request.state"] = object()  # what a request leaves in its scope
            await send({"type": "http.response.start", "status": 200, "headers": []})
            assert hand_off(scope, body)
        seen_scope.update(scope)

    async def headers(scope: Scope, receive: Receive, send: Send) -> None:
        async def add_header(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message["headers"], (b"x-added", b"yes")]
            await send(message)

        await inner(scope, receive, add_header)

    response = TestClient(HandOff(headers)).get("/")  # a bare ASGI app: no lifespan
    assert response.text == "one two"
    assert response.headers["x-added"] == "yes"  # the headers went through the stack
    assert timeline == ["request holds", "request let go", "body"]
    assert "request.state" in seen_scope


def test_the_scope_keeps_only_what_it_had_while_a_body_is_handed_off() -> None:
    during: dict[str, object] = {}

    async def inner(scope: Scope, receive: Receive, send: Send) -> None:
        scope["fastapi_astack"] = object()
        await send({"type": "http.response.start", "status": 200, "headers": []})

        async def body(receive: Receive, send: Send) -> None:
            during.update(scope)
            await send({"type": "http.response.body", "body": b"", "more_body": False})

        hand_off(scope, body)

    assert TestClient(HandOff(inner)).get("/").status_code == 200
    assert "fastapi_astack" not in during
    assert "path" in during  # what the server put there stays


def test_without_the_middleware_a_response_sends_its_own_body() -> None:
    assert hand_off({"type": "http"}, lambda receive, send: asyncio.sleep(0)) is False


def test_an_ordinary_app_route_is_not_affected() -> None:
    app = FastAPI()
    app.add_middleware(HandOff)

    @app.get("/plain")
    def plain() -> dict[str, str]:
        return {"ok": "yes"}

    with TestClient(app) as client:
        assert client.get("/plain").json() == {"ok": "yes"}
