"""Typed domain errors and the one place that renders every error as problem+json (RFC 9457)."""

import logging
import uuid
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from psycopg2.errors import QueryCanceled
from pydantic import BaseModel
from sqlalchemy import exc as sa_exc
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from app.core.deadlines import DatabaseUnresponsive
from app.core.logs import REQUEST_ID_HEADER, current_request_id
from app.core.metrics import SERVER_ERRORS

logger = logging.getLogger(__name__)

PROBLEM_MEDIA_TYPE = "application/problem+json"
PROBLEM_TYPE_BASE = "https://tripsync.example/problems/"


class AppError(Exception):
    """A failure a client can cause or must be told about; carries its HTTP rendering."""

    status_code = 500
    code = "internal_error"
    title = "Internal Server Error"
    # The resource as it is now, for errors a client recovers from by reading it (412, 409).
    current: BaseModel | None = None
    current_version: int | None = None
    # Seconds after which a retry may succeed (503): sent as Retry-After.
    retry_after: int | None = None
    # The request's writes commit although it fails: for a failure whose point is a write
    # (a reused refresh token ends its session, then 401). Everything else rolls back.
    keeps_writes = False
    # What the caller must deal with first (409 `Blocked`), listed in the problem.
    blocking: "list[Blocker] | None" = None
    # More members of the problem (RFC 9457 extension members), e.g. the token of a login's
    # second step; a problem that has them is sent with `Cache-Control: no-store`.
    extensions: dict[str, Any] | None = None

    def __init__(self, detail: str, *, code: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        if code is not None:
            self.code = code


class BadRequest(AppError):
    status_code, code, title = 400, "bad_request", "Bad Request"


class Unauthorized(AppError):
    status_code, code, title = 401, "not_authenticated", "Unauthorized"


class Forbidden(AppError):
    status_code, code, title = 403, "forbidden", "Forbidden"


class NotFound(AppError):
    status_code, code, title = 404, "not_found", "Not Found"


class Conflict(AppError):
    status_code, code, title = 409, "conflict", "Conflict"


class IdConflict(Conflict):
    """A client-chosen id already taken; `current` shows its resource if the caller may see it."""

    code = "id_conflict"

    def __init__(
        self, detail: str, *, current: BaseModel | None = None, version: int | None = None
    ) -> None:
        super().__init__(detail)
        self.current, self.current_version = current, version


class Blocker(BaseModel):
    """Something that stands in the way of a change: what it is, its id and its name."""

    type: str
    id: uuid.UUID
    name: str


class Blocked(Conflict):
    """A change refused until the caller has dealt with each of `blocking` (listed in the
    problem), e.g. the trips an account is the only owner of."""

    def __init__(self, detail: str, *, code: str, blocking: list[Blocker]) -> None:
        super().__init__(detail, code=code)
        self.blocking = blocking


class Gone(AppError):
    status_code, code, title = 410, "deleted", "Gone"


class PreconditionFailed(AppError):
    """A conditional write based on another version than the current one: nothing changed."""

    status_code, code, title = 412, "precondition_failed", "Precondition Failed"

    def __init__(self, detail: str, *, current: BaseModel, version: int) -> None:
        super().__init__(detail)
        self.current, self.current_version = current, version


class PreconditionRequired(AppError):
    status_code, code, title = 428, "precondition_required", "Precondition Required"


class Unprocessable(AppError):
    status_code, code, title = 422, "unprocessable", "Unprocessable Content"


class ServiceUnavailable(AppError):
    status_code, code, title = 503, "service_unavailable", "Service Unavailable"
    retry_after = 1


class ServerBusy(ServiceUnavailable):
    """Every database slot of this worker stayed taken for DB_POOL_TIMEOUT (app.core.admission)."""

    code = "server_busy"


# nginx's "client closed request": never sent (nobody is listening), but what logs and
# metrics see instead of a 500, or of a 400 the client did not cause.
CLIENT_CLOSED_REQUEST = 499


class ClientDisconnected(StarletteHTTPException):
    """The client went away while its request body was being read (app.api.routing raises it).

    An HTTPException, so FastAPI's body parsing lets it through (rather than answering 400
    "error parsing the body"); its own handler logs it at INFO and answers nothing useful.
    """

    def __init__(self) -> None:
        super().__init__(
            CLIENT_CLOSED_REQUEST, "The client disconnected before sending the whole body."
        )


class EarlyResponse(Exception):
    """Ends a request with a response decided before the route ran (an idempotent replay).

    Raised like an error, so the request's transaction is rolled back and nothing is written.
    """

    def __init__(self, response: Response) -> None:
        super().__init__(response.status_code)
        self.response = response


class FieldError(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class Problem(BaseModel):
    """The body of every error response."""

    type: str
    title: str
    status: int
    detail: str
    code: str
    errors: list[FieldError] | None = None
    # 412 precondition_failed and 409 id_conflict: the resource as it is now (its ETag too).
    current: dict[str, Any] | None = None
    # 409 from a `Blocked` change: what must be dealt with first (e.g. trips to hand over).
    blocking: list[Blocker] | None = None


def problem_response(
    status: int,
    code: str,
    title: str,
    detail: str,
    *,
    errors: list[dict[str, Any]] | None = None,
    current: dict[str, Any] | None = None,
    blocking: list[dict[str, Any]] | None = None,
    extensions: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {
        **(extensions or {}),
        "type": PROBLEM_TYPE_BASE + code,
        "title": title,
        "status": status,
        "detail": detail,
        "code": code,
    }
    if errors is not None:
        body["errors"] = errors
    if current is not None:
        body["current"] = current
    if blocking is not None:
        body["blocking"] = blocking
    if status >= 500:
        SERVER_ERRORS.labels(str(status), code).inc()
    return JSONResponse(body, status_code=status, headers=headers, media_type=PROBLEM_MEDIA_TYPE)


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` entries so routes declare the problems they can answer."""
    return {status: {"model": Problem, "content": {PROBLEM_MEDIA_TYPE: {}}} for status in statuses}


_HTTP_CODES = {
    401: "not_authenticated",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
}


def entity_tag(version: int) -> str:
    """A row's version as a strong entity tag: 42 → "42" (quotes included)."""
    return f'"{version}"'


async def _app_error(_: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, AppError)
    headers: dict[str, str] = {}
    if error.status_code == 401:
        headers["WWW-Authenticate"] = "Bearer"
    if error.current_version is not None:
        headers["ETag"] = entity_tag(error.current_version)
    if error.retry_after is not None:
        headers["Retry-After"] = str(error.retry_after)
    if error.extensions:
        headers["Cache-Control"] = "no-store"
    current = error.current.model_dump(mode="json") if error.current is not None else None
    blocking = (
        [blocker.model_dump(mode="json") for blocker in error.blocking]
        if error.blocking is not None
        else None
    )
    return problem_response(
        error.status_code,
        error.code,
        error.title,
        error.detail,
        current=current,
        blocking=blocking,
        extensions=error.extensions,
        headers=headers or None,
    )


async def _early_response(_: Request, error: Exception) -> Response:
    assert isinstance(error, EarlyResponse)
    return error.response


_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def _allowed_methods(request: Request) -> str:
    """Every method the path supports, whichever route serves it (RFC 9110 `Allow`).

    The router answers 405 from the first route whose path matches, so its own `Allow`
    names only that route's methods (POST /trips, not GET /trips). Each method is asked of
    the router as the request would be, so included routers and mounts answer too.
    """
    routes = request.app.router.routes
    return ", ".join(
        method
        for method in _METHODS
        if any(
            route.matches({**request.scope, "method": method})[0] is Match.FULL for route in routes
        )
    )


async def _http_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, StarletteHTTPException)
    phrase = HTTPStatus(error.status_code).phrase
    code = _HTTP_CODES.get(error.status_code, phrase.lower().replace(" ", "_"))
    detail = error.detail if isinstance(error.detail, str) else phrase
    headers = dict(error.headers or {})
    if error.status_code == 405:
        headers["Allow"] = _allowed_methods(request)
    return problem_response(error.status_code, code, phrase, detail, headers=headers or None)


def _json_safe(value: Any) -> Any:
    return value if isinstance(value, str | int) else str(value)


# The If-Match header of the routes that require it (app.core.deps.IfMatch).
_IF_MATCH_LOCATION = ("header", "If-Match")


async def _validation_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RequestValidationError)
    # A required If-Match is declared required (so the OpenAPI says so) but answered with 428.
    if any(
        item.get("type") == "missing" and tuple(item.get("loc", ())) == _IF_MATCH_LOCATION
        for item in error.errors()
    ):
        return await _app_error(
            request,
            PreconditionRequired(
                "This change needs If-Match: the ETag of the version it is based on "
                "(or * for any version).",
            ),
        )
    errors = [
        {
            "loc": [_json_safe(part) for part in item.get("loc", ())],
            "msg": str(item.get("msg", "")),
            "type": str(item.get("type", "")),
        }
        for item in error.errors()
    ]
    unreadable = [item for item in error.errors() if item.get("type") == "json_invalid"]
    if unreadable:
        # Invalid UTF-8, a syntax error, a cut-off body, nesting too deep, a number too long:
        # one answer (app.api.routing.parse_json makes each of them a JSON decode error).
        reason = str(unreadable[0].get("ctx", {}).get("error", "not JSON"))
        return problem_response(
            422,
            "json_invalid",
            "Unprocessable Content",
            f"The request body is not valid JSON: {reason}.",
            errors=errors,
        )
    return problem_response(
        422,
        "validation_error",
        "Unprocessable Content",
        f"The request is invalid: {len(errors)} field error(s).",
        errors=errors,
    )


async def _database_unavailable(_: Request, error: Exception) -> JSONResponse:
    # Pool timeout, refused connection, restart in progress, connection lost or terminated.
    if isinstance(getattr(error, "orig", None), QueryCanceled):
        return _database_timeout()
    if isinstance(getattr(error, "orig", None), DatabaseUnresponsive):
        return _database_unresponsive()
    logger.warning("database unavailable: %s", type(error).__name__)
    return problem_response(
        503,
        "database_unavailable",
        "Service Unavailable",
        "The database is unavailable or busy; retry shortly.",
        headers={"Retry-After": "1"},
    )


def _database_timeout() -> JSONResponse:
    # The server cancelled a statement that ran past DB_STATEMENT_TIMEOUT_MS (a long query, or
    # a wait for a lock): the database is up, this request took too long. Nothing was written.
    logger.warning("database statement timed out")
    return problem_response(
        504,
        "database_timeout",
        "Gateway Timeout",
        "A database statement took longer than allowed and was cancelled; nothing was changed. "
        "Retry later.",
        headers={"Retry-After": "1"},
    )


def _database_unresponsive() -> JSONResponse:
    # The database answered nothing before the request's deadline (a hung server, lost
    # packets): the call was abandoned and its connection discarded (app.core.deadlines). A
    # COMMIT among them may or may not have taken effect: a retry with the same
    # Idempotency-Key (or client-chosen id) finds out without applying it twice.
    logger.warning("database did not answer before the deadline")
    return problem_response(
        504,
        "database_unresponsive",
        "Gateway Timeout",
        "The database did not answer in time and the request was abandoned. A write may or may "
        "not have been applied: send it again with the same Idempotency-Key.",
        headers={"Retry-After": "1"},
    )


async def _integrity_error(_: Request, error: Exception) -> JSONResponse:
    # Reached only by races a service could not pre-check (e.g. two identical inserts).
    logger.info("integrity error answered as 409: %s", type(error).__name__)
    return problem_response(
        409, "conflict", "Conflict", "The change conflicts with the current state; reload."
    )


async def _data_error(_: Request, error: Exception) -> JSONResponse:
    # A value the database refuses for its type (e.g. out of its range) is the client's input.
    logger.info("data error answered as 422: %s", type(error).__name__)
    return problem_response(
        422, "invalid_value", "Unprocessable Content", "A value is out of the accepted range."
    )


async def _client_disconnected(request: Request, error: Exception) -> JSONResponse:
    # Not the server's fault and nothing to fix: a client that gave up (a slow upload
    # cancelled, a lost connection). Its writes, if any began, roll back with the request.
    logger.info(
        "client disconnected while sending the request body: %s %s",
        request.method,
        request.url.path,
    )
    return problem_response(
        CLIENT_CLOSED_REQUEST,
        "client_disconnected",
        "Client Closed Request",
        "The client disconnected before sending the whole body.",
    )


async def _unexpected_error(_: Request, error: Exception) -> JSONResponse:
    logger.exception("unhandled error", exc_info=error)
    # Sent from outside every middleware (Starlette's ServerErrorMiddleware), so the request
    # id header is added here.
    request_id = current_request_id()
    return problem_response(
        500,
        "internal_error",
        "Internal Server Error",
        "An unexpected error occurred.",
        headers={REQUEST_ID_HEADER: request_id} if request_id else None,
    )


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(AppError, _app_error)
    app.add_exception_handler(EarlyResponse, _early_response)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(ClientDisconnected, _client_disconnected)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(sa_exc.TimeoutError, _database_unavailable)
    app.add_exception_handler(sa_exc.OperationalError, _database_unavailable)
    app.add_exception_handler(sa_exc.InterfaceError, _database_unavailable)
    app.add_exception_handler(sa_exc.IntegrityError, _integrity_error)
    app.add_exception_handler(sa_exc.DataError, _data_error)
    app.add_exception_handler(Exception, _unexpected_error)
