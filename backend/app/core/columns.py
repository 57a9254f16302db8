"""Column helpers every table uses, and the metadata's naming convention."""

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import BigInteger, DateTime, func, text
from sqlmodel import Field, SQLModel

# Constraint names are deterministic, so migrations can drop and alter them by name.
SQLModel.metadata.naming_convention = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


def uuid_primary_key() -> Any:
    return Field(default_factory=uuid.uuid4, primary_key=True)


def timestamp_column() -> Any:
    """A timezone-aware timestamp set by the application, with the database's clock as default."""
    return Field(
        default_factory=utcnow,
        sa_type=DateTime(timezone=True),
        sa_column_kwargs={"server_default": func.now(), "nullable": False},
    )


def version_column() -> Any:
    """A row's sync version: the trip version of the transaction that last wrote it."""
    return Field(
        default=0,
        sa_type=BigInteger,
        sa_column_kwargs={"server_default": text("0"), "nullable": False},
    )
