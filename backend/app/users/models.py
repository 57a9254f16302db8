"""User accounts: the table and its API shapes."""

import uuid
from datetime import datetime

from sqlalchemy import DateTime
from sqlmodel import Field, SQLModel

from app.core.columns import timestamp_column, uuid_primary_key
from app.core.fields import REJECT_UNKNOWN_FIELDS, Email, Name, PartialUpdate

EMAIL_MAX = 320
PASSWORD_MIN, PASSWORD_MAX = 8, 128


class UserBase(SQLModel):
    email: Email = Field(max_length=EMAIL_MAX)
    full_name: Name = Field(max_length=200)


class UserCreate(UserBase):
    model_config = REJECT_UNKNOWN_FIELDS

    password: str = Field(min_length=PASSWORD_MIN, max_length=PASSWORD_MAX)


class UserUpdate(PartialUpdate):
    """What a user may change on their own profile; unknown fields are rejected."""

    email: Email | None = Field(default=None, max_length=EMAIL_MAX)
    full_name: Name | None = Field(default=None, max_length=200)


class PasswordChange(SQLModel):
    model_config = REJECT_UNKNOWN_FIELDS

    current_password: str = Field(max_length=PASSWORD_MAX)
    new_password: str = Field(min_length=PASSWORD_MIN, max_length=PASSWORD_MAX)


class User(UserBase, table=True):
    __tablename__ = "users"

    id: uuid.UUID = uuid_primary_key()
    email: str = Field(max_length=EMAIL_MAX, unique=True)
    password_hash: str = Field(max_length=255)
    is_active: bool = Field(default=True)
    # Bumped when the password changes: tokens carrying an older version are refused.
    token_version: int = Field(default=0)
    # Set when the owner proved they read this address; cleared when the address changes.
    email_verified_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    created_at: datetime = timestamp_column()
    updated_at: datetime = timestamp_column()


class UserPublic(UserBase):
    id: uuid.UUID
    email_verified: bool
    created_at: datetime

    @classmethod
    def of(cls, user: "User") -> "UserPublic":
        return cls(
            id=user.id,
            email=user.email,
            full_name=user.full_name,
            email_verified=user.email_verified_at is not None,
            created_at=user.created_at,
        )


class RegistrationAccepted(SQLModel):
    """The answer to every valid registration: it does not say whether the address was new."""

    email: str
    message: str = (
        "Registration received, and a message is on its way to this address. If the address "
        "was new, log in now with it and the password you chose."
    )


class EmailVerification(SQLModel):
    model_config = REJECT_UNKNOWN_FIELDS

    token: str = Field(min_length=1, max_length=2048)


class Token(SQLModel):
    access_token: str
    token_type: str = "bearer"  # noqa: S105 (the OAuth2 token type, not a secret)
