"""Request dependencies that need no feature, each an `Annotated` alias: session, If-Match.

The caller (`CurrentUser`) lives in app.users.deps, trip access (`TripMember`...) in
app.trips.deps.
"""

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Depends, Header
from sqlmodel import Session

from app.core.admission import take_hashing_turn
from app.core.db import get_session, get_snapshot_session
from app.core.preconditions import (
    ANY_VERSION,
    IF_MATCH_PATTERN,
    ExpectedVersion,
    parse_if_match,
)

# Function scope: commit and close happen before the response is sent (see get_session).
SessionDep = Annotated[Session, Depends(get_session, scope="function")]
# Request scope: a read-only snapshot open until a streamed response has been sent.
SnapshotSessionDep = Annotated[Session, Depends(get_snapshot_session, scope="request")]

# Route dependencies that use no session: solved before the idempotency guard opens one.
BEFORE_SESSION: set[Callable[..., Any]] = {take_hashing_turn}


def before_session(dependency: Callable[..., Any]) -> Any:
    """A route dependency (for `dependencies=[...]`) solved before the session.

    For checks that must not run while the request holds a connection: a rate limit counted
    on a connection of its own would otherwise make one request hold two. The route class
    (app.api.routing) puts these first.
    """
    BEFORE_SESSION.add(dependency)
    return Depends(dependency, scope="function")


_IF_MATCH = (
    'The ETag of the version this change is based on, e.g. "42" (or * for any version). '
    "Another version is refused with 412 and the current one."
)

# Documented only: parse_if_match checks it and answers 400 invalid_if_match.
_IF_MATCH_SCHEMA: dict[str, Any] = {"pattern": IF_MATCH_PATTERN}


def get_expected_version(
    if_match: Annotated[
        str,
        Header(
            alias="If-Match",
            description=_IF_MATCH + " Required: 428 without it.",
            json_schema_extra=_IF_MATCH_SCHEMA,
        ),
    ],
) -> ExpectedVersion:
    # Missing, it is a validation error that the error handler answers with 428.
    return parse_if_match(if_match)


def get_optional_expected_version(
    if_match: Annotated[
        str | None,
        Header(
            alias="If-Match",
            description=_IF_MATCH + " Optional.",
            json_schema_extra=_IF_MATCH_SCHEMA,
        ),
    ] = None,
) -> ExpectedVersion:
    return ANY_VERSION if if_match is None else parse_if_match(if_match)


# Declare after the trip access dependency: the access rule answers first (401/404/403).
IfMatch = Annotated[ExpectedVersion, Depends(get_expected_version)]
OptionalIfMatch = Annotated[ExpectedVersion, Depends(get_optional_expected_version)]
