"""Long-lived response bodies sent from the outermost middleware, not from inside the route.

A response is sent from inside the whole request: the middleware, the router, FastAPI's
dependency handling and exit stacks, each a suspended coroutine holding its own state until the
body ends. For an ordinary response that is a few milliseconds; an event stream (GET
/sync/events) lasts hours, and a worker holds thousands of them. Held through the full stack,
each cost ~36 KiB of the worker's memory and ran its every write through every middleware.

So a route whose body is long-lived sends its status and headers as usual, through the whole
stack (CORS, security headers, the request's errors and dependencies all apply as before), and
then hands its body over with `hand_off`: the request returns, everything it held is released
(its dependencies exit, its database slot is free), and `HandOff`, installed outermost, sends
the body with the server's own `receive` and `send`. No middleware here looks at a body once
its headers are out (tests/api/test_handoff.py keeps that true), so none misses anything.
"""

from collections.abc import Awaitable, Callable

from starlette.types import ASGIApp, Receive, Scope, Send

# The body, given the server's `receive` and `send`.
Body = Callable[[Receive, Send], Awaitable[None]]

_SCOPE_KEY = "tripsync.hand_off"


def hand_off(scope: Scope, body: Body) -> bool:
    """Have `HandOff` send `body` once the request has returned; False when it is not installed
    (then the caller sends the body itself)."""
    bodies: list[Body] | None = scope.get(_SCOPE_KEY)
    if bodies is None:
        return False
    bodies.append(body)
    return True


class HandOff:
    """The outermost middleware: sends a handed-off body after the request returns."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        bodies: list[Body] = []
        scope[_SCOPE_KEY] = bodies
        known = set(scope)
        await self.app(scope, receive, send)
        if not bodies:
            return
        # What the request put in its scope (exit stacks, route, path parameters, ...) is done
        # with; the server keeps the scope as long as the connection, so let it go now.
        for key in set(scope) - known:
            del scope[key]
        for body in bodies:
            await body(receive, send)
