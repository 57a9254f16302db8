"""User accounts, their sessions (one per signed-in device) and their second factor (TOTP):
the tables and API shapes."""

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import Field as ProblemField
from pydantic import StringConstraints
from sqlalchemy import BigInteger, CheckConstraint, DateTime, Index, LargeBinary
from sqlmodel import Field, SQLModel

from app.core.columns import timestamp_column, uuid_primary_key
from app.core.errors import Problem
from app.core.fields import REJECT_UNKNOWN_FIELDS, Email, Name, PartialUpdate
from app.core.security import OPAQUE_TOKEN_MAX_LENGTH, TOKEN_HASH_LENGTH

EMAIL_MAX = 320
PASSWORD_MIN, PASSWORD_MAX = 8, 128
# What a deleted account is called wherever it is still referred to (its participants, the
# activity it took part in); no personal data of the account survives its deletion.
FORMER_MEMBER_NAME = "Former member"


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
    # Set when the owner proved they read this address; cleared when the address changes.
    email_verified_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    created_at: datetime = timestamp_column()
    updated_at: datetime = timestamp_column()
    # Set when the account was deleted: the row stays (what others recorded still points at
    # it) but holds nothing personal, and can never sign in again (users.service).
    deleted_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))


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


class AccountDeletion(SQLModel):
    """Deleting the account is confirmed with its password."""

    model_config = REJECT_UNKNOWN_FIELDS

    password: str = Field(max_length=PASSWORD_MAX)


class AccountExported(SQLModel):
    """The account itself, as the export (GET /users/me/export) shows it."""

    id: uuid.UUID
    email: str
    full_name: str
    email_verified_at: datetime | None
    created_at: datetime
    updated_at: datetime
    two_factor_enabled_at: datetime | None = Field(
        description="Since when logging in asks for a second factor (null: it does not); "
        "the export never holds its secret or recovery codes"
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


DEVICE_LABEL_MAX = 100


class UserSession(SQLModel, table=True):
    """One sign-in of a user on one device: from login until logout, revocation, a password
    change elsewhere, reuse of an old refresh token, or REFRESH_TOKEN_TTL_DAYS unused.

    Its access tokens name it (`sid`) and are refused once it is gone; its refresh token is
    replaced at each use, and only the hash of the current one is kept.
    """

    __tablename__ = "user_sessions"

    id: uuid.UUID = uuid_primary_key()
    user_id: uuid.UUID = Field(foreign_key="users.id", index=True, ondelete="CASCADE")
    device_label: str = Field(max_length=DEVICE_LABEL_MAX)
    # Part of every refresh token of the session (and nowhere else): finds the session.
    refresh_key: uuid.UUID = Field(default_factory=uuid.uuid4, unique=True)
    # SHA-256 of the secret of the current refresh token; an earlier one presented is reuse.
    refresh_hash: bytes = Field(sa_type=LargeBinary)
    created_at: datetime = timestamp_column()
    # When it last logged in or refreshed (not every request: that would be a write each).
    last_used_at: datetime = timestamp_column()
    # When its refresh token stops working; `make cleanup` deletes it afterwards.
    expires_at: datetime = Field(sa_type=DateTime(timezone=True), index=True)


class UserSessionExported(SQLModel):
    """What a session shows of itself, in the session list and the account export: never its
    refresh key or token hash."""

    id: uuid.UUID
    device_label: str
    created_at: datetime
    last_used_at: datetime


class UserSessionPublic(UserSessionExported):
    current: bool = Field(description="Whether this is the session of the access token used")


class Token(SQLModel):
    """The OAuth2 token response (RFC 6749 section 5.1)."""

    access_token: str
    token_type: str = "bearer"  # noqa: S105 (the OAuth2 token type, not a secret)
    expires_in: int = Field(description="Seconds the access token is valid for")
    refresh_token: str = Field(
        description="Send to POST /auth/refresh for new tokens; it works once"
    )


class RefreshRequest(SQLModel):
    model_config = REJECT_UNKNOWN_FIELDS

    refresh_token: str = Field(min_length=1, max_length=256)


class PasswordResetToken(SQLModel, table=True):
    """A password reset asked for by email: the SHA-256 of the token mailed, never the token.

    It works once, for PASSWORD_RESET_TTL_MINUTES, and only while it is the user's newest
    unused one (app.users.password_reset): asking again deletes the earlier unused ones.
    """

    __tablename__ = "password_reset_tokens"
    __table_args__ = (
        CheckConstraint("expires_at > created_at", name="expiry_after_creation"),
        Index("uq_password_reset_tokens_token_hash", "token_hash", unique=True),
    )

    id: uuid.UUID = uuid_primary_key()
    user_id: uuid.UUID = Field(foreign_key="users.id", index=True, ondelete="CASCADE")
    # SHA-256 of the token, hex (app.core.security.opaque_token_hash).
    token_hash: str = Field(min_length=TOKEN_HASH_LENGTH, max_length=TOKEN_HASH_LENGTH)
    created_at: datetime = timestamp_column()
    # When it stops working; `make cleanup` deletes it afterwards, used or not.
    expires_at: datetime = Field(sa_type=DateTime(timezone=True), index=True)
    used_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))


