"""Registration, login, tokens and the caller's own profile."""

import uuid
from datetime import timedelta

import jwt
import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session, select

from app.core import security
from app.core.columns import utcnow
from app.core.config import get_settings
from app.core.security import ALGORITHM, create_access_token
from app.users import service
from app.users.models import RegistrationAccepted, User, UserCreate
from tests import factories, support


def register(client: TestClient, email: str, password: str = "password123"):  # type: ignore[no-untyped-def]
    return client.post(
        "/auth/register", json={"email": email, "password": password, "full_name": "Ada"}
    )


def login(client: TestClient, email: str, password: str):  # type: ignore[no-untyped-def]
    return client.post("/auth/login", data={"username": email, "password": password})


def test_register_then_log_in_then_read_me(client: TestClient, session: Session) -> None:
    response = register(client, "Ada@Example.com")
    assert response.status_code == 202, response.text
    assert response.json() == {
        "email": "ada@example.com",
        "message": RegistrationAccepted(email="").message,
    }

    stored = session.exec(select(User).where(User.email == "ada@example.com")).one()
    assert stored.password_hash.startswith("$argon2id$")

    token = login(client, "ADA@example.com", "password123")
    assert token.status_code == 200, token.text
    assert token.json()["token_type"] == "bearer"
    headers = {"Authorization": f"Bearer {token.json()['access_token']}"}
    me = client.get("/users/me", headers=headers)
    assert me.status_code == 200
    assert me.json()["id"] == str(stored.id)
    # No hash, no internals.
    assert set(me.json()) == {"id", "email", "full_name", "email_verified", "created_at"}


def test_registering_a_taken_address_answers_the_same_and_tells_its_owner(
    client: TestClient, session: Session
) -> None:
    owner = factories.make_user(session, full_name="Owner")
    new = register(client, f"new-{uuid.uuid4().hex}@example.com")
    taken = register(client, owner.email.upper(), password="another-password")
    assert new.status_code == taken.status_code == 202, taken.text
    assert set(new.json()) == set(taken.json()) == {"email", "message"}
    assert new.json()["message"] == taken.json()["message"]
    assert taken.json()["email"] == owner.email

    # Nothing changed: the old password still works, the new one does not.
    assert login(client, owner.email, support.PASSWORD).status_code == 200
    support.assert_problem(login(client, owner.email, "another-password"), 401)
    [notice] = support.mail_to(owner.email)
    assert notice["Subject"] == "Someone tried to register with your address on TripSync"
    assert "already has one" in support.text_of(notice)
    assert "token: " not in support.text_of(notice)

    # Repeated attempts do not flood the owner: one notice per interval.
    assert register(client, owner.email).status_code == 202
    assert len(support.mail_to(owner.email)) == 1


