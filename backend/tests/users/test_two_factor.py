"""Two-factor sign-in (TOTP): enrolment and confirmation, the login's second step, replayed
and wrong codes, recovery codes, the mfa_token's limits, rate limits, turning it off, and
what the account's deletion and export do with it."""

import base64
import json
import threading
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import SimpleNamespace
from typing import Any

import jwt
import pyotp
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text
from sqlmodel import Session, select

from app.core import security
from app.core.columns import utcnow
from app.core.config import get_settings
from app.idempotency.models import IdempotencyKey
from app.main import app, create_app
from app.users import two_factor
from app.users.models import User, UserRecoveryCode, UserSession, UserTwoFactor
from tests import factories, support


@dataclass
class Clock:
    """The time the second-factor checks see (app.users.two_factor), moved by the test."""

    now: float

    def code(self, secret: str, steps: int = 0) -> str:
        """The app's code `steps` steps of 30 s from now."""
        return pyotp.TOTP(secret).at(self.now, counter_offset=steps)

    def advance(self, steps: int = 1) -> None:
        self.now += 30 * steps


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    # 10 s into a step, so a step's code is never computed on its edge.
    clock = Clock(now=(time.time() // 30) * 30 + 10)
    monkeypatch.setattr(two_factor, "time", SimpleNamespace(time=lambda: clock.now))
    return clock


def start(client: TestClient, user: User, password: str = support.PASSWORD):  # type: ignore[no-untyped-def]
    return client.post("/users/me/2fa", headers=support.auth(user), json={"password": password})


def confirm(client: TestClient, user: User, code: str):  # type: ignore[no-untyped-def]
    return client.post("/users/me/2fa/confirm", headers=support.auth(user), json={"code": code})


def disable(client: TestClient, user: User, code: str, password: str = support.PASSWORD):  # type: ignore[no-untyped-def]
    return client.request(
        "DELETE",
        "/users/me/2fa",
        headers=support.auth(user),
        json={"password": password, "code": code},
    )


def enable(client: TestClient, clock: Clock, user: User) -> tuple[str, list[str]]:
    """Turn two-factor sign-in on with the code of the current step; the secret and the
    recovery codes. The clock then moves to the next step, whose code is unused."""
    started = start(client, user)
    assert started.status_code == 200, started.text
    secret: str = started.json()["secret"]
    confirmed = confirm(client, user, clock.code(secret))
    assert confirmed.status_code == 200, confirmed.text
    clock.advance()
    return secret, confirmed.json()["recovery_codes"]


def first_step(client: TestClient, user: User, **fields: str) -> str:
    """Log in with the password: the mfa_token of the 401 mfa_required."""
    response = client.post(
        "/auth/login", data={"username": user.email, "password": support.PASSWORD, **fields}
    )
    problem = support.assert_problem(response, 401, "mfa_required")
    assert response.headers["cache-control"] == "no-store"
    assert problem["mfa_token_expires_in"] == get_settings().MFA_TOKEN_TTL_SECONDS
    assert "access_token" not in problem
    return str(problem["mfa_token"])


def second_step(client: TestClient, mfa_token: str, code: str):  # type: ignore[no-untyped-def]
    return client.post("/auth/login/2fa", json={"mfa_token": mfa_token, "code": code})


def works(client: TestClient, tokens: dict[str, Any]) -> bool:
    response = client.get(
        "/users/me", headers={"Authorization": f"Bearer {tokens['access_token']}"}
    )
    assert response.status_code in (200, 401), response.text
    return response.status_code == 200


def sessions_of(session: Session, user: User) -> list[UserSession]:
    session.expire_all()
    return list(session.exec(select(UserSession).where(UserSession.user_id == user.id)).all())


def enrolment_of(session: Session, user: User) -> UserTwoFactor | None:
    session.expire_all()
    return session.get(UserTwoFactor, user.id)


def recovery_rows(session: Session, user: User) -> list[UserRecoveryCode]:
    return list(
        session.exec(select(UserRecoveryCode).where(UserRecoveryCode.user_id == user.id)).all()
    )


def log_in(client: TestClient, user: User) -> dict[str, Any]:
    response = client.post(
        "/auth/login", data={"username": user.email, "password": support.PASSWORD}
    )
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def test_enrol_confirm_then_log_in_with_a_code(
    client: TestClient, session: Session, clock: Clock
) -> None:
    user = factories.make_user(session, full_name="Ada")
    other_device = log_in(client, user)

    started = start(client, user)
    assert started.status_code == 200, started.text
    # Shown once: never kept for an Idempotency-Key.
    assert started.headers["cache-control"] == "no-store"
    enrolment = started.json()
    parsed = pyotp.parse_uri(enrolment["otpauth_uri"])
    assert isinstance(parsed, pyotp.TOTP)
    assert parsed.secret == enrolment["secret"]
    assert parsed.issuer == get_settings().PROJECT_NAME
    assert parsed.name == user.email
    assert (parsed.digits, parsed.interval) == (6, 30)
    assert enrolment["otpauth_uri"].startswith("otpauth://totp/")
    assert len(base64.b32decode(enrolment["secret"])) == 20  # 160 bits
    status = client.get("/users/me/2fa", headers=support.auth(user)).json()
    assert status == {
        "enabled": False,
        "enabled_at": None,
        "pending": True,
        "recovery_codes_left": 0,
    }
    # Pending: the password alone still logs in.
    assert works(client, log_in(client, user))

    # The secret is stored encrypted, not as it is.
    stored = enrolment_of(session, user)
    assert stored is not None
    assert enrolment["secret"].encode() not in stored.secret_encrypted
    assert security.decrypt_secret(stored.secret_encrypted) == enrolment["secret"]

    confirmed = confirm(client, user, clock.code(enrolment["secret"]))
    assert confirmed.status_code == 200, confirmed.text
    assert confirmed.headers["cache-control"] == "no-store"
    codes = confirmed.json()["recovery_codes"]
    assert len(codes) == len(set(codes)) == 10
    assert all(len(code) == 19 and code.count("-") == 3 for code in codes)
    # Only their hashes are kept.
    stored_hashes = {row.code_hash for row in recovery_rows(session, user)}
    assert len(stored_hashes) == 10
    assert not any(code.encode() in digest for code in codes for digest in stored_hashes)
    status = client.get("/users/me/2fa", headers=support.auth(user)).json()
    assert status["enabled"]
    assert not status["pending"]
    assert status["recovery_codes_left"] == 10

    # Every other session ended (the other device, the pending-time login); this one goes on.
    assert not works(client, other_device)
    assert [s.id for s in sessions_of(session, user)] == [support.session_of(user)]
    [notice] = [m for m in support.mail_to(user.email) if "is on" in m["Subject"]]
    assert "signed out" in support.text_of(notice)

    # Now a login asks for the second step; the right code gives the session.
    clock.advance()
    mfa_token = first_step(client, user, device_label="Ada's laptop")
    assert len(sessions_of(session, user)) == 1  # no session for the password alone
    response = second_step(client, mfa_token, clock.code(enrolment["secret"]))
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    tokens = response.json()
    assert set(tokens) == {"access_token", "token_type", "expires_in", "refresh_token"}
    assert works(client, tokens)
    labels = {s.device_label for s in sessions_of(session, user)}
    assert "Ada's laptop" in labels
    # The refresh token works as after any login.
    refreshed = client.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert refreshed.status_code == 200, refreshed.text


def test_a_wrong_code_is_401_and_changes_nothing(
    client: TestClient, session: Session, clock: Clock
) -> None:
    user = factories.make_user(session)
    secret, _ = enable(client, clock, user)
    mfa_token = first_step(client, user)
    right = clock.code(secret)
    wrong = f"{(int(right) + 1) % 1_000_000:06d}"
    for code in (wrong, "000 000" if right != "000000" else "111111", "ABCD-EFGH-JKMN-PQRS"):
        refused = second_step(client, mfa_token, code)
        support.assert_problem(refused, 401, "invalid_two_factor_code")
    assert len(sessions_of(session, user)) == 1  # only the test's own
    # A code two steps away is refused too: the drift allowed is one step.
    support.assert_problem(
        second_step(client, mfa_token, clock.code(secret, 2)), 401, "invalid_two_factor_code"
    )
    # The token was not spent by the failures; the right code still works (typed with a space).
    accepted = second_step(client, mfa_token, f"{right[:3]} {right[3:]}")
    assert accepted.status_code == 200, accepted.text


def test_a_code_works_once_and_older_ones_not_at_all(
    client: TestClient, session: Session, clock: Clock
) -> None:
    user = factories.make_user(session)
    secret = start(client, user).json()["secret"]
    confirmation_code = clock.code(secret)
    assert confirm(client, user, confirmation_code).status_code == 200
    # The code that confirmed the enrolment, replayed within its window, is refused.
    support.assert_problem(
        second_step(client, first_step(client, user), confirmation_code),
        401,
        "invalid_two_factor_code",
    )
    # The next step's code (the app a little ahead) is accepted, once.
    ahead = clock.code(secret, 1)
    assert second_step(client, first_step(client, user), ahead).status_code == 200
    support.assert_problem(
        second_step(client, first_step(client, user), ahead), 401, "invalid_two_factor_code"
    )
    # Once a newer code was used, the current step's (older) code is refused as well.
    clock.advance()  # now the step `ahead` belonged to: the previous step is still in drift
    support.assert_problem(
        second_step(client, first_step(client, user), clock.code(secret, -1)),
        401,
        "invalid_two_factor_code",
    )
    assert second_step(client, first_step(client, user), clock.code(secret, 1)).status_code == 200


def test_a_recovery_code_works_once(client: TestClient, session: Session, clock: Clock) -> None:
    user = factories.make_user(session, full_name="Ada")
    _, codes = enable(client, clock, user)
    # Typed without hyphens and in lower case, with O for 0 and l for 1: still the code.
    typed = codes[0].replace("-", "").lower().replace("0", "O").replace("1", "l")
    response = second_step(client, first_step(client, user), typed)
    assert response.status_code == 200, response.text
    assert works(client, response.json())
    assert len(recovery_rows(session, user)) == 9
    assert (
        client.get("/users/me/2fa", headers=support.auth(user)).json()["recovery_codes_left"] == 9
    )
    [notice] = [m for m in support.mail_to(user.email) if "recovery code" in m["Subject"]]
    assert "9 recovery codes are left" in support.text_of(notice)

    again = second_step(client, first_step(client, user), codes[0])
    support.assert_problem(again, 401, "invalid_two_factor_code")
    # Another one works.
    assert second_step(client, first_step(client, user), codes[1]).status_code == 200


def test_the_mfa_token_is_spent_by_the_login_it_finishes(
    client: TestClient, session: Session, clock: Clock
) -> None:
    user = factories.make_user(session)
    secret, codes = enable(client, clock, user)
    earlier = first_step(client, user)
    mfa_token = first_step(client, user)
    assert second_step(client, mfa_token, clock.code(secret)).status_code == 200
    # Neither the token used nor one issued before it finishes another login, whatever the
    # second factor.
    for spent in (mfa_token, earlier):
        for code in (clock.code(secret, 1), codes[0]):
            support.assert_problem(second_step(client, spent, code), 401, "invalid_mfa_token")
    assert len(recovery_rows(session, user)) == 10  # the refused attempts used no code
    # A token issued afterwards does.
    assert second_step(client, first_step(client, user), codes[0]).status_code == 200


def test_the_mfa_token_is_no_access_token_and_expires(
    client: TestClient, session: Session, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    user = factories.make_user(session)
    secret, _ = enable(client, clock, user)
    mfa_token = first_step(client, user)
    # Not a bearer token for anything.
    bearer = {"Authorization": f"Bearer {mfa_token}"}
    support.assert_problem(client.get("/users/me", headers=bearer), 401, "invalid_token")
    support.assert_problem(client.get("/trips", headers=bearer), 401, "invalid_token")
    # Nor is an access token an mfa_token.
    access = support.auth(user)["Authorization"].removeprefix("Bearer ")
    support.assert_problem(
        second_step(client, access, clock.code(secret)), 401, "invalid_mfa_token"
    )
    # An altered token (another user named in it) is refused: it is signed.
    header, payload, signature = mfa_token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["sub"] = str(uuid.uuid4())
    forged_payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    forged = f"{header}.{forged_payload}.{signature}"
    support.assert_problem(
        second_step(client, forged, clock.code(secret)), 401, "invalid_mfa_token"
    )

    # Issued MFA_TOKEN_TTL_SECONDS and a second ago: expired.
    ttl = get_settings().MFA_TOKEN_TTL_SECONDS
    past = utcnow() - timedelta(seconds=ttl + 1)
    with monkeypatch.context() as patched:
        patched.setattr("app.core.security.utcnow", lambda: past)
        expired = first_step(client, user)
    assert jwt.decode(expired, options={"verify_signature": False})["exp"] < time.time()
    support.assert_problem(
        second_step(client, expired, clock.code(secret)), 401, "invalid_mfa_token"
    )
    # The code was not used by the refused attempts.
    assert second_step(client, mfa_token, clock.code(secret)).status_code == 200


def test_a_password_change_voids_the_mfa_tokens_issued_before(
    client: TestClient, session: Session, clock: Clock
) -> None:
    user = factories.make_user(session)
    secret, _ = enable(client, clock, user)
    mfa_token = first_step(client, user)
    changed = client.put(
        "/users/me/password",
        headers=support.auth(user),
        json={"current_password": support.PASSWORD, "new_password": "another horse battery"},
    )
    assert changed.status_code == 204, changed.text
    support.assert_problem(
        second_step(client, mfa_token, clock.code(secret)), 401, "invalid_mfa_token"
    )


@pytest.fixture
def strict_limits(environment: Callable[..., None]) -> None:
    environment(
        TWO_FACTOR_ATTEMPTS_PER_ACCOUNT="3",
        TWO_FACTOR_ATTEMPTS_PER_ACCOUNT_DAILY="1000",
        RATE_LIMIT_WINDOW_SECONDS="600",
    )


def test_second_step_attempts_are_rate_limited_per_account(
    strict_limits: None, client: TestClient, session: Session, clock: Clock
) -> None:
    user = factories.make_user(session)
    started = start(client, user)  # counts: it checks the password
    secret = started.json()["secret"]
    assert confirm(client, user, clock.code(secret)).status_code == 200  # counts
    clock.advance()
    mfa_token = first_step(client, user)
    support.assert_problem(second_step(client, mfa_token, "123456"), 401)  # the third
    # Beyond the limit even the right code is refused, from any address.
    elsewhere = TestClient(app, client=("10.9.8.7", 5000), raise_server_exceptions=False)
    refused = second_step(elsewhere, mfa_token, clock.code(secret))
    body = support.assert_problem(refused, 429, "rate_limited")
    assert "second-factor attempts for this account" in body["detail"]
    assert 1 <= int(refused.headers["retry-after"]) <= 600
    # The code was not used: the refusal ran nothing.
    stored = enrolment_of(session, user)
    assert stored is not None
    assert stored.last_login_at is None
    # Other accounts are not affected.
    other = factories.make_user(session)
    other_secret, _ = enable(client, clock, other)
    assert second_step(client, first_step(client, other), clock.code(other_secret)).status_code == (
        200
    )
    # Nor is turning it off by code for this account any easier.
    support.assert_problem(disable(client, user, clock.code(secret)), 429, "rate_limited")


@pytest.fixture
def daily_limit(environment: Callable[..., None]) -> None:
    environment(TWO_FACTOR_ATTEMPTS_PER_ACCOUNT="1000", TWO_FACTOR_ATTEMPTS_PER_ACCOUNT_DAILY="3")


def test_there_is_a_daily_limit_too(
    daily_limit: None, client: TestClient, session: Session, clock: Clock
) -> None:
    user = factories.make_user(session)
    secret, _ = enable(client, clock, user)  # two attempts
    mfa_token = first_step(client, user)
    support.assert_problem(second_step(client, mfa_token, "123456"), 401)
    refused = second_step(client, mfa_token, clock.code(secret))
    assert "today" in support.assert_problem(refused, 429, "rate_limited")["detail"]
    assert int(refused.headers["retry-after"]) <= 24 * 60 * 60


def test_turning_it_off_takes_the_password_and_a_code(
    client: TestClient, session: Session, clock: Clock
) -> None:
    user = factories.make_user(session, full_name="Ada")
    secret, _ = enable(client, clock, user)
    other_device_token = second_step(client, first_step(client, user), clock.code(secret)).json()
    clock.advance()

    missing = client.request(
        "DELETE", "/users/me/2fa", headers=support.auth(user), json={"password": support.PASSWORD}
    )
    support.assert_problem(missing, 422, "validation_error")
    support.assert_problem(
        disable(client, user, clock.code(secret), password="wrong password"), 403, "wrong_password"
    )
    support.assert_problem(disable(client, user, "000000"), 403, "invalid_two_factor_code")
    support.assert_problem(
        disable(client, user, "ABCD-EFGH-JKMN-PQRS"), 403, "invalid_two_factor_code"
    )
    assert enrolment_of(session, user) is not None
    assert works(client, other_device_token)

    turned_off = disable(client, user, clock.code(secret))
    assert turned_off.status_code == 204, turned_off.text
    assert enrolment_of(session, user) is None
    assert recovery_rows(session, user) == []
    assert not works(client, other_device_token)  # other sessions end
    assert client.get("/users/me", headers=support.auth(user)).status_code == 200  # not this one
    [notice] = [m for m in support.mail_to(user.email) if "is off" in m["Subject"]]
    assert "signed out" in support.text_of(notice)
    # The password alone logs in again; turning it off again is a conflict.
    assert works(client, log_in(client, user))
    support.assert_problem(
        disable(client, user, clock.code(secret, 1)), 409, "two_factor_not_enabled"
    )


def test_a_recovery_code_turns_it_off(client: TestClient, session: Session, clock: Clock) -> None:
    user = factories.make_user(session)
    _, codes = enable(client, clock, user)
    assert disable(client, user, codes[3]).status_code == 204
    assert enrolment_of(session, user) is None


def test_enrolment_rules(client: TestClient, session: Session, clock: Clock) -> None:
    user = factories.make_user(session)
    support.assert_problem(start(client, user, password="not the password"), 403, "wrong_password")
    assert enrolment_of(session, user) is None
    support.assert_problem(confirm(client, user, "123456"), 409, "two_factor_not_pending")

    # Starting again replaces the pending secret: the first one's codes no longer confirm.
    first = start(client, user).json()["secret"]
    second = start(client, user).json()["secret"]
    assert first != second
    support.assert_problem(confirm(client, user, clock.code(first)), 403, "invalid_two_factor_code")
    # Only a code of the app confirms, not something shaped like a recovery code.
    support.assert_problem(
        confirm(client, user, "ABCD-EFGH-JKMN-PQRS"), 403, "invalid_two_factor_code"
    )
    assert confirm(client, user, clock.code(second)).status_code == 200

    # Once on: no new enrolment, no second confirmation.
    support.assert_problem(start(client, user), 409, "two_factor_enabled")
    support.assert_problem(confirm(client, user, clock.code(second, 1)), 409, "two_factor_enabled")


def test_the_secret_and_the_codes_are_never_kept_for_an_idempotency_key(
    client: TestClient, session: Session, clock: Clock
) -> None:
    user = factories.make_user(session)
    headers = {**support.auth(user), "Idempotency-Key": "enrol-once"}
    first = client.post("/users/me/2fa", headers=headers, json={"password": support.PASSWORD})
    again = client.post("/users/me/2fa", headers=headers, json={"password": support.PASSWORD})
    assert first.status_code == again.status_code == 200
    assert "idempotent-replayed" not in again.headers
    assert first.json()["secret"] != again.json()["secret"]  # it ran again: nothing stored
    confirmed = client.post(
        "/users/me/2fa/confirm",
        headers={**support.auth(user), "Idempotency-Key": "confirm-once"},
        json={"code": clock.code(again.json()["secret"])},
    )
    assert confirmed.status_code == 200
    stored = session.exec(
        select(IdempotencyKey).where(
            IdempotencyKey.key.in_(["enrol-once", "confirm-once"])  # type: ignore[attr-defined]
        )
    ).all()
    assert stored == []


@pytest.fixture
def encryption_keys(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], None]]:
    """Set TWO_FACTOR_ENCRYPTION_KEYS mid-test: only the settings and the keys are read again
    (the engine, and so the test's transaction, stay)."""

    def use(keys: str) -> None:
        monkeypatch.setenv("TWO_FACTOR_ENCRYPTION_KEYS", keys)
        get_settings.cache_clear()
        security._secret_box.cache_clear()

    yield use
    monkeypatch.delenv("TWO_FACTOR_ENCRYPTION_KEYS")
    get_settings.cache_clear()
    security._secret_box.cache_clear()


def test_secrets_move_to_a_new_key_and_survive_a_lost_one(
    encryption_keys: Callable[[str], None], client: TestClient, session: Session, clock: Clock
) -> None:
    old_key, new_key = "o" * 40, "n" * 40
    environment = encryption_keys
    environment(old_key)
    user = factories.make_user(session)
    secret, codes = enable(client, clock, user)
    stored = enrolment_of(session, user)
    assert stored is not None
    encrypted_with_old = stored.secret_encrypted

    # A new key first, the old one behind it: the secret still works, and moves to the new key.
    environment(f"{new_key},{old_key}")
    assert second_step(client, first_step(client, user), clock.code(secret)).status_code == 200
    stored = enrolment_of(session, user)
    assert stored is not None
    assert stored.secret_encrypted != encrypted_with_old
    environment(new_key)
    assert security.decrypt_secret(stored.secret_encrypted) == secret
    assert security.decrypt_secret(encrypted_with_old) is None
    clock.advance()
    assert second_step(client, first_step(client, user), clock.code(secret)).status_code == 200

    # The key lost altogether: codes of the app fail (logged), recovery codes still work.
    environment("x" * 40)
    clock.advance()
    support.assert_problem(
        second_step(client, first_step(client, user), clock.code(secret)),
        401,
        "invalid_two_factor_code",
    )
    assert second_step(client, first_step(client, user), codes[0]).status_code == 200


def test_account_deletion_removes_the_second_factor(
    client: TestClient, session: Session, clock: Clock
) -> None:
    user = factories.make_user(session)
    enable(client, clock, user)
    assert recovery_rows(session, user) != []
    deleted = client.request(
        "DELETE", "/users/me", headers=support.auth(user), json={"password": support.PASSWORD}
    )
    assert deleted.status_code == 204, deleted.text
    assert enrolment_of(session, user) is None
    assert recovery_rows(session, user) == []


def test_the_export_says_whether_it_is_on_and_holds_no_secret(
    client: TestClient, session: Session, clock: Clock
) -> None:
    user = factories.make_user(session)

    def exported() -> tuple[str, dict[str, Any]]:
        response = client.get("/users/me/export", headers=support.auth(user))
        assert response.status_code == 200, response.text
        return response.text, response.json()["account"]

    assert exported()[1]["two_factor_enabled_at"] is None
    secret = start(client, user).json()["secret"]
    assert exported()[1]["two_factor_enabled_at"] is None  # pending is not on
    codes = confirm(client, user, clock.code(secret)).json()["recovery_codes"]
    text, account = exported()
    stored = enrolment_of(session, user)
    assert stored is not None
    assert stored.enabled_at is not None
    assert datetime.fromisoformat(account["two_factor_enabled_at"]) == stored.enabled_at
    assert secret not in text
    assert urllib.parse.quote(secret) not in text
    assert not any(code in text or code.replace("-", "") in text for code in codes)


# --- Racing second steps, on committed data -------------------------------------------------


@pytest.fixture
def committed_user(engine: Engine) -> Iterator[User]:
    with Session(engine, expire_on_commit=False) as session:
        user = factories.make_user(session)
    yield user
    with engine.begin() as connection:
        connection.execute(
            text("DELETE FROM outbox_messages WHERE recipient = :e"), {"e": user.email}
        )
        connection.execute(text("DELETE FROM users WHERE id = :u"), {"u": user.id})


def _race(*calls: Callable[[], Any]) -> list[Any]:
    """Run the calls at once, each on its own thread; their answers, in order."""
    start = threading.Barrier(len(calls))
    answers: list[Any] = [None] * len(calls)

    def run(index: int) -> None:
        start.wait()
        answers[index] = calls[index]()

    threads = [threading.Thread(target=run, args=(index,)) for index in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return answers


def test_racing_second_steps_finish_one_login(
    committed_user: User, engine: Engine, clock: Clock
) -> None:
    """The account's row is locked by each second step: of two with one token, the second
    finds it spent; of two with one code, the second finds it used."""
    user = committed_user
    client = TestClient(create_app(), raise_server_exceptions=False)
    secret, codes = enable(client, clock, user)
    for round_ in range(3):
        # One token, the app's code and a recovery code at once: one login.
        mfa_token = first_step(client, user)
        code, recovery = clock.code(secret), codes[round_]
        answers = _race(
            lambda: second_step(client, mfa_token, code),  # noqa: B023 (joined in _race)
            lambda: second_step(client, mfa_token, recovery),  # noqa: B023
        )
        assert sorted(a.status_code for a in answers) == [200, 401]
        [refused] = [a for a in answers if a.status_code == 401]
        assert refused.json()["code"] == "invalid_mfa_token"
        clock.advance()

        # Two tokens, one code at once: one login (the other token, older than that login,
        # is spent by it, before its code is even looked at).
        code = clock.code(secret)
        tokens = first_step(client, user), first_step(client, user)
        answers = _race(*(lambda t=t, c=code: second_step(client, t, c) for t in tokens))
        assert sorted(a.status_code for a in answers) == [200, 401]
        [refused] = [a for a in answers if a.status_code == 401]
        assert refused.json()["code"] == "invalid_mfa_token"
        clock.advance()
    with Session(engine) as session:
        assert len(sessions_of(session, user)) == 1 + 2 * 3  # the test's own, and the winners
        # Each round used one recovery code, or none (when the app's code won).
        assert 10 - 3 <= len(recovery_rows(session, user)) <= 10

    # Turning it off while a login finishes: one after the other, in either order.
    mfa_token = first_step(client, user)
    turned_off, logged_in = _race(
        lambda: disable(client, user, clock.code(secret)),
        lambda: second_step(client, mfa_token, codes[9]),
    )
    assert turned_off.status_code == 204, turned_off.text
    assert logged_in.status_code in (200, 401), logged_in.text
    with Session(engine) as session:
        assert enrolment_of(session, user) is None
        assert recovery_rows(session, user) == []
