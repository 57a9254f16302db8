"""Two-factor sign-in (TOTP, RFC 6238): enrolment, its confirmation with recovery codes,
turning it off, and the second step of a login.

Enrolment stores a new secret, encrypted (app.core.security.encrypt_secret), as pending; a
code from the app confirms it, which turns two-factor sign-in on and hands out the recovery
codes, once (only their SHA-256 is kept). From then on a right password at `POST /auth/login`
gives no session but a short-lived `mfa_token` (MfaRequired), which `finish_login` exchanges,
with a code or a recovery code, for the session. A code is accepted once: the time step of
the last one accepted is kept, and it and older steps are refused. Turning it on or off ends
the user's other sessions and mails them a notice.
"""

import hashlib
import hmac
import logging
import secrets
import time
import uuid
from typing import Literal

import pyotp
from sqlmodel import Session, col, delete, func, select

from app.core.columns import utcnow
from app.core.config import get_settings
from app.core.errors import Conflict, Forbidden, Unauthorized
from app.core.security import (
    create_mfa_token,
    decode_mfa_token,
    decrypt_secret,
    encrypt_secret,
    reencrypt_secret,
    verify_password,
)
from app.outbox import service as outbox
from app.users import sessions
from app.users.models import (
    Token,
    TwoFactorEnrolment,
    TwoFactorStatus,
    User,
    UserRecoveryCode,
    UserTwoFactor,
)

logger = logging.getLogger(__name__)

DIGITS = 6
STEP_SECONDS = 30
# Codes of the step before and the step after the current one are accepted too: the phone's
# clock may be a little off, and a code typed in its last seconds arrives in the next step.
DRIFT_STEPS = 1
RECOVERY_CODES = 10
# Crockford's base32: 16 characters are 80 random bits. Read back, O is 0 and I and L are 1.
_RECOVERY_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_RECOVERY_LENGTH = 16
_READ_AS = str.maketrans({"O": "0", "I": "1", "L": "1", " ": None, "-": None})

# The outbox kinds of the notices.
ENABLED_NOTICE = "two_factor_enabled"
DISABLED_NOTICE = "two_factor_disabled"
RECOVERY_CODE_NOTICE = "recovery_code_used"

SecondFactor = Literal["code", "recovery_code"]


class MfaRequired(Unauthorized):
    """The password was right, and the account asks for a second factor: the problem carries
    the token that finishes the login (POST /auth/login/2fa)."""

    code = "mfa_required"

    def __init__(self, mfa_token: str, expires_in: int) -> None:
        super().__init__(
            "The password is right; this account also asks for a code from its authenticator "
            "app. Send it with the mfa_token to POST /auth/login/2fa."
        )
        self.extensions = {"mfa_token": mfa_token, "mfa_token_expires_in": expires_in}


def _invalid_mfa_token() -> Unauthorized:
    return Unauthorized(
        "The mfa_token is invalid, expired or already used: log in again with the password.",
        code="invalid_mfa_token",
    )


_WRONG_CODE = (
    "The code is wrong, or was already used: enter the code the app shows now (or wait for "
    "its next one), or an unused recovery code."
)


def _wrong_password() -> Forbidden:
    return Forbidden("The password is incorrect; nothing was changed.", code="wrong_password")


def _not_enabled() -> Conflict:
    return Conflict("Two-factor sign-in is not on for this account.", code="two_factor_not_enabled")


# --- reading ----------------------------------------------------------------------------------


def _enrolment(session: Session, user_id: uuid.UUID) -> UserTwoFactor | None:
    return session.get(UserTwoFactor, user_id, populate_existing=True)


def is_enabled(*, session: Session, user_id: uuid.UUID) -> bool:
    """Whether logging in to this account asks for a second factor."""
    enabled = session.exec(
        select(UserTwoFactor.user_id).where(
            UserTwoFactor.user_id == user_id, col(UserTwoFactor.enabled_at).is_not(None)
        )
    ).first()
    return enabled is not None


def _recovery_codes_left(session: Session, user_id: uuid.UUID) -> int:
    return session.exec(select(func.count()).where(col(UserRecoveryCode.user_id) == user_id)).one()


def status(*, session: Session, user: User) -> TwoFactorStatus:
    enrolment = _enrolment(session, user.id)
    enabled_at = enrolment.enabled_at if enrolment is not None else None
    return TwoFactorStatus(
        enabled=enabled_at is not None,
        enabled_at=enabled_at,
        pending=enrolment is not None and enabled_at is None,
        recovery_codes_left=_recovery_codes_left(session, user.id) if enabled_at else 0,
    )


# --- checking a second factor -----------------------------------------------------------------


def _normalised(code: str) -> str:
    return code.upper().translate(_READ_AS)


def _recovery_hash(normalised_code: str) -> bytes:
    return hashlib.sha256(normalised_code.encode()).digest()


