"""Password reset: the request answers the same for every address, the mailed token works
once, expires, is stored hashed and is superseded by a newer one, and a reset ends every
session of the account."""

import hashlib
import json
import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import anyio
import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session, col, select, update

from app import cli
from app.core import admission
from app.core.columns import utcnow
from app.core.config import get_settings
from app.users.models import PasswordResetToken, User
from tests import factories, support

NEW_PASSWORD = "a brand new passphrase"
RESET_LINK = "#/reset-password/"


def _ask(client: TestClient, email: str) -> Any:
    return client.post("/auth/password-reset", json={"email": email})


def _confirm(client: TestClient, token: str, password: str = NEW_PASSWORD) -> Any:
    return client.post(
        "/auth/password-reset/confirm", json={"token": token, "new_password": password}
    )


def _log_in(client: TestClient, email: str, password: str) -> Any:
    return client.post("/auth/login", data={"username": email, "password": password})


def _reset_mails(address: str) -> list[str]:
    """The text of every reset mail delivered to `address`, oldest first."""
    return [
        support.text_of(message)
        for message in support.mail_to(address)
        if message["Subject"] == "Reset your TripSync password"
    ]


def _mailed_token(address: str) -> str:
    """The token of the link in the newest reset mail to `address`."""
    text = _reset_mails(address)[-1]
    link = next(line for line in text.splitlines() if RESET_LINK in line)
    return link.split(RESET_LINK, 1)[1]


def _asked_token(client: TestClient, user: User) -> str:
    response = _ask(client, user.email)
    assert response.status_code == 202, response.text
    return _mailed_token(user.email)


def _tokens_of(session: Session, user: User) -> list[PasswordResetToken]:
    session.expire_all()
    statement = select(PasswordResetToken).where(PasswordResetToken.user_id == user.id)
    return list(session.exec(statement.order_by(col(PasswordResetToken.created_at))).all())


def test_the_mailed_link_sets_a_new_password(client: TestClient, session: Session) -> None:
    user = factories.make_user(session, full_name="Rosa")
    response = _ask(client, user.email.upper())
    assert response.status_code == 202, response.text
    assert response.json()["email"] == user.email

    [text] = _reset_mails(user.email)
    token = _mailed_token(user.email)
    assert f"{get_settings().PUBLIC_URL}{RESET_LINK}{token}" in text
    assert f"token: {token}" in text
    assert "30 minutes" in text
    [mail] = [m for m in support.mail_to(user.email) if m["Subject"].startswith("Reset")]
    html = mail.get_body(("html",))
    assert html is not None
    assert f'href="{get_settings().PUBLIC_URL}{RESET_LINK}{token}"' in html.get_content()  # type: ignore[attr-defined]

    confirmed = _confirm(client, token)
    assert confirmed.status_code == 204, confirmed.text
    assert _log_in(client, user.email, NEW_PASSWORD).status_code == 200
    support.assert_problem(_log_in(client, user.email, support.PASSWORD), 401)
    # The owner is told, by mail, that the password changed; the notice carries no token.
    [notice] = [
        m
        for m in support.mail_to(user.email)
        if m["Subject"] == "Your TripSync password was changed"
    ]
    assert "signed out" in support.text_of(notice)
    assert token not in support.text_of(notice)


def test_the_token_is_stored_hashed(client: TestClient, session: Session) -> None:
    user = factories.make_user(session)
    token = _asked_token(client, user)
    [row] = _tokens_of(session, user)
    assert row.token_hash == hashlib.sha256(token.encode()).hexdigest()
    stored = json.dumps(row.model_dump(mode="json"))
    assert token not in stored
    assert len(token) == 43  # 32 random bytes, URL-safe base64
    assert row.used_at is None
    assert row.expires_at - row.created_at == timedelta(minutes=30)


def test_the_token_works_once(client: TestClient, session: Session) -> None:
    user = factories.make_user(session)
    token = _asked_token(client, user)
    assert _confirm(client, token).status_code == 204
    again = _confirm(client, token, password="yet another passphrase")
    support.assert_problem(again, 400, "invalid_reset_token")
    # The second use changed nothing: the password is the one the first use set.
    assert _log_in(client, user.email, NEW_PASSWORD).status_code == 200
    support.assert_problem(_log_in(client, user.email, "yet another passphrase"), 401)
    [row] = _tokens_of(session, user)
    assert row.used_at is not None


def test_an_expired_token_is_refused(client: TestClient, session: Session) -> None:
    user = factories.make_user(session)
    token = _asked_token(client, user)
    # As if it had been asked for 31 minutes ago.
    past = utcnow() - timedelta(minutes=31)
    session.execute(
        update(PasswordResetToken)
        .where(col(PasswordResetToken.user_id) == user.id)
        .values(created_at=past, expires_at=past + timedelta(minutes=30))
    )
    session.commit()
    support.assert_problem(_confirm(client, token), 400, "invalid_reset_token")
    assert _log_in(client, user.email, support.PASSWORD).status_code == 200


