"""Password hashing (Argon2), access tokens (signed JWT) and refresh tokens (opaque, stored
only as a hash)."""

import base64
import binascii
import hashlib
import secrets
import threading
import uuid
from datetime import timedelta
from functools import cache

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from app.core.columns import utcnow
from app.core.config import get_settings

ALGORITHM = "HS256"


@cache
def _password_hasher() -> PasswordHasher:
    settings = get_settings()
    return PasswordHasher(
        time_cost=settings.ARGON2_TIME_COST, memory_cost=settings.ARGON2_MEMORY_COST_KIB
    )


@cache
def hashing_slots() -> threading.BoundedSemaphore:
    # Each Argon2 hash holds ARGON2_MEMORY_COST_KIB of memory: without a bound, a burst of
    # logins on every worker thread at once would multiply it by the thread count.
    return threading.BoundedSemaphore(get_settings().PASSWORD_HASH_CONCURRENCY)


def hash_password(password: str) -> str:
    with hashing_slots():
        return _password_hasher().hash(password)


def verify_password(password: str, password_hash: str) -> bool:
    with hashing_slots():
        try:
            return _password_hasher().verify(password_hash, password)
        except (VerificationError, InvalidHashError):
            return False


# Verified against when the account does not exist, so both paths cost the same.
@cache
def dummy_password_hash() -> str:
    return hash_password("not-a-real-password")


def create_access_token(user_id: uuid.UUID, session_id: uuid.UUID) -> str:
    """A bearer token of the user, valid while its session lasts and for at most
    ACCESS_TOKEN_EXPIRE_MINUTES."""
    settings = get_settings()
    now = utcnow()
    claims = {
        "sub": str(user_id),
        "sid": str(session_id),
        "iat": now,
        "exp": now + timedelta(minutes=settings.ACCESS_TOKEN_EXPIRE_MINUTES),
    }
    return jwt.encode(claims, settings.SECRET_KEY.get_secret_value(), algorithm=ALGORITHM)


def decode_access_token(token: str) -> tuple[uuid.UUID, uuid.UUID] | None:
    """The user id and session id of a valid token; None for anything else."""
    try:
        claims = jwt.decode(
            token,
            get_settings().SECRET_KEY.get_secret_value(),
            algorithms=[ALGORITHM],
            options={"require": ["sub", "exp", "sid"]},
        )
        if "purpose" in claims:
            return None
        return uuid.UUID(str(claims["sub"])), uuid.UUID(str(claims["sid"]))
    except (jwt.PyJWTError, ValueError, TypeError, AttributeError):
        return None


# A refresh token is 64 URL-safe characters: the 16 bytes of its session's refresh key, which
# finds the session, then 32 random bytes, of which only the SHA-256 is stored.
_REFRESH_SECRET_BYTES = 32
REFRESH_TOKEN_LENGTH = 64


def issue_refresh_token(refresh_key: uuid.UUID) -> tuple[str, bytes]:
    """A new refresh token for the session with this key: the token (given to the client
    once, never stored) and the hash of its secret (stored)."""
    secret = secrets.token_bytes(_REFRESH_SECRET_BYTES)
    token = base64.urlsafe_b64encode(refresh_key.bytes + secret).decode()
    return token, hashlib.sha256(secret).digest()


def read_refresh_token(token: str) -> tuple[uuid.UUID, bytes] | None:
    """The session's refresh key and the hash of the secret a refresh token carries; None
    when it is not shaped like one."""
    if len(token) != REFRESH_TOKEN_LENGTH:
        return None
    try:
        raw = base64.urlsafe_b64decode(token.encode("ascii"))
    except (binascii.Error, UnicodeEncodeError, ValueError):
        return None
    if len(raw) != 16 + _REFRESH_SECRET_BYTES or base64.urlsafe_b64encode(raw).decode() != token:
        return None
    return uuid.UUID(bytes=raw[:16]), hashlib.sha256(raw[16:]).digest()


_EMAIL_PURPOSE = "verify-email"


def create_email_token(user_id: uuid.UUID, email: str) -> str:
    """A signed token proving control of `email` for this account (sent to that address)."""
    settings = get_settings()
    now = utcnow()
    claims = {
        "sub": str(user_id),
        "email": email,
        "purpose": _EMAIL_PURPOSE,
        "iat": now,
        "exp": now + timedelta(hours=settings.EMAIL_VERIFICATION_TTL_HOURS),
    }
    return jwt.encode(claims, settings.SECRET_KEY.get_secret_value(), algorithm=ALGORITHM)


def decode_email_token(token: str) -> tuple[uuid.UUID, str] | None:
    """The account and the address a valid verification token names; None for anything else."""
    try:
        claims = jwt.decode(
            token,
            get_settings().SECRET_KEY.get_secret_value(),
            algorithms=[ALGORITHM],
            options={"require": ["sub", "exp", "email", "purpose"]},
        )
        if claims["purpose"] != _EMAIL_PURPOSE or not isinstance(claims["email"], str):
            return None
        return uuid.UUID(str(claims["sub"])), claims["email"]
    except (jwt.PyJWTError, ValueError):
        return None


# Single-use secrets handed out once and looked up by their hash (invite links, password
# resets): 32 random bytes in URL-safe base64 (43 characters), of which only the SHA-256 is
# stored. A 256-bit random token needs no slow hash: nobody can guess one to try.
_OPAQUE_TOKEN_BYTES = 32
# Longer input is never such a token (input shapes cap it here).
OPAQUE_TOKEN_MAX_LENGTH = 128
# The stored hash: SHA-256, hex.
TOKEN_HASH_LENGTH = 64


def opaque_token_hash(token: str) -> str:
    """What is stored of an opaque token: its SHA-256, hex."""
    return hashlib.sha256(token.encode()).hexdigest()


def issue_opaque_token() -> tuple[str, str]:
    """A new opaque token (given out once, never stored) and its hash (stored)."""
    token = secrets.token_urlsafe(_OPAQUE_TOKEN_BYTES)
    return token, opaque_token_hash(token)
