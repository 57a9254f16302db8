"""The app's one route class: exact decimals in JSON bodies, `Idempotency-Key` on writes, and
`Location` on every 201 (the collection posted to, then the created id, unless the route set
its own).

Every route of the app is an AppRoute: `include_routers` makes it so (a test checks every
write route). A write
(POST, PUT, PATCH, DELETE) sent with an `Idempotency-Key` header is carried out once per key:

- before anything else, the route's first dependency takes a transaction-scoped advisory
  lock on (caller, key) (held: 409 `idempotency_request_in_progress`) and looks the key up:
  the same request again gets the stored response with `Idempotent-Replayed: true` and its
  transaction rolls back; a different request is 422 `idempotency_key_reused`;
- otherwise the route runs, and a 2xx response (status, body, content-type/location/etag)
  is stored by the request's own session as that dependency exits, just before
  `get_session` commits: the write and its key record commit together or not at all.

Error responses are not stored (their transaction rolled back, so a retry runs again), nor
are responses marked `Cache-Control: no-store` (the login's bearer token).
"""

import functools
import hashlib
import hmac
import inspect
import json
import re
from collections.abc import AsyncGenerator, Callable, Coroutine, Iterable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Header, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.routing import APIRoute
from fastapi.security.utils import get_authorization_scheme_param
from starlette.requests import ClientDisconnect

from app.core.config import get_settings
from app.core.deps import BEFORE_SESSION, SessionDep
from app.core.errors import (
    BadRequest,
    ClientDisconnected,
    Conflict,
    EarlyResponse,
    Unauthorized,
    Unprocessable,
    error_responses,
)
from app.core.preconditions import location_header
from app.idempotency import service as idempotency_service
from app.idempotency.models import ANONYMOUS_SCOPE, IdempotencyKey, user_scope
from app.users.deps import get_current_user

IDEMPOTENCY_HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# 1 to 255 printable ASCII characters, not starting or ending with a space (HTTP would strip
# it); a UUID is the usual choice. The OpenAPI document declares the same rule.
IDEMPOTENCY_KEY_PATTERN = r"^[\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?$"
_KEY_MAX_LENGTH = 255
_VALID_KEY = re.compile(IDEMPOTENCY_KEY_PATTERN)
# What a replay repeats besides status and body; everything else is computed afresh.
_REPLAYED_HEADERS = ("content-type", "location", "etag")


class AppRequest(Request):
    async def stream(self) -> AsyncGenerator[bytes]:
        # Every read of the body (body(), json(), form()) comes through here: a client that
        # disconnects mid-body is one clean ClientDisconnected, whoever was reading it.
        try:
            async for chunk in super().stream():
                yield chunk
        except ClientDisconnect:
            raise ClientDisconnected() from None

    async def json(self) -> Any:
        # `1.0837` becomes Decimal("1.0837"), never the binary float 1.08369999999999999...;
        # integers stay int, so an amount in minor units written as `12.0` is still refused.
        if not hasattr(self, "_json"):
            self._json = parse_json(await self.body())
        return self._json


def parse_json(body: bytes) -> Any:
    """A JSON body, or `json.JSONDecodeError` whatever the reason it cannot be read: FastAPI
    turns that error (and only that one) into a validation error, answered 422 json_invalid;
    any other exception while reading the body would be a 400."""
    try:
        text = body.decode()  # RFC 8259: JSON between systems is UTF-8
    except UnicodeDecodeError as error:
        raise json.JSONDecodeError(
            "the body is not valid UTF-8", body.decode(errors="replace"), error.start
        ) from None
    try:
        return json.loads(text, parse_float=Decimal, parse_constant=Decimal)
    except json.JSONDecodeError:
        raise
    except RecursionError:
        raise json.JSONDecodeError("arrays and objects are nested too deeply", text, 0) from None
    except ValueError:  # an integer past Python's limit of digits (sys.get_int_max_str_digits)
        raise json.JSONDecodeError("a number has too many digits", text, 0) from None


@dataclass
class KeyedWrite:
    """A write sent with an Idempotency-Key, and (once it succeeded) the response to store."""

    key: str
    method: str
    path: str
    fingerprint: str
    response: Response | None = None


def _fingerprint(method: str, path: str, body: bytes) -> str:
    # Keyed (HMAC), not a bare hash: bodies such as a password change must not be guessable.
    secret = get_settings().SECRET_KEY.get_secret_value().encode()
    message = method.encode() + b" " + path.encode() + b"\n" + body
    return hmac.new(secret, message, hashlib.sha256).hexdigest()


