"""Login, registration and password reset requests are rate-limited per account and per
client address (429)."""

import socket
import uuid
from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session

from app.core.config import get_settings
from app.main import app
from app.ratelimit import service as rate_limit
from tests import factories, support


def _client(address: str) -> TestClient:
    return TestClient(app, client=(address, 50000), raise_server_exceptions=False)


@pytest.fixture(params=["postgres", "redis"])
def limits(request: pytest.FixtureRequest, environment: Callable[..., None]) -> str:
    """Small limits on one of the two shared stores (Redis only when one answers)."""
    if request.param == "redis":
        try:
            socket.create_connection(("127.0.0.1", 6379), timeout=0.5).close()
        except OSError:
            pytest.skip("no Redis at 127.0.0.1:6379 (the default store is PostgreSQL)")
    environment(
        RATE_LIMIT_STORE=request.param,
        LOGIN_ATTEMPTS_PER_ACCOUNT="3",
        LOGIN_ATTEMPTS_PER_ADDRESS="5",
        REGISTRATIONS_PER_ADDRESS="2",
        PASSWORD_RESETS_PER_ACCOUNT="2",
        PASSWORD_RESETS_PER_ADDRESS="3",
        RATE_LIMIT_WINDOW_SECONDS="600",
    )
    return str(request.param)


def _address() -> str:
    return f"10.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}"


def _login(client: TestClient, email: str, password: str = "wrong-password"):  # type: ignore[no-untyped-def]
    return client.post("/auth/login", data={"username": email, "password": password})


def test_login_attempts_per_account_are_limited(limits: str, connection, session: Session) -> None:  # type: ignore[no-untyped-def]
    user = factories.make_user(session)
    for _ in range(3):  # from different addresses: the account limit still applies
        support.assert_problem(_login(_client(_address()), user.email), 401)
    refused = _login(_client(_address()), user.email, support.PASSWORD)
    body = support.assert_problem(refused, 429, "rate_limited")
    assert 1 <= int(refused.headers["retry-after"]) <= get_settings().RATE_LIMIT_WINDOW_SECONDS
    assert "account" in body["detail"]
    # Another account is not affected.
    other = factories.make_user(session)
    assert _login(_client(_address()), other.email, support.PASSWORD).status_code == 200


def test_login_attempts_per_address_are_limited(limits: str, connection) -> None:  # type: ignore[no-untyped-def]
    client = _client(_address())
    for n in range(5):
        support.assert_problem(_login(client, f"nobody-{n}-{uuid.uuid4().hex}@example.com"), 401)
    refused = _login(client, f"someone-{uuid.uuid4().hex}@example.com")
    assert "address" in support.assert_problem(refused, 429, "rate_limited")["detail"]
    # Another address is not affected (an account of its own: a Redis store outlives the run).
    assert _login(_client(_address()), f"x-{uuid.uuid4().hex}@example.com").status_code == 401


def test_registrations_per_address_are_limited(limits: str, connection) -> None:  # type: ignore[no-untyped-def]
    client = _client(_address())

    def register():  # type: ignore[no-untyped-def]
        email = f"new-{uuid.uuid4().hex}@example.com"
        body = {"email": email, "password": "password123", "full_name": "N"}
        return client.post("/auth/register", json=body)

    assert [register().status_code for _ in range(2)] == [202, 202]
    support.assert_problem(register(), 429, "rate_limited")


def _ask_reset(client: TestClient, email: str):  # type: ignore[no-untyped-def]
    return client.post("/auth/password-reset", json={"email": email})


@pytest.mark.parametrize("has_account", [True, False])
def test_password_reset_requests_per_email_are_limited(  # type: ignore[no-untyped-def]
    limits: str, connection, session: Session, has_account: bool
) -> None:
    email = f"reset-{uuid.uuid4().hex}@example.com"
    if has_account:
        factories.make_user(session, email=email)
    for _ in range(2):  # from different addresses: the limit per email still applies
        assert _ask_reset(_client(_address()), email).status_code == 202
    refused = _ask_reset(_client(_address()), email)
    body = support.assert_problem(refused, 429, "rate_limited")
    assert "email address" in body["detail"]
    assert 1 <= int(refused.headers["retry-after"]) <= get_settings().RATE_LIMIT_WINDOW_SECONDS
    # The same refusal whether or not the address has an account.
    assert body["detail"].startswith("Too many password reset requests for this email address")
    # Another email is not affected.
    other = f"other-{uuid.uuid4().hex}@example.com"
    assert _ask_reset(_client(_address()), other).status_code == 202


def test_password_reset_requests_per_address_are_limited(limits: str, connection) -> None:  # type: ignore[no-untyped-def]
    client = _client(_address())
    for n in range(3):
        assert _ask_reset(client, f"r{n}-{uuid.uuid4().hex}@example.com").status_code == 202
    refused = _ask_reset(client, f"r-{uuid.uuid4().hex}@example.com")
    assert "from this address" in support.assert_problem(refused, 429, "rate_limited")["detail"]
    assert _ask_reset(_client(_address()), f"x-{uuid.uuid4().hex}@example.com").status_code == 202


def test_the_postgres_store_counts_across_connections(connection) -> None:  # type: ignore[no-untyped-def]
    store = rate_limit.PostgresStore()
    key = f"test:{uuid.uuid4().hex}"
    assert [store.hit(key, 1, 9_999_999_999) for _ in range(3)] == [1, 2, 3]
    assert store.hit(key, 2, 9_999_999_999) == 1  # a new window starts again
