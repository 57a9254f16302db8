"""Security headers on every response: no sniffing, no framing, no referrer, a tight CSP;
no caching of anything answered to a signed-in caller, and no caching and no indexing of
shared trips."""

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# JSON answers need nothing; the static client loads only its own files. The interactive
# docs (/docs, /redoc) load Swagger UI / ReDoc from a CDN and get no CSP.
_API_POLICY = "default-src 'none'; frame-ancestors 'none'"
_CLIENT_POLICY = "default-src 'self'; frame-ancestors 'none'; form-action 'self'"
_DOCS = ("/docs", "/redoc")
# A shared trip (GET /shared/{token}), whatever the answer, errors included: kept by no cache
# (a revoked link shows nothing from the moment it is revoked) and indexed by no search
# engine, wherever the link gets posted.
_SHARED = "/shared/"
# An answer to a request carrying credentials is that caller's: no shared or browser cache
# keeps it (RFC 9111 no-store), unless the route chose its own Cache-Control (the calendar
# feed's `private, no-cache`).
_AUTHORIZATION = b"authorization"


class SecurityHeadersMiddleware:
    def __init__(self, app: ASGIApp, *, hsts: bool) -> None:
        self.app = app
        self.hsts = hsts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        signed_in = any(name == _AUTHORIZATION for name, _ in scope["headers"])

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers.setdefault("X-Content-Type-Options", "nosniff")
                headers.setdefault("X-Frame-Options", "DENY")
                headers.setdefault("Referrer-Policy", "no-referrer")
                headers.setdefault("Cross-Origin-Opener-Policy", "same-origin")
                if not path.startswith(_DOCS):
                    policy = _CLIENT_POLICY if path.startswith("/app") else _API_POLICY
                    headers.setdefault("Content-Security-Policy", policy)
                if signed_in:
                    headers.setdefault("Cache-Control", "no-store")
                if path.startswith(_SHARED):
                    headers["Cache-Control"] = "no-store"
                    headers["X-Robots-Tag"] = "noindex, nofollow"
                if self.hsts:
                    headers.setdefault("Strict-Transport-Security", "max-age=31536000")
            await send(message)

        await self.app(scope, receive, send_with_headers)