def _keyed_write(request: Request, body: bytes) -> KeyedWrite | None:
    keys = request.headers.getlist(IDEMPOTENCY_HEADER)
    if not keys:
        return None
    if len(keys) > 1 or len(keys[0]) > _KEY_MAX_LENGTH or not _VALID_KEY.fullmatch(keys[0]):
        raise BadRequest(
            f"{IDEMPOTENCY_HEADER} must be one value of 1 to 255 printable ASCII characters "
            "(no leading or trailing space).",
            code="invalid_idempotency_key",
        )
    path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return KeyedWrite(
        key=keys[0],
        method=request.method,
        path=path,
        fingerprint=_fingerprint(request.method, path, body),
    )


def _storable(response: Response) -> bool:
    cache_control = response.headers.get("cache-control", "")
    return (
        200 <= response.status_code < 300
        and isinstance(getattr(response, "body", None), bytes)  # not a streamed response
        and "no-store" not in cache_control.lower()
    )


def _scope_of(request: Request, session: SessionDep) -> str:
    """The caller whose keys these are: the user of a valid bearer token, else anonymous."""
    scheme, token = get_authorization_scheme_param(request.headers.get("Authorization"))
    if scheme.lower() != "bearer" or not token:
        return ANONYMOUS_SCOPE
    try:
        user = get_current_user(session, token)
    except Unauthorized:
        return ANONYMOUS_SCOPE  # a route that needs a user answers 401 on its own
    return user_scope(user.id)


def _replay(stored: IdempotencyKey) -> Response:
    return Response(
        content=stored.response_body,
        status_code=stored.status_code,
        headers={**stored.response_headers, REPLAYED_HEADER: "true"},
    )


_KEY_DESCRIPTION = (
    "Makes the write safe to retry: a unique value per intended change (e.g. a UUID), "
    "1 to 255 printable ASCII characters. The same key with the same request replays the "
    f"first 2xx response (with `{REPLAYED_HEADER}: true`); with a different request it is "
    "422 `idempotency_key_reused`; while the first is still running, 409 "
    "`idempotency_request_in_progress`. Keys are kept for at least "
    "IDEMPOTENCY_RETENTION_DAYS (28 by default) per user."
)


def idempotency_guard(
    request: Request,
    session: SessionDep,
    # Declared for the OpenAPI document; AppRoute has already read and validated it.
    idempotency_key: Annotated[
        str | None,
        Header(
            alias=IDEMPOTENCY_HEADER,
            description=_KEY_DESCRIPTION,
            # Documented only: AppRoute checks it first and answers 400 invalid_idempotency_key.
            json_schema_extra={"maxLength": _KEY_MAX_LENGTH, "pattern": IDEMPOTENCY_KEY_PATTERN},
        ),
    ] = None,
) -> Iterator[None]:
    """First dependency of every write: lock and look up the key, then store the response."""
    write: KeyedWrite | None = getattr(request.state, "keyed_write", None)
    if write is None:
        yield
        return
    scope = _scope_of(request, session)
    if not idempotency_service.try_lock_key(session=session, scope=scope, key=write.key):
        raise Conflict(
            "A request with this Idempotency-Key is still in progress; retry shortly.",
            code="idempotency_request_in_progress",
        )
    stored = idempotency_service.find_key(session=session, scope=scope, key=write.key)
    if stored is not None:
        if not hmac.compare_digest(stored.fingerprint, write.fingerprint):
            raise Unprocessable(
                "This Idempotency-Key was already used for a different request; "
                "send a new key for a new change.",
                code="idempotency_key_reused",
            )
        raise EarlyResponse(_replay(stored))
    yield
    # Runs after the route and its serialisation, before get_session commits.
    if write.response is not None:
        idempotency_service.record_key(
            session=session,
            scope=scope,
            key=write.key,
            method=write.method,
            path=write.path,
            fingerprint=write.fingerprint,
            status_code=write.response.status_code,
            response_body=bytes(write.response.body),
            response_headers={
                name: write.response.headers[name]
                for name in _REPLAYED_HEADERS
                if name in write.response.headers
            },
        )


_IDEMPOTENCY_GUARD = Depends(idempotency_guard, scope="function")


def _idempotency_responses(
    responses: dict[int | str, dict[str, Any]] | None, status_code: int | None
) -> dict[int | str, dict[str, Any]]:
    """Declare the guard's problems and `Idempotent-Replayed` in the OpenAPI document.

    On every success a route declares: a create also answers 200 when it is a replay of a
    client-chosen id, and that answer is stored and replayed like any other.
    """
    responses = {**error_responses(400, 409, 422), **(responses or {})}
    successes = {status_code or 200} | {code for code in responses if str(code).startswith("2")}
    for success in successes:
        entry = dict(responses.get(success, {}))
        entry["headers"] = {
            **entry.get("headers", {}),
            REPLAYED_HEADER: {
                "description": "`true` when this is the stored response to an earlier request "
                "with the same Idempotency-Key.",
                "schema": {"type": "string", "enum": ["true"]},
            },
        }
        responses[success] = entry
    return responses