def test_registering_spends_a_password_hash_either_way(
    client: TestClient, session: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    owner = factories.make_user(session)
    hashed: list[str] = []

    def counting_hash(password: str) -> str:
        hashed.append(password)
        return security.hash_password(password)

    monkeypatch.setattr(service, "hash_password", counting_hash)
    register(client, owner.email, password="guess-one-1")
    register(client, f"fresh-{uuid.uuid4().hex}@example.com", password="guess-two-2")
    assert hashed == ["guess-one-1", "guess-two-2"]


def test_a_registration_that_loses_a_race_is_a_notice(
    session: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    owner = factories.make_user(session)
    real_lookup = service.get_user_by_email
    lookups: list[str] = []

    def first_lookup_misses(*, session: Session, email: str) -> User | None:
        lookups.append(email)
        found = real_lookup(session=session, email=email)
        # The first read misses, as if the other registration committed just after it.
        return None if len(lookups) == 1 else found

    monkeypatch.setattr(service, "get_user_by_email", first_lookup_misses)
    data = UserCreate(email=owner.email, full_name="Racer", password="password123")
    service.register_user(session=session, data=data)
    session.commit()  # the losing account is not left in the session to fail here
    assert session.exec(select(User).where(User.email == owner.email)).one().id == owner.id
    [notice] = support.mail_to(owner.email)
    assert "already has one" in support.text_of(notice)


@pytest.mark.parametrize(
    "body",
    [
        {"email": "not-an-email", "password": "password123", "full_name": "A"},
        {"email": "a@example.com", "password": "short", "full_name": "A"},
        {"email": "a@example.com", "password": "password123", "full_name": ""},
        {"email": "a@example.com", "password": "password123", "full_name": "A\x00"},
        {"email": "a@example.com", "password": "password123", "full_name": "A", "is_active": 0},
        {"email": "a@example.com", "password": "password123", "full_name": "x" * 201},
    ],
)
def test_invalid_registrations_are_422_and_store_nothing(
    client: TestClient, session: Session, body: dict[str, object]
) -> None:
    problem = support.assert_problem(
        client.post("/auth/register", json=body), 422, "validation_error"
    )
    assert problem["errors"]
    assert {"loc", "msg", "type"} <= problem["errors"][0].keys()
    assert session.exec(select(User).where(User.email == "a@example.com")).first() is None


def test_wrong_password_and_unknown_email_look_the_same(
    client: TestClient, session: Session
) -> None:
    user = factories.make_user(session)
    wrong = support.assert_problem(
        login(client, user.email, "nope-nope"), 401, "invalid_credentials"
    )
    unknown = support.assert_problem(
        login(client, "nobody@example.com", support.PASSWORD), 401, "invalid_credentials"
    )
    assert wrong["detail"] == unknown["detail"]
    # Form fields are not validated like JSON: values no account can have are unknown accounts.
    for odd in ("a\x00b@example.com", "x" * 10_000):
        support.assert_problem(login(client, odd, support.PASSWORD), 401, "invalid_credentials")
    assert login(client, user.email, support.PASSWORD).status_code == 200


def _token(claims: dict[str, object], key: str | None = None) -> dict[str, str]:
    secret = key or get_settings().SECRET_KEY.get_secret_value()
    return {"Authorization": f"Bearer {jwt.encode(claims, secret, algorithm=ALGORITHM)}"}


def test_bad_tokens_are_refused(client: TestClient, session: Session) -> None:
    user, other = factories.make_user(session), factories.make_user(session)
    now = utcnow()
    valid_claims = {
        "sub": str(user.id),
        "sid": str(support.session_of(user)),
        "iat": now,
        "exp": now + timedelta(minutes=5),
    }
    assert client.get("/users/me", headers=_token(valid_claims)).status_code == 200

    cases = {
        "expired": _token({**valid_claims, "exp": now - timedelta(seconds=1)}),
        "wrong key": _token(valid_claims, key="another-key-another-key-another-key"),
        "malformed": {"Authorization": "Bearer not.a.jwt"},
        "unknown user": _token({**valid_claims, "sub": str(uuid.uuid4())}),
        "no session": _token({k: v for k, v in valid_claims.items() if k != "sid"}),
        "unknown session": _token({**valid_claims, "sid": str(uuid.uuid4())}),
        "another user's session": _token({**valid_claims, "sid": str(support.session_of(other))}),
        "session not a uuid": _token({**valid_claims, "sid": 7}),
        "before sessions": _token({**valid_claims, "sid": None, "ver": 0}),
        "not a uuid": _token({**valid_claims, "sub": "admin"}),
    }
    for name, headers in cases.items():
        response = client.get("/users/me", headers=headers)
        support.assert_problem(response, 401)
        assert response.headers["www-authenticate"] == "Bearer", name
    support.assert_problem(client.get("/users/me"), 401, "not_authenticated")


def test_a_deactivated_user_is_refused(client: TestClient, session: Session) -> None:
    user = factories.make_user(session)
    headers = support.auth(user)
    user.is_active = False
    session.add(user)
    session.commit()
    support.assert_problem(client.get("/users/me", headers=headers), 401, "invalid_token")
    support.assert_problem(login(client, user.email, support.PASSWORD), 401, "invalid_credentials")


def test_update_profile_and_refuse_taken_email(client: TestClient, session: Session) -> None:
    user, other = factories.make_user(session), factories.make_user(session)
    response = client.patch(
        "/users/me", headers=support.auth(user), json={"full_name": "  Grace  "}
    )
    assert response.status_code == 200
    assert response.json()["full_name"] == "Grace"
    support.assert_problem(
        client.patch("/users/me", headers=support.auth(user), json={"email": other.email}),
        409,
        "email_taken",
    )
    # Fields a user may not set are rejected, not silently applied.
    support.assert_problem(
        client.patch("/users/me", headers=support.auth(user), json={"token_version": 9}),
        422,
        "validation_error",
    )


def test_a_password_change_is_mailed_to_the_owner(client: TestClient, session: Session) -> None:
    user = factories.make_user(session)
    changed = client.put(
        "/users/me/password",
        headers=support.auth(user),
        json={"current_password": support.PASSWORD, "new_password": "new-password-1"},
    )
    assert changed.status_code == 204, changed.text
    [notice] = support.mail_to(user.email)
    assert notice["Subject"] == "Your TripSync password was changed"
    text = support.text_of(notice)
    assert "from one of your signed-in devices" in text
    assert "reset link" in text  # what to do if it was not them
    html = notice.get_body(("html",))
    assert html is not None
    assert "signed-in devices" in str(html.get_content())  # type: ignore[attr-defined]


def test_a_wrong_current_password_changes_nothing(client: TestClient, session: Session) -> None:
    user = factories.make_user(session)
    old = support.auth(user)
    support.assert_problem(
        client.put(
            "/users/me/password",
            headers=old,
            json={"current_password": "wrong-password", "new_password": "new-password-1"},
        ),
        400,
        "wrong_current_password",
    )
    assert client.get("/users/me", headers=old).status_code == 200
    assert login(client, user.email, support.PASSWORD).status_code == 200


def test_token_lifetime_comes_from_settings(session: Session) -> None:
    user = factories.make_user(session)
    claims = jwt.decode(
        create_access_token(user.id, support.session_of(user)),
        get_settings().SECRET_KEY.get_secret_value(),
        algorithms=[ALGORITHM],
    )
    assert claims["exp"] - claims["iat"] == get_settings().ACCESS_TOKEN_EXPIRE_MINUTES * 60


def test_an_address_is_verified_with_the_token_mailed_to_it(client: TestClient) -> None:
    register(client, "verify-me@example.com")
    [mail] = support.mail_to("verify-me@example.com")
    token = support.mailed_token("verify-me@example.com")
    link = f"{get_settings().PUBLIC_URL}#/verify-email/{token}"
    assert link in support.text_of(mail)
    html = mail.get_body(("html",))
    assert html is not None
    assert f'href="{link}"' in html.get_content()  # type: ignore[attr-defined]

    support.assert_problem(
        client.post("/auth/verify-email", json={"token": token + "x"}), 400, "invalid_token"
    )
    verified = client.post("/auth/verify-email", json={"token": token})
    assert verified.json()["email_verified"] is True
    # An access token is not a verification token, and the other way round.
    access = login(client, "verify-me@example.com", "password123").json()["access_token"]
    support.assert_problem(
        client.post("/auth/verify-email", json={"token": access}), 400, "invalid_token"
    )
    support.assert_problem(
        client.get("/users/me", headers={"Authorization": f"Bearer {token}"}), 401
    )


def test_changing_the_address_needs_a_new_verification(
    client: TestClient, session: Session
) -> None:
    user = factories.make_user(session)
    changed = client.patch(
        "/users/me", headers=support.auth(user), json={"email": "new@example.com"}
    )
    assert changed.json()["email_verified"] is False
    assert len(support.mail_to("new@example.com")) == 1
    resent = client.post("/users/me/verification-email", headers=support.auth(user))
    assert resent.status_code == 202
    assert len(support.mail_to("new@example.com")) == 2
    token = support.mailed_token("new@example.com")
    assert client.post("/auth/verify-email", json={"token": token}).json()["email_verified"]


def test_password_hashing_runs_a_bounded_number_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    import threading
    import time

    running, most = 0, 0
    guard = threading.Lock()

    class SlowHasher:
        def hash(self, password: str) -> str:
            nonlocal running, most
            with guard:
                running += 1
                most = max(most, running)
            time.sleep(0.05)
            with guard:
                running -= 1
            return "hashed"

    monkeypatch.setattr(security, "_password_hasher", lambda: SlowHasher())
    threads = [threading.Thread(target=security.hash_password, args=("pw",)) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert most == get_settings().PASSWORD_HASH_CONCURRENCY
