"""Limits on the request's head, checked before anything else reads it: a URL (path and query)
longer than MAX_URL_BYTES is `414 uri_too_long`, headers larger than MAX_HEADER_BYTES in all
are `431 headers_too_large`, both problem+json like every other error.

A pure ASGI middleware, so a refused request costs no routing, no session and no body read.
The server's own HTTP parser has limits of its own, which fire before the app sees the
request at all and answer `400` in plain text; they are set above these (docs/operations.md),
so any request head the app can refuse is refused here, as a problem.
"""

from http import HTTPStatus

from starlette.types import ASGIApp, Receive, Scope, Send

from app.core.errors import problem_response

URI_TOO_LONG = 414
HEADERS_TOO_LARGE = 431
# uvicorn's `--h11-max-incomplete-event-size` (UVICORN_H11_MAX_INCOMPLETE_EVENT_SIZE in the
# Dockerfile; `make dev`): with h11, the most of a request head it buffers before answering
# 400 itself. Above the largest URL and header limits the settings allow together (60 + 128
# KiB), so the app sees, and refuses as a problem, every head over its own limits; h11's
# default is 16 KiB.
H11_MAX_INCOMPLETE_EVENT_SIZE = 256 * 1024


def url_bytes(scope: Scope) -> int:
    """The request target as sent: the raw path, and `?` and the query when there is one."""
    path: bytes = scope.get("raw_path") or scope["path"].encode()
    query: bytes = scope.get("query_string", b"")
    return len(path) + (len(query) + 1 if query else 0)


def header_bytes(scope: Scope) -> int:
    """The size of the header section as written: `name: value` and CRLF for each field."""
    return sum(len(name) + len(value) + 4 for name, value in scope.get("headers", ()))


class RequestHeadLimit:
    """Use as `app.add_middleware(RequestHeadLimit, max_url_bytes=..., max_header_bytes=...)`."""

    def __init__(self, app: ASGIApp, *, max_url_bytes: int, max_header_bytes: int) -> None:
        self.app = app
        self.max_url_bytes = max_url_bytes
        self.max_header_bytes = max_header_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if url_bytes(scope) > self.max_url_bytes:
            detail = f"The URL is longer than the limit of {self.max_url_bytes} bytes."
            await _refuse(URI_TOO_LONG, "uri_too_long", detail, scope, receive, send)
        elif header_bytes(scope) > self.max_header_bytes:
            detail = (
                f"The request headers are larger than the limit of {self.max_header_bytes} bytes."
            )
            await _refuse(HEADERS_TOO_LARGE, "headers_too_large", detail, scope, receive, send)
        else:
            await self.app(scope, receive, send)


async def _refuse(
    status: int, code: str, detail: str, scope: Scope, receive: Receive, send: Send
) -> None:
    response = problem_response(status, code, HTTPStatus(status).phrase, detail)
    response.headers["Connection"] = "close"  # what else the client sends is not read
    await response(scope, receive, send)
