"""Cursor (keyset) pagination: opaque, signed cursors and the page shape every list returns."""

import base64
import binascii
import functools
import hashlib
import hmac
import json
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Annotated, Any, Generic, TypeVar

from fastapi import Depends, Query, Request
from pydantic import BaseModel
from sqlalchemy import tuple_
from sqlmodel import col
from sqlmodel.sql._expression_select_cls import SelectBase

from app.core.config import get_settings
from app.core.errors import BadRequest
from app.core.security import decode_access_token

T = TypeVar("T")
R = TypeVar("R")
S = TypeVar("S", bound=SelectBase[*tuple[Any, ...]])

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 100
_SIGNATURE_BYTES = 12


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None


SortKey = datetime | date | str | int


@dataclass(frozen=True)
class Position:
    """Where a page ends: the sort key of its last row, made unique by the row's id."""

    sort_key: SortKey
    id: uuid.UUID


def _tagged(value: SortKey) -> list[str | int]:
    if isinstance(value, datetime):  # before `date`: a datetime is also a date
        return ["t", value.isoformat()]
    if isinstance(value, date):
        return ["d", value.isoformat()]
    if isinstance(value, str):
        return ["s", value]
    return ["i", value]


def _untagged(tag: str, value: str | int) -> SortKey:
    if tag == "t" and isinstance(value, str):
        return datetime.fromisoformat(value)
    if tag == "d" and isinstance(value, str):
        return date.fromisoformat(value)
    if tag == "s" and isinstance(value, str):
        return value
    if tag == "i" and isinstance(value, int):
        return value
    raise ValueError("unknown sort key")


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@functools.lru_cache(maxsize=4)
def _keyed(key: bytes) -> "hmac.HMAC":
    """HMAC-SHA256 with the key (and the prefix) absorbed once: each cursor copies it."""
    return hmac.new(key, b"cursor:", hashlib.sha256)


def _sign(payload: bytes, scope: str) -> bytes:
    # The scope (which list: scope_of_list) is signed in, so a cursor works only there.
    mac = _keyed(get_settings().SECRET_KEY.get_secret_value().encode()).copy()
    mac.update(scope.encode() + b":" + payload)
    return mac.digest()[:_SIGNATURE_BYTES]


# json.dumps with non-default arguments builds an encoder per call; cursors are made per event
# of every event stream, so one is kept.
_COMPACT_JSON = json.JSONEncoder(separators=(",", ":"))


def seal(payload: Any, scope: str) -> str:
    """An opaque, tamper-evident token carrying `payload` (JSON), valid only for `scope`."""
    return seal_json(_COMPACT_JSON.encode(payload), scope)


def seal_json(text: str, scope: str) -> str:
    """`seal` of a payload its caller wrote as JSON text itself (where json.dumps is too slow)."""
    raw = text.encode()
    return f"{_b64(raw)}.{_b64(_sign(raw, scope))}"


def unseal(token: str, scope: str) -> Any:
    """The payload of a token made by `seal` for this scope; 400 invalid_cursor otherwise."""
    invalid = BadRequest(
        "The cursor is malformed or was not issued by this server.", code="invalid_cursor"
    )
    try:
        payload_text, signature_text = token.split(".")
        payload, signature = _unb64(payload_text), _unb64(signature_text)
    except (ValueError, binascii.Error):
        raise invalid from None
    if not hmac.compare_digest(signature, _sign(payload, scope)):
        raise invalid
    try:
        return json.loads(payload)
    except ValueError:
        raise invalid from None


def encode_cursor(position: Position, scope: str = "") -> str:
    return seal([*_tagged(position.sort_key), str(position.id)], scope)


def decode_cursor(cursor: str, scope: str = "") -> Position:
    payload = unseal(cursor, scope)
    invalid = BadRequest(
        "The cursor is malformed or was not issued by this server.", code="invalid_cursor"
    )
    try:
        tag, sort_key, row_id = payload
        return Position(_untagged(tag, sort_key), uuid.UUID(row_id))
    except (ValueError, TypeError):
        raise invalid from None