@pytest.fixture
def seven_minute_links(environment: Callable[..., None]) -> None:
    environment(PASSWORD_RESET_TTL_MINUTES="7")


@pytest.fixture
def a_longer_floor(environment: Callable[..., None]) -> None:
    environment(PASSWORD_RESET_MIN_RESPONSE_MS="300")


def test_the_expiry_comes_from_the_setting(
    seven_minute_links: None, client: TestClient, session: Session
) -> None:
    user = factories.make_user(session)
    _asked_token(client, user)
    [row] = _tokens_of(session, user)
    assert row.expires_at - row.created_at == timedelta(minutes=7)
    assert "7 minutes" in _reset_mails(user.email)[-1]


def test_a_newer_request_supersedes_the_older_token(client: TestClient, session: Session) -> None:
    user = factories.make_user(session)
    first = _asked_token(client, user)
    second = _asked_token(client, user)
    assert first != second
    assert len(_tokens_of(session, user)) == 1
    support.assert_problem(_confirm(client, first), 400, "invalid_reset_token")
    assert _confirm(client, second).status_code == 204


def test_every_token_that_does_not_work_gets_the_same_answer(
    client: TestClient, session: Session
) -> None:
    user = factories.make_user(session)
    superseded = _asked_token(client, user)
    used = _asked_token(client, user)
    assert _confirm(client, used).status_code == 204
    expired = _asked_token(client, user)
    unused = col(PasswordResetToken.used_at).is_(None)
    session.execute(
        update(PasswordResetToken)
        .where(unused, col(PasswordResetToken.user_id) == user.id)
        .values(
            created_at=utcnow() - timedelta(hours=1), expires_at=utcnow() - timedelta(seconds=1)
        )
    )
    session.commit()
    unknown = "A" * 43
    answers = [_confirm(client, token) for token in (superseded, used, expired, unknown, "x")]
    bodies = [support.assert_problem(a, 400, "invalid_reset_token") for a in answers]
    assert all(body == bodies[0] for body in bodies)


def test_a_reset_ends_every_session(client: TestClient, session: Session) -> None:
    user = factories.make_user(session)
    test_session = support.auth(user)  # made now: a later call would start it again
    phone = _log_in(client, user.email, support.PASSWORD).json()
    laptop = _log_in(client, user.email, support.PASSWORD).json()
    for tokens in (phone, laptop):
        bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
        assert client.get("/users/me", headers=bearer).status_code == 200

    assert _confirm(client, _asked_token(client, user)).status_code == 204

    for tokens in (phone, laptop):
        bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
        support.assert_problem(client.get("/users/me", headers=bearer), 401, "invalid_token")
        refreshed = client.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
        support.assert_problem(refreshed, 401, "invalid_refresh_token")
    # The tests' own session of the user is gone too.
    support.assert_problem(client.get("/users/me", headers=test_session), 401, "invalid_token")


def _same_length_addresses() -> tuple[str, str]:
    known, unknown = (f"{uuid.uuid4().hex[:16]}@example.com" for _ in range(2))
    return known, unknown


def test_the_request_answers_the_same_for_an_unknown_address(
    client: TestClient, session: Session
) -> None:
    known, unknown = _same_length_addresses()
    user = factories.make_user(session, email=known)
    for_known, for_unknown = _ask(client, known), _ask(client, unknown)

    assert for_known.status_code == for_unknown.status_code == 202
    # Every header alike but the request id, which is each request's own.
    for_known.headers.pop("x-request-id")
    for_unknown.headers.pop("x-request-id")
    assert dict(for_known.headers) == dict(for_unknown.headers)
    assert for_known.json() == {**for_unknown.json(), "email": known}
    assert for_unknown.json()["email"] == unknown
    # Only the account's owner was mailed, and only the account has a token.
    assert len(_reset_mails(known)) == 1
    assert support.mail_to(unknown) == []
    assert len(_tokens_of(session, user)) == 1
    assert session.exec(select(PasswordResetToken)).all() == _tokens_of(session, user)


