"""The account export: every feature registers what it stores about a user, and
`GET /users/me/export` streams it all as one JSON document.

Like the account deletion hooks (app.users.hooks), the sections come from the features that
hold the data, which users does not import: each registers an `ExportSection` from its
service module. The document is written as it is read: each section's rows come through a
server-side cursor, EXPORT_BATCH_ROWS at a time, and leave in chunks of about
`CHUNK_BYTES`, so an export holds one batch and one chunk in memory, never the document.
What each section holds, and what of other people it shows, is in docs/api.md ("Account
export").
"""

import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from types import GenericAlias
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, TypeAdapter, create_model
from pydantic import Field as PydanticField
from sqlalchemy.sql.base import Executable
from sqlmodel import Session, select

from app.core.columns import utcnow
from app.core.config import get_settings
from app.users.models import AccountExported, User, UserTwoFactor

FORMAT = "tripsync-account-export/1"
CHUNK_BYTES = 64 * 1024

Statement = TypeVar("Statement", bound=Executable)
# (session, user) → the user's rows of one section, read lazily.
Reader = Callable[[Session, User], Iterable[BaseModel]]


@dataclass(frozen=True)
class ExportSection:
    """One key of the document: a list of `shape`, the rows `read` yields for the user."""

    name: str
    shape: type[BaseModel]
    read: Reader
    description: str


_sections: dict[str, ExportSection] = {}
# Written into the document as they are: keys that need no JSON escaping.
_NAME = re.compile(r"[a-z][a-z_]*")


def register(section: ExportSection) -> ExportSection:
    """Add a section to every export (at import, from the feature's service module)."""
    if not _NAME.fullmatch(section.name):
        raise ValueError(f"an export section's name is lower-case words: {section.name!r}")
    existing = _sections.get(section.name)
    if existing is not None and existing is not section:
        raise ValueError(f"two export sections are named {section.name!r}")
    _sections[section.name] = section
    return section


def sections() -> list[ExportSection]:
    """The registered sections, in the document's order (by name)."""
    return [_sections[name] for name in sorted(_sections)]


def streamed(statement: Statement) -> Statement:
    """The statement read through a server-side cursor, EXPORT_BATCH_ROWS rows at a time."""
    return statement.execution_options(yield_per=get_settings().EXPORT_BATCH_ROWS)


Shape = TypeVar("Shape", bound=BaseModel)


def exported_rows(session: Session, shape: type[Shape], statement: Any) -> Iterator[Shape]:
    """Each row of `statement` (one table row each), read streamed, in the export's `shape`."""
    for row in session.exec(streamed(statement)):
        yield shape.model_validate(row, from_attributes=True)


def document_model() -> type[BaseModel]:
    """The document's shape, for the OpenAPI description: built once the sections are known."""
    fields: dict[str, Any] = {
        "format": (Literal["tripsync-account-export/1"], ...),
        "exported_at": (datetime, ...),
        "account": (AccountExported, ...),
    }
    for section in sections():
        fields[section.name] = (
            GenericAlias(list, (section.shape,)),  # list[shape]
            PydanticField(description=section.description),
        )
    return create_model("AccountExport", __doc__="Everything stored about the caller.", **fields)


_TIMESTAMP = TypeAdapter(datetime)


def _account(session: Session, user: User) -> AccountExported:
    # Whether logging in asks for a second factor, and since when: never its secret or codes.
    enabled_at = session.exec(
        select(UserTwoFactor.enabled_at).where(UserTwoFactor.user_id == user.id)
    ).first()
    return AccountExported(
        id=user.id,
        email=user.email,
        full_name=user.full_name,
        email_verified_at=user.email_verified_at,
        created_at=user.created_at,
        updated_at=user.updated_at,
        two_factor_enabled_at=enabled_at,
    )


def stream_document(session: Session, user: User) -> Iterator[bytes]:
    """The export of `user`, as JSON text in chunks, read section by section as it is sent."""
    chunk = bytearray(b'{"format":"' + FORMAT.encode() + b'","exported_at":')
    chunk += _TIMESTAMP.dump_json(utcnow())
    chunk += b',"account":' + _account(session, user).model_dump_json().encode()
    for section in sections():
        chunk += b',"' + section.name.encode() + b'":['
        first = True
        for row in section.read(session, user):
            if not first:
                chunk += b","
            chunk += row.model_dump_json().encode()
            first = False
            if len(chunk) >= CHUNK_BYTES:
                yield bytes(chunk)
                chunk.clear()
        chunk += b"]"
    chunk += b"}"
    yield bytes(chunk)