class PasswordResetRequest(SQLModel):
    model_config = REJECT_UNKNOWN_FIELDS

    email: Email = Field(max_length=EMAIL_MAX)


class PasswordResetRequested(SQLModel):
    """The answer to every valid reset request: it does not say whether the address has an
    account."""

    email: str
    message: str = Field(
        description="The same text for every address: a link is mailed if it has an account."
    )


class PasswordReset(SQLModel):
    """The token from the reset mail, and the new password (the rules of registration)."""

    model_config = REJECT_UNKNOWN_FIELDS

    token: str = Field(min_length=1, max_length=OPAQUE_TOKEN_MAX_LENGTH)
    new_password: str = Field(min_length=PASSWORD_MIN, max_length=PASSWORD_MAX)


class PasswordResetExported(SQLModel):
    """A reset the account asked for, in its export: when, until when, whether it was used
    (never the token, which is not kept, nor its hash)."""

    id: uuid.UUID
    created_at: datetime
    expires_at: datetime
    used_at: datetime | None


class UserTwoFactor(SQLModel, table=True):
    """A user's authenticator (TOTP, RFC 6238): pending from enrolment until a code from it
    confirms it, then asked for at every login.

    The secret must be read to check a code, so it cannot be hashed: it is stored encrypted
    (app.core.security.encrypt_secret). Recovery codes are stored by their hash
    (`UserRecoveryCode`).
    """

    __tablename__ = "user_two_factor"

    user_id: uuid.UUID = Field(foreign_key="users.id", primary_key=True, ondelete="CASCADE")
    # The base32 secret, encrypted and authenticated (Fernet).
    secret_encrypted: bytes = Field(sa_type=LargeBinary)
    created_at: datetime = timestamp_column()
    # Set when a code confirmed the enrolment; until then logging in does not ask for one.
    enabled_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    # The time step (30 s) of the last code accepted: that code and older ones are refused.
    last_used_step: int | None = Field(default=None, sa_type=BigInteger)
    # The last login finished with a second factor: tokens of a first step issued before it
    # are spent.
    last_login_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))


class UserRecoveryCode(SQLModel, table=True):
    """One unused recovery code of a user's second factor, by the SHA-256 of the code (80
    random bits: no hash table or search reaches it). Used, it is deleted."""

    __tablename__ = "user_recovery_codes"

    user_id: uuid.UUID = Field(
        foreign_key="user_two_factor.user_id", primary_key=True, ondelete="CASCADE"
    )
    code_hash: bytes = Field(sa_type=LargeBinary, primary_key=True)


# A code from the authenticator app (6 digits) or a recovery code (16 letters and digits,
# grouped by hyphens); spaces and hyphens are ignored, letters in either case.
SECOND_FACTOR_PATTERN = r"^[0-9A-Za-z]([0-9A-Za-z -]*[0-9A-Za-z])?$"
SECOND_FACTOR_MAX = 40
SecondFactor = Annotated[
    str,
    StringConstraints(min_length=6, max_length=SECOND_FACTOR_MAX, pattern=SECOND_FACTOR_PATTERN),
]
_SECOND_FACTOR_DESCRIPTION = (
    "The 6-digit code the authenticator app shows now, or one of the recovery codes (each "
    "works once)"
)


