"""Conditional writes: a synced row's version is its entity tag, and If-Match guards its writes.

Every synced row carries `version`, the trip version of the transaction that last wrote it
(app.sync.versions). Responses send it as a strong entity tag (`ETag: "42"`); a client sends it
back in `If-Match` to change or delete the row only if nobody else has since. Writes lock the
trip before anything else (the TripMember/TripEditor/TripOwner dependencies), so the version a
service compares under that lock cannot change before the write commits: no lost update.
"""

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from fastapi import Response
from pydantic import BaseModel

from app.core.errors import BadRequest, PreconditionFailed, entity_tag, error_responses

__all__ = [
    "ANY_VERSION",
    "ExpectedVersion",
    "conditional_write_responses",
    "create_responses",
    "ensure_version",
    "entity_tag",
    "etag_responses",
    "location_header",
    "location_responses",
    "parse_if_match",
    "set_etag",
]


@dataclass(frozen=True)
class ExpectedVersion:
    """What If-Match asks for: any existing version (`*`), or one of the listed entity tags."""

    tags: frozenset[str] | None  # the strong tags' opaque values; None for `*`

    def matches(self, version: int) -> bool:
        # Strong comparison (RFC 9110 13.1.1): character for character, weak tags never match.
        return self.tags is None or str(version) in self.tags


ANY_VERSION = ExpectedVersion(tags=None)

# If-Match (RFC 9110 13.1.1): `*`, or a comma-separated list of entity tags, each strong
# ("42") or weak (W/"42"), with empty list elements allowed. The OpenAPI document declares
# this same pattern, so a value it allows is never refused as malformed.
_OWS = r"[ \t]*"
_OPAQUE = r"[\x21\x23-\x7e\x80-\xff]*"
_TAG = rf'(?:W/)?"{_OPAQUE}"'
IF_MATCH_PATTERN = rf"^{_OWS}(?:\*|(?:,{_OWS})*{_TAG}(?:{_OWS},(?:{_OWS}{_TAG})?)*){_OWS}$"
_IF_MATCH = re.compile(IF_MATCH_PATTERN)
_ELEMENT = re.compile(rf'(W/)?"({_OPAQUE})"')


def parse_if_match(value: str) -> ExpectedVersion:
    """`*` or a comma-separated list of entity tags (RFC 9110); anything else is 400."""
    if not _IF_MATCH.fullmatch(value):
        raise BadRequest(
            'If-Match must be * or entity tags as sent in ETag, e.g. If-Match: "42".',
            code="invalid_if_match",
        )
    if value.strip(" \t") == "*":
        return ANY_VERSION
    # Weak tags never match a strong comparison, so only the strong ones are kept.
    return ExpectedVersion(
        tags=frozenset(opaque for weak, opaque in _ELEMENT.findall(value) if not weak)
    )


class Versioned(Protocol):
    @property
    def version(self) -> int: ...


def ensure_version(
    row: Versioned, expected: ExpectedVersion, current: Callable[[], BaseModel]
) -> None:
    """Refuse (412, with the row as it is now) a write based on another version of the row.

    Call it with the row read after the trip lock, before changing anything.
    """
    if not expected.matches(row.version):
        raise PreconditionFailed(
            f"The resource has changed (it is now at {entity_tag(row.version)}): "
            "apply your change to the current version and send its ETag.",
            current=current(),
            version=row.version,
        )


def set_etag(response: Response, version: int) -> None:
    """Routes: send the version of the resource in the response as its ETag."""
    response.headers["ETag"] = entity_tag(version)


# --- OpenAPI ------------------------------------------------------------------------------------

_ETAG_HEADER = {
    "ETag": {
        "description": 'The version of the resource as a strong entity tag, e.g. "42": '
        "send it in If-Match to change or delete exactly this version.",
        "schema": {"type": "string"},
    }
}


def etag_responses(status: int = 200) -> dict[int | str, dict[str, Any]]:
    """Declare the ETag header on a route's success response."""
    return {status: {"headers": _ETAG_HEADER}}


def conditional_write_responses(
    status: int | None = 200, *, required: bool = True
) -> dict[int | str, dict[str, Any]]:
    """The answers of a write guarded by If-Match (and the ETag of its success, if any)."""
    responses = error_responses(400, 412, 428) if required else error_responses(400, 412)
    responses[412] = {
        **responses[412],
        "description": "Not the current version: `current` is the resource as it is now.",
        "headers": _ETAG_HEADER,
    }
    if required:
        responses[428]["description"] = "If-Match is missing."
    if status is not None:
        responses.update(etag_responses(status))
    return responses


def location_header(description: str) -> dict[str, Any]:
    """The `Location` of a 201, as the OpenAPI document declares it."""
    return {"description": description, "schema": {"type": "string", "format": "uri-reference"}}


def location_responses(description: str) -> dict[int | str, dict[str, Any]]:
    """Declare what the `Location` of a route's 201 points to, when it is not the created
    resource under the collection posted to (which the route class declares by default)."""
    return {201: {"headers": {"Location": location_header(description)}}}


def create_responses(model: type[BaseModel]) -> dict[int | str, dict[str, Any]]:
    """The answers of a create that accepts a client-chosen `id`."""
    responses = error_responses(409, 410)
    responses[409]["description"] = (
        "Conflict; `id_conflict`: the id is taken (`current`: the resource, when yours to see)."
    )
    responses[410]["description"] = "`deleted`: the resource with this id was deleted."
    return {
        **responses,
        **etag_responses(201),
        200: {
            "model": model,
            "description": "A replay: the resource already exists with this id and content.",
            "headers": _ETAG_HEADER,
        },
    }