@dataclass(frozen=True)
class PageRequest:
    limit: int
    after: Position | None
    scope: str = ""

    def cursor_for(self, position: Position | None) -> str | None:
        """The opaque cursor of the next page, or None on the last page."""
        return encode_cursor(position, self.scope) if position is not None else None


_PAGE_PARAMETERS = frozenset({"limit", "cursor"})
_FILTERS_ATTRIBUTE = "_tripsync_list_filters"


def _query_names(dependant: Any) -> set[str]:
    """The query parameters of a route's dependency tree (FastAPI's `Dependant`)."""
    if dependant is None:
        return set()
    names = {param.alias for param in dependant.query_params}
    for dependency in dependant.dependencies:
        names |= _query_names(dependency)
    return names


def _filter_names(route: Any) -> tuple[str, ...]:
    """The query parameters a route declares besides the page's own: its list's filters.

    Worked out once per route and kept on it (routes compare by value, so are not hashable).
    """
    names: tuple[str, ...] | None = getattr(route, _FILTERS_ATTRIBUTE, None)
    if names is None:
        names = tuple(sorted(_query_names(getattr(route, "dependant", None)) - _PAGE_PARAMETERS))
        setattr(route, _FILTERS_ATTRIBUTE, names)
    return names


def _canonical(value: str) -> str:
    # A UUID in the path names the same list in any case.
    try:
        return str(uuid.UUID(value))
    except ValueError:
        return value


def _caller_of(request: Request) -> str:
    """The user of the request's bearer token ("" without one). The route's own dependencies
    authenticate the request; a cursor only needs to know whose list it was."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        return ""
    claims = decode_access_token(token.strip())
    return str(claims[0]) if claims is not None else ""


def scope_of_list(
    route: str,
    *,
    path: Mapping[str, str] | None = None,
    filters: Mapping[str, Sequence[str]] | None = None,
    user_id: uuid.UUID | str | None = None,
) -> str:
    """What list a cursor pages: the route (its template), the values in its path, the
    filters given, and the caller. Signed into every cursor, so a cursor pages only the list
    it came from: not another trip's, another checklist's, another filter's or another user's.
    """
    return _COMPACT_JSON.encode(
        [
            route,
            sorted((name, _canonical(value)) for name, value in (path or {}).items()),
            sorted([name, list(values)] for name, values in (filters or {}).items() if values),
            str(user_id or ""),
        ]
    )


def list_scope(request: Request) -> str:
    """The scope (`scope_of_list`) of the list a request reads."""
    route = request.scope.get("route")
    filters = _filter_names(route) if route is not None else ()
    return scope_of_list(
        getattr(route, "path", request.url.path),
        path=request.path_params,
        filters={name: request.query_params.getlist(name) for name in filters},
        user_id=_caller_of(request),
    )


def _page_request(
    request: Request,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = DEFAULT_PAGE_SIZE,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
) -> PageRequest:
    scope = list_scope(request)
    after = decode_cursor(cursor, scope) if cursor else None
    return PageRequest(limit=limit, after=after, scope=scope)


PageParams = Annotated[PageRequest, Depends(_page_request)]


def keyset_page(
    statement: S,
    page: PageRequest,
    sort_column: Any,
    id_column: Any,
    *,
    descending: bool = False,
) -> S:
    """Order by (sort, id), start after the page's position, and fetch one extra row.

    The columns are model attributes (e.g. `Trip.created_at`), which type checkers see as
    plain values; hence `Any`.
    """
    sort, row_id = col(sort_column), col(id_column)
    ordered = statement.order_by(
        *((sort.desc(), row_id.desc()) if descending else (sort, row_id))
    ).limit(page.limit + 1)
    if page.after is None:
        return ordered
    key, after = tuple_(sort, row_id), tuple_(page.after.sort_key, page.after.id)
    return ordered.where(key < after if descending else key > after)


def split_page(
    rows: Sequence[R], limit: int, position_of: Callable[[R], Position]
) -> tuple[list[R], Position | None]:
    """Queries fetch limit + 1 rows: the extra row only tells whether another page exists."""
    if len(rows) > limit:
        return list(rows[:limit]), position_of(rows[limit - 1])
    return list(rows), None