# The OpenAPI document (app.api.openapi) says which methods reach the address.
CREATED_LOCATION = "The created resource's address: the collection posted to, then its id."
_LOCATION = location_header(CREATED_LOCATION)


def _location_responses(
    responses: dict[int | str, dict[str, Any]] | None,
) -> dict[int | str, dict[str, Any]]:
    """Declare `Location` on a 201, unless the route declared what its own points to."""
    responses = dict(responses or {})
    created = dict(responses.get(201, {}))
    created["headers"] = {"Location": _LOCATION, **created.get("headers", {})}
    responses[201] = created
    return responses


def _created_location(request: Request, response: Response) -> str | None:
    """Where a created resource lives: the collection it was posted to, then its id."""
    try:
        created = json.loads(bytes(response.body))
    except (AttributeError, TypeError, ValueError):  # a streamed or non-JSON answer
        return None
    if not isinstance(created, dict) or not isinstance(created.get("id"), str):
        return None
    return f"{request.url.path.rstrip('/')}/{created['id']}"


def _on_worker_thread(endpoint: Callable[..., Any]) -> Callable[..., Any]:
    """A plain `def` route as a coroutine that runs it on the thread pool.

    The same one trip to a worker thread FastAPI makes for a sync route, but FastAPI then
    also validates a sync route's return value on the thread pool: a second trip, for work
    that is pure CPU (pydantic's core, holding the GIL either way). As a coroutine, the
    route's result is validated and serialised straight on the event loop.
    """
    plain = inspect.isfunction(endpoint) and not inspect.isgeneratorfunction(endpoint)
    if not plain or inspect.iscoroutinefunction(endpoint):
        return endpoint

    @functools.wraps(endpoint)  # FastAPI reads the signature through __wrapped__
    async def on_worker_thread(*args: Any, **kwargs: Any) -> Any:
        return await run_in_threadpool(endpoint, *args, **kwargs)

    return on_worker_thread


class AppRoute(APIRoute):
    """The route class of every route: `include_routers` makes each feature's routes one."""

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        methods = {method.upper() for method in kwargs.get("methods") or ()}
        if methods & WRITE_METHODS:
            # First, so the key is locked before any other dependency locks or writes; only
            # waits that hold nothing (a turn at the password hasher) come before it.
            declared = list(kwargs.get("dependencies") or ())
            early = [d for d in declared if d.dependency in BEFORE_SESSION]
            rest = [d for d in declared if d.dependency not in BEFORE_SESSION]
            kwargs["dependencies"] = [*early, _IDEMPOTENCY_GUARD, *rest]
            kwargs["responses"] = _idempotency_responses(
                kwargs.get("responses"), kwargs.get("status_code")
            )
        if kwargs.get("status_code") == 201:
            kwargs["responses"] = _location_responses(kwargs.get("responses"))
        super().__init__(path, _on_worker_thread(endpoint), **kwargs)
        if self.body_field is not None:
            # Any body past MAX_REQUEST_BODY_BYTES is refused (app.api.body_limit).
            self.responses = {**error_responses(413), **self.responses}

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def app_handler(request: Request) -> Response:
            request = AppRequest(request.scope, request.receive)
            write = None
            if request.method in WRITE_METHODS and IDEMPOTENCY_HEADER in request.headers:
                write = _keyed_write(request, await request.body())
                request.state.keyed_write = write
            # Solves the dependencies, runs the route and serialises its response; the
            # function-scoped session commits only after this returns.
            response = await handler(request)
            if response.status_code == 201 and "location" not in response.headers:
                # Routes whose resource is not "the collection, then the id" set their own.
                location = _created_location(request, response)
                if location is not None:
                    response.headers["Location"] = location
            if write is not None and _storable(response):
                write.response = response
            return response

        return app_handler


# What a route was declared with, read back from the route to declare it again as an AppRoute.
_ROUTE_OPTIONS = tuple(
    name
    for name in inspect.signature(APIRoute.__init__).parameters
    if name not in {"self", "path", "endpoint"}
)


def as_app_route(route: APIRoute) -> AppRoute:
    """The same route, declared with the same options, as an AppRoute."""
    if isinstance(route, AppRoute):
        return route
    # Every option is read back: a FastAPI that stopped keeping one fails here, at start-up.
    options = {name: getattr(route, name) for name in _ROUTE_OPTIONS}
    return AppRoute(route.path, route.endpoint, **options)


def include_routers(app: FastAPI, routers: Iterable[APIRouter]) -> None:
    """Add the features' routers to the app, each of their routes made an AppRoute.

    Features declare plain `APIRouter`s, as FastAPI documents them: the route class belongs
    to this layer, which they do not import. Converting a router is done once, in place.
    """
    for router in routers:
        router.routes[:] = [
            as_app_route(route) if isinstance(route, APIRoute) else route for route in router.routes
        ]
        app.include_router(router)