class TwoFactorEnrolmentRequest(SQLModel):
    """Starting (or starting again) an enrolment is confirmed with the password."""

    model_config = REJECT_UNKNOWN_FIELDS

    password: str = Field(max_length=PASSWORD_MAX)


class TwoFactorEnrolment(SQLModel):
    """The new secret, for the authenticator app: scan `otpauth_uri` as a QR code, or type
    `secret` in. Shown once; confirm it with a code (POST /users/me/2fa/confirm)."""

    secret: str = Field(description="The base32 secret, for typing into the app")
    otpauth_uri: str = Field(
        description="otpauth://totp/… URI (issuer: the service's name, account: the email "
        "address), the content of a QR code for the app"
    )
    digits: Literal[6] = 6
    period: Literal[30] = Field(default=30, description="Seconds each code lasts")
    algorithm: Literal["SHA1"] = "SHA1"


class TwoFactorCode(SQLModel):
    model_config = REJECT_UNKNOWN_FIELDS

    code: SecondFactor = Field(description="The 6-digit code the authenticator app shows now")


class TwoFactorEnabled(SQLModel):
    """Two-factor sign-in is on. The recovery codes are shown this once: each replaces a code
    from the app once, when the app is lost."""

    recovery_codes: list[str]


class TwoFactorRemoval(SQLModel):
    """Turning two-factor sign-in off takes the password and a second factor."""

    model_config = REJECT_UNKNOWN_FIELDS

    password: str = Field(max_length=PASSWORD_MAX)
    code: SecondFactor = Field(description=_SECOND_FACTOR_DESCRIPTION)


class TwoFactorStatus(SQLModel):
    enabled: bool = Field(description="Whether logging in asks for a second factor")
    enabled_at: datetime | None
    pending: bool = Field(description="An enrolment was started and awaits its first code")
    recovery_codes_left: int


class TwoFactorLogin(SQLModel):
    """The second step of a login: the `mfa_token` of the first and a second factor."""

    model_config = REJECT_UNKNOWN_FIELDS

    mfa_token: str = Field(min_length=1, max_length=2048)
    code: SecondFactor = Field(description=_SECOND_FACTOR_DESCRIPTION)


class MfaRequiredProblem(Problem):
    """A 401 of POST /auth/login: `invalid_credentials`, or `mfa_required` (the password was
    right) with the token that finishes the login at POST /auth/login/2fa."""

    mfa_token: str | None = ProblemField(
        default=None, description="mfa_required: send to POST /auth/login/2fa with a code"
    )
    mfa_token_expires_in: int | None = ProblemField(
        default=None, description="mfa_required: seconds the mfa_token is valid for"
    )


class CalendarFeedToken(SQLModel, table=True):
    """A user's calendar feed token: the SHA-256 of it, never the token (app.users.calendar).

    One per user: asking for a new one replaces it, and revoking deletes it, so the old
    feed addresses stop working at once.
    """

    __tablename__ = "calendar_feed_tokens"
    __table_args__ = (Index("uq_calendar_feed_tokens_token_hash", "token_hash", unique=True),)

    user_id: uuid.UUID = Field(foreign_key="users.id", primary_key=True, ondelete="CASCADE")
    # SHA-256 of the token, hex (app.core.security.opaque_token_hash).
    token_hash: str = Field(min_length=TOKEN_HASH_LENGTH, max_length=TOKEN_HASH_LENGTH)
    created_at: datetime = timestamp_column()


class CalendarFeedTokenExported(SQLModel):
    """The account's calendar feed token, in its export: since when (never the token, which
    is not kept, nor its hash)."""

    created_at: datetime


class CalendarFeedTokenCreated(SQLModel):
    """A new calendar feed token, shown this once: put it in a trip's feed address."""

    token: str
    created_at: datetime
    feed_path: str = Field(
        description="A trip's feed address, relative to the API: put the trip's id in it."
    )