def _accept_code(enrolment: UserTwoFactor, code: str, now: float) -> bool:
    """Whether `code` is the app's code of a step around `now` not older than the last one
    accepted; if so that step becomes the last one accepted."""
    secret = decrypt_secret(enrolment.secret_encrypted)
    if secret is None:
        # Recovery codes still work: they are hashed, not encrypted.
        logger.error(
            "the two-factor secret of user %s cannot be decrypted: was SECRET_KEY or "
            "TWO_FACTOR_ENCRYPTION_KEYS changed without keeping the old key?",
            enrolment.user_id,
        )
        return False
    totp = pyotp.TOTP(secret, digits=DIGITS, interval=STEP_SECONDS)
    current = totp.timecode(now)
    for step in range(current - DRIFT_STEPS, current + DRIFT_STEPS + 1):
        if enrolment.last_used_step is not None and step <= enrolment.last_used_step:
            continue  # that code was used, or is older than one that was (RFC 6238 5.2)
        if hmac.compare_digest(totp.generate_otp(step), code):
            enrolment.last_used_step = step
            enrolment.secret_encrypted = reencrypt_secret(enrolment.secret_encrypted)
            return True
    return False


def _use_recovery_code(session: Session, user_id: uuid.UUID, code: str) -> bool:
    """Whether `code` is an unused recovery code of the user; if so it is used up."""
    used = session.execute(
        delete(UserRecoveryCode)
        .where(
            col(UserRecoveryCode.user_id) == user_id,
            col(UserRecoveryCode.code_hash) == _recovery_hash(code),
        )
        .returning(col(UserRecoveryCode.user_id))
    ).first()
    return used is not None


def _accept_second_factor(
    session: Session, enrolment: UserTwoFactor, code: str
) -> SecondFactor | None:
    """Which second factor `code` is, if it is a valid one (it is then used); else None."""
    normalised = _normalised(code)
    if len(normalised) == DIGITS and normalised.isdigit():
        return "code" if _accept_code(enrolment, normalised, time.time()) else None
    if len(normalised) == _RECOVERY_LENGTH and _use_recovery_code(
        session, enrolment.user_id, normalised
    ):
        return "recovery_code"
    return None


# --- enrolment --------------------------------------------------------------------------------


def _lock_account(session: Session, user_id: uuid.UUID) -> User | None:
    """Lock the active account's row: everything that reads and writes its second factor
    (enrolment, confirmation, turning off, a login's second step, the account's deletion)
    holds it, so they run one at a time per account, always taking this lock first.

    FOR NO KEY UPDATE: rows referring to the account (a new session) may still be written
    under it, which FOR UPDATE would block.
    """
    return session.exec(
        select(User)
        .where(User.id == user_id, col(User.is_active))
        .with_for_update(key_share=True)
        .execution_options(populate_existing=True)
    ).first()


def _lock_signed_in(session: Session, user: User) -> None:
    if _lock_account(session, user.id) is None:  # deleted meanwhile
        raise Unauthorized("The access token is no longer valid.", code="invalid_token")


def start_enrolment(*, session: Session, user: User, password: str) -> TwoFactorEnrolment:
    """A new secret for the authenticator app, pending until a code confirms it (and
    replacing a pending one). Refused once two-factor sign-in is on: turn it off first."""
    if not verify_password(password, user.password_hash):
        raise _wrong_password()
    _lock_signed_in(session, user)
    enrolment = _enrolment(session, user.id)
    if enrolment is not None and enrolment.enabled_at is not None:
        raise Conflict(
            "Two-factor sign-in is already on; turn it off first to use another app.",
            code="two_factor_enabled",
        )
    secret = pyotp.random_base32()  # 160 bits, as RFC 4226 recommends
    if enrolment is None:
        enrolment = UserTwoFactor(user_id=user.id, secret_encrypted=encrypt_secret(secret))
    else:
        enrolment.secret_encrypted = encrypt_secret(secret)
        enrolment.created_at = utcnow()
        enrolment.last_used_step = None
    session.add(enrolment)
    totp = pyotp.TOTP(secret, digits=DIGITS, interval=STEP_SECONDS)
    return TwoFactorEnrolment(
        secret=secret,
        otpauth_uri=totp.provisioning_uri(name=user.email, issuer_name=get_settings().PROJECT_NAME),
    )


def _recovery_code() -> str:
    characters = "".join(secrets.choice(_RECOVERY_ALPHABET) for _ in range(_RECOVERY_LENGTH))
    return "-".join(characters[start : start + 4] for start in range(0, _RECOVERY_LENGTH, 4))


def _replace_recovery_codes(session: Session, user_id: uuid.UUID) -> list[str]:
    session.execute(delete(UserRecoveryCode).where(col(UserRecoveryCode.user_id) == user_id))
    codes = [_recovery_code() for _ in range(RECOVERY_CODES)]
    session.add_all(
        UserRecoveryCode(user_id=user_id, code_hash=_recovery_hash(_normalised(code)))
        for code in codes
    )
    return codes


def _notify(session: Session, user: User, kind: str, subject: str, **context: object) -> None:
    outbox.enqueue(
        session=session,
        kind=kind,
        to=user.email,
        subject=subject,
        context={"full_name": user.full_name, "link": outbox.public_link("/"), **context},
    )