def test_the_answer_waits_for_the_floor_holding_no_database_slot(
    a_longer_floor: None, client: TestClient, session: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    known, unknown = _same_length_addresses()
    factories.make_user(session, email=known)
    real_sleep = anyio.sleep
    free_slots: list[int] = []

    async def recording_sleep(seconds: float) -> None:
        free_slots.append(admission.get_admission().semaphore().value)
        await real_sleep(seconds)

    monkeypatch.setattr(anyio, "sleep", recording_sleep)  # what the floor's wait calls
    for address in (known, unknown):
        started = time.monotonic()
        assert _ask(client, address).status_code == 202
        assert time.monotonic() - started >= 0.3
    # Both waited, after the session closed and gave its database slot back.
    assert free_slots == [get_settings().database_admission_limit] * 2


def test_an_inactive_account_gets_no_mail(client: TestClient, session: Session) -> None:
    user = factories.make_user(session)
    token = _asked_token(client, user)
    user.is_active = False
    session.add(user)
    session.commit()
    support.assert_problem(_confirm(client, token), 400, "invalid_reset_token")
    assert _ask(client, user.email).status_code == 202
    assert len(_reset_mails(user.email)) == 1  # the one from before


def test_an_unverified_account_may_reset_and_is_then_verified(
    client: TestClient, session: Session
) -> None:
    user = factories.make_user(session, verified=False)
    assert _confirm(client, _asked_token(client, user)).status_code == 204
    tokens = _log_in(client, user.email, NEW_PASSWORD).json()
    me = client.get("/users/me", headers={"Authorization": f"Bearer {tokens['access_token']}"})
    assert me.json()["email_verified"] is True


def test_changing_the_address_voids_a_link_mailed_to_the_old_one(
    client: TestClient, session: Session
) -> None:
    user = factories.make_user(session)
    token = _asked_token(client, user)
    changed = client.patch(
        "/users/me",
        headers=support.auth(user),
        json={"email": f"moved-{uuid.uuid4().hex[:8]}@example.com"},
    )
    assert changed.status_code == 200, changed.text
    assert _tokens_of(session, user) == []
    support.assert_problem(_confirm(client, token), 400, "invalid_reset_token")


def test_a_password_the_rules_refuse_is_422_and_keeps_the_token(
    client: TestClient, session: Session
) -> None:
    user = factories.make_user(session)
    token = _asked_token(client, user)
    for password in ("short", "x" * 129):
        refused = _confirm(client, token, password=password)
        support.assert_problem(refused, 422, "validation_error")
    unknown_field = client.post(
        "/auth/password-reset/confirm",
        json={"token": token, "new_password": NEW_PASSWORD, "user_id": str(user.id)},
    )
    support.assert_problem(unknown_field, 422, "validation_error")
    assert _tokens_of(session, user)[0].used_at is None
    assert _confirm(client, token).status_code == 204


@pytest.mark.parametrize("body", [{}, {"email": "not-an-address"}, {"email": "a@b.invalid"}])
def test_a_request_without_a_valid_address_is_422(
    client: TestClient, session: Session, body: dict[str, str]
) -> None:
    support.assert_problem(client.post("/auth/password-reset", json=body), 422, "validation_error")
    assert session.exec(select(PasswordResetToken)).all() == []


def test_deleting_the_account_deletes_its_tokens(client: TestClient, session: Session) -> None:
    user = factories.make_user(session)
    token = _asked_token(client, user)
    deleted = client.request(
        "DELETE", "/users/me", headers=support.auth(user), json={"password": support.PASSWORD}
    )
    assert deleted.status_code == 204, deleted.text
    assert _tokens_of(session, user) == []
    support.assert_problem(_confirm(client, token), 400, "invalid_reset_token")


def test_the_export_lists_resets_without_their_token(client: TestClient, session: Session) -> None:
    user = factories.make_user(session)
    other = factories.make_user(session)
    token = _asked_token(client, user)
    _asked_token(client, other)
    [row] = _tokens_of(session, user)
    exported = client.get("/users/me/export", headers=support.auth(user))
    assert exported.status_code == 200, exported.text
    resets = exported.json()["password_resets"]
    assert [reset["id"] for reset in resets] == [str(row.id)]
    assert set(resets[0]) == {"id", "created_at", "expires_at", "used_at"}
    assert token not in exported.text
    assert row.token_hash not in exported.text


def test_the_cleanup_deletes_expired_tokens(client: TestClient, session: Session) -> None:
    user = factories.make_user(session)
    _asked_token(client, user)
    [row] = _tokens_of(session, user)
    session.execute(
        update(PasswordResetToken)
        .where(col(PasswordResetToken.id) == row.id)
        .values(created_at=utcnow() - timedelta(hours=2), expires_at=utcnow() - timedelta(hours=1))
    )
    session.commit()
    fresh = factories.make_user(session)
    _asked_token(client, fresh)
    assert cli.cleanup(batch_size=1)["password reset tokens past their expiry"] == 1
    assert _tokens_of(session, user) == []
    assert len(_tokens_of(session, fresh)) == 1
