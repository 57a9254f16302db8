"""The request body size limit: a pure ASGI middleware that refuses large bodies with 413.

A body whose `Content-Length` is above the limit is refused before the app runs at all; a
body without one (chunked, streamed) is counted as it arrives and stopped the moment it
grows past the limit, so no route, parser or validator ever holds more than the limit.
"""

from http import HTTPStatus

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.core.errors import problem_response

PAYLOAD_TOO_LARGE = 413


class PayloadTooLarge(HTTPException):
    """Raised from `receive` when a streamed body passes the limit.

    An HTTPException, so FastAPI's body parsing re-raises it (rather than answering 400) and
    the app's own error handler renders it as problem+json `payload_too_large`.
    """

    def __init__(self, limit: int) -> None:
        super().__init__(PAYLOAD_TOO_LARGE, _detail(limit))


def _detail(limit: int) -> str:
    return f"The request body is larger than the limit of {limit} bytes."


def _declared_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name.lower() == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None  # the server refuses a malformed length; the count below still holds
    return None


class BodySizeLimit:
    """Use as `app.add_middleware(BodySizeLimit, max_body_bytes=...)`."""

    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.max_body_bytes
        declared = _declared_length(scope)
        if declared is not None and declared > limit:
            await self._refuse(scope, receive, send)
            return

        received = 0
        response_started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise PayloadTooLarge(limit)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except PayloadTooLarge:
            # Normally the app's error handler has answered already; this covers a body read
            # outside of it (another middleware).
            if response_started:
                raise
            await self._refuse(scope, receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = problem_response(
            PAYLOAD_TOO_LARGE,
            "payload_too_large",
            HTTPStatus(PAYLOAD_TOO_LARGE).phrase,  # as the app's own handler titles it
            _detail(self.max_body_bytes),
        )
        await response(scope, receive, send)