def confirm_enrolment(
    *, session: Session, user: User, code: str, current_session_id: uuid.UUID
) -> list[str]:
    """Turn two-factor sign-in on with a first code from the app; returns the recovery codes
    (shown this once). Every other session of the user ends, and they are mailed a notice."""
    _lock_signed_in(session, user)
    enrolment = _enrolment(session, user.id)
    if enrolment is None:
        raise Conflict(
            "No enrolment is waiting for a code: start one with POST /users/me/2fa.",
            code="two_factor_not_pending",
        )
    if enrolment.enabled_at is not None:
        raise Conflict("Two-factor sign-in is already on.", code="two_factor_enabled")
    normalised = _normalised(code)
    if not (len(normalised) == DIGITS and _accept_code(enrolment, normalised, time.time())):
        raise Forbidden(_WRONG_CODE, code="invalid_two_factor_code")
    enrolment.enabled_at = utcnow()
    session.add(enrolment)
    session.flush()  # the recovery codes refer to it
    codes = _replace_recovery_codes(session, user.id)
    ended = sessions.end_all_sessions(
        session=session, user_id=user.id, except_session_id=current_session_id
    )
    _notify(
        session,
        user,
        ENABLED_NOTICE,
        "Two-factor sign-in is on for your TripSync account",
        ended_sessions=ended,
    )
    return codes


def disable(
    *, session: Session, user: User, password: str, code: str, current_session_id: uuid.UUID
) -> None:
    """Turn two-factor sign-in off, with the password and a code (or a recovery code). Every
    other session of the user ends, and they are mailed a notice."""
    if not verify_password(password, user.password_hash):
        raise _wrong_password()
    _lock_signed_in(session, user)
    enrolment = _enrolment(session, user.id)
    if enrolment is None or enrolment.enabled_at is None:
        raise _not_enabled()
    if _accept_second_factor(session, enrolment, code) is None:
        raise Forbidden(_WRONG_CODE, code="invalid_two_factor_code")
    forget(session=session, user_id=user.id)
    ended = sessions.end_all_sessions(
        session=session, user_id=user.id, except_session_id=current_session_id
    )
    _notify(
        session,
        user,
        DISABLED_NOTICE,
        "Two-factor sign-in is off for your TripSync account",
        ended_sessions=ended,
    )


def forget(*, session: Session, user_id: uuid.UUID) -> None:
    """Delete the user's second factor, pending or on, and its recovery codes (cascade)."""
    session.execute(delete(UserTwoFactor).where(col(UserTwoFactor.user_id) == user_id))


# --- the login's second step ------------------------------------------------------------------


def _binding(user: User) -> str:
    # An mfa_token stops working when the password changes (a reset, a change elsewhere).
    # Keyed: the token's payload is readable, and must tell nothing about the password hash.
    key = get_settings().SECRET_KEY.get_secret_value().encode()
    return hmac.new(key, user.password_hash.encode(), hashlib.sha256).hexdigest()[:32]


def require_second_factor(*, session: Session, user: User, device_label: str) -> None:
    """Raise MfaRequired, with the token of the second step, when the account asks for a
    second factor; return when the password alone signs in."""
    if not is_enabled(session=session, user_id=user.id):
        return
    token = create_mfa_token(user.id, binding=_binding(user), device_label=device_label)
    raise MfaRequired(token, get_settings().MFA_TOKEN_TTL_SECONDS)


def mfa_token_user(mfa_token: str) -> uuid.UUID | None:
    """The account a well-formed, unexpired mfa_token names (for rate limits: not a proof)."""
    claims = decode_mfa_token(mfa_token)
    return claims.user_id if claims is not None else None


def finish_login(*, session: Session, mfa_token: str, code: str) -> Token:
    """The session of a login whose password was right (`mfa_token`), for a code of the app
    or an unused recovery code.

    The token is bound to its user and password and expires after MFA_TOKEN_TTL_SECONDS;
    a login finished with a second factor spends every token of the account issued before
    it. Wrong codes change nothing (they are counted by the rate limit).
    """
    claims = decode_mfa_token(mfa_token)
    if claims is None:
        raise _invalid_mfa_token()
    # One second step per account at a time: of two racing with one token, or with one
    # code, the second finds it spent or used.
    user = _lock_account(session, claims.user_id)
    enrolment = _enrolment(session, claims.user_id) if user is not None else None
    if user is None or enrolment is None or enrolment.enabled_at is None:
        raise _invalid_mfa_token()
    spent = enrolment.last_login_at is not None and (
        claims.issued_at <= enrolment.last_login_at.timestamp()
    )
    if spent or not hmac.compare_digest(claims.binding, _binding(user)):
        raise _invalid_mfa_token()
    used = _accept_second_factor(session, enrolment, code)
    if used is None:
        raise Unauthorized(_WRONG_CODE, code="invalid_two_factor_code")
    enrolment.last_login_at = utcnow()
    session.add(enrolment)
    if used == "recovery_code":
        _notify(
            session,
            user,
            RECOVERY_CODE_NOTICE,
            "A recovery code was used to log in to your TripSync account",
            codes_left=_recovery_codes_left(session, user.id),
        )
    return sessions.start_session(session=session, user=user, label=claims.device_label)
