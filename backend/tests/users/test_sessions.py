"""Sessions: login, refresh-token rotation and reuse, logout, the session list, revocation,
and what a password change ends."""

import logging
import threading
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text
from sqlmodel import Session, col, select, update

from app import cli
from app.core.columns import utcnow
from app.core.config import get_settings
from app.core.security import REFRESH_TOKEN_LENGTH
from app.main import create_app
from app.users.models import DEVICE_LABEL_MAX, User, UserSession
from tests import factories, support


def _log_in(client: TestClient, user: User, **fields: str) -> dict[str, Any]:
    headers = {"User-Agent": fields.pop("user_agent")} if "user_agent" in fields else {}
    response = client.post(
        "/auth/login",
        data={"username": user.email, "password": support.PASSWORD, **fields},
        headers=headers,
    )
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def _refresh(client: TestClient, refresh_token: str):  # type: ignore[no-untyped-def]
    return client.post("/auth/refresh", json={"refresh_token": refresh_token})


def _bearer(tokens: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens['access_token']}"}


def _works(client: TestClient, tokens: dict[str, Any]) -> bool:
    """Whether the access token still authenticates."""
    response = client.get("/users/me", headers=_bearer(tokens))
    assert response.status_code in (200, 401), response.text
    return response.status_code == 200


def _sessions_of(session: Session, user: User) -> list[UserSession]:
    session.expire_all()
    return list(session.exec(select(UserSession).where(UserSession.user_id == user.id)).all())


def test_login_answers_the_oauth2_token_shape_and_starts_a_session(
    client: TestClient, session: Session
) -> None:
    user = factories.make_user(session)
    response = client.post(
        "/auth/login", data={"username": user.email, "password": support.PASSWORD}
    )
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    tokens = response.json()
    assert set(tokens) == {"access_token", "token_type", "expires_in", "refresh_token"}
    assert tokens["token_type"] == "bearer"
    assert tokens["expires_in"] == get_settings().ACCESS_TOKEN_EXPIRE_MINUTES * 60
    assert len(tokens["refresh_token"]) == REFRESH_TOKEN_LENGTH
    assert _works(client, tokens)

    [started] = _sessions_of(session, user)
    # Only a hash of the refresh token is stored, never the token.
    assert tokens["refresh_token"].encode() not in started.refresh_hash
    assert len(started.refresh_hash) == 32
    assert started.expires_at - started.last_used_at == timedelta(
        days=get_settings().REFRESH_TOKEN_TTL_DAYS
    )
    # Each login is a session of its own.
    _log_in(client, user)
    assert len(_sessions_of(session, user)) == 2


def test_refresh_rotates_the_refresh_token(client: TestClient, session: Session) -> None:
    user = factories.make_user(session)
    first = _log_in(client, user)
    [before] = _sessions_of(session, user)
    used_at = before.last_used_at

    response = _refresh(client, first["refresh_token"])
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    second = response.json()
    assert set(second) == {"access_token", "token_type", "expires_in", "refresh_token"}
    assert second["refresh_token"] != first["refresh_token"]
    assert _works(client, second)
    # The same session, used again; the new refresh token works in turn.
    [after] = _sessions_of(session, user)
    assert after.id == before.id
    assert after.last_used_at > used_at
    third = _refresh(client, second["refresh_token"])
    assert third.status_code == 200, third.text
    assert _works(client, third.json())


def test_reusing_a_rotated_refresh_token_ends_the_whole_session(
    client: TestClient, session: Session, caplog: pytest.LogCaptureFixture
) -> None:
    user = factories.make_user(session)
    other_device = _log_in(client, user)
    stolen = _log_in(client, user)
    newest = _refresh(client, stolen["refresh_token"]).json()
    assert _works(client, newest)

    with caplog.at_level(logging.WARNING, logger="app.users.sessions"):
        reused = _refresh(client, stolen["refresh_token"])
    problem = support.assert_problem(reused, 401, "invalid_refresh_token")
    assert "already used" in problem["detail"]
    assert reused.headers["www-authenticate"] == "Bearer"
    [record] = [r for r in caplog.records if "refresh token reuse" in r.getMessage()]
    assert str(user.id) in record.getMessage()
    assert stolen["refresh_token"] not in record.getMessage()

    # The ending was committed despite the 401: neither copy works any more, access included.
    support.assert_problem(_refresh(client, newest["refresh_token"]), 401, "invalid_refresh_token")
    assert not _works(client, newest)
    support.assert_problem(_refresh(client, stolen["refresh_token"]), 401, "invalid_refresh_token")
    # The user's other devices are not touched.
    assert _works(client, other_device)
    assert len(_sessions_of(session, user)) == 1


@pytest.mark.parametrize(
    "token",
    [
        "not-a-token",
        "x" * REFRESH_TOKEN_LENGTH,  # the right length, an unknown session
        "!" * REFRESH_TOKEN_LENGTH,
        "A" * (REFRESH_TOKEN_LENGTH - 1) + "=",
        "é" * REFRESH_TOKEN_LENGTH,
    ],
)
def test_malformed_or_unknown_refresh_tokens_are_401(client: TestClient, token: str) -> None:
    support.assert_problem(_refresh(client, token), 401, "invalid_refresh_token")


def test_refresh_needs_exactly_a_refresh_token(client: TestClient) -> None:
    for body in ({}, {"refresh_token": ""}, {"refresh_token": "x", "scope": "all"}):
        support.assert_problem(client.post("/auth/refresh", json=body), 422, "validation_error")


def test_an_access_token_is_not_a_refresh_token(client: TestClient, session: Session) -> None:
    tokens = _log_in(client, factories.make_user(session))
    support.assert_problem(_refresh(client, tokens["access_token"]), 401, "invalid_refresh_token")
    support.assert_problem(
        client.get("/users/me", headers={"Authorization": f"Bearer {tokens['refresh_token']}"}),
        401,
        "invalid_token",
    )


def test_an_expired_refresh_token_is_401(client: TestClient, session: Session) -> None:
    user = factories.make_user(session)
    tokens = _log_in(client, user)
    session.exec(
        update(UserSession)
        .where(col(UserSession.user_id) == user.id)
        .values(expires_at=utcnow() - timedelta(seconds=1))
    )
    session.commit()
    support.assert_problem(_refresh(client, tokens["refresh_token"]), 401, "invalid_refresh_token")
    # Nothing was ended by it (the cleanup deletes it), and nothing was rotated.
    assert len(_sessions_of(session, user)) == 1


def test_a_deactivated_user_cannot_refresh(client: TestClient, session: Session) -> None:
    user = factories.make_user(session)
    tokens = _log_in(client, user)
    user.is_active = False
    session.add(user)
    session.commit()
    support.assert_problem(_refresh(client, tokens["refresh_token"]), 401, "invalid_refresh_token")
    assert not _works(client, tokens)


def test_logout_ends_access_and_refresh_at_once(client: TestClient, session: Session) -> None:
    user = factories.make_user(session)
    phone, laptop = _log_in(client, user), _log_in(client, user)
    response = client.post("/auth/logout", headers=_bearer(phone))
    assert response.status_code == 204, response.text

    assert not _works(client, phone)  # long before the access token expires
    support.assert_problem(
        client.post("/auth/logout", headers=_bearer(phone)), 401, "invalid_token"
    )
    support.assert_problem(_refresh(client, phone["refresh_token"]), 401, "invalid_refresh_token")
    # Trip routes authenticate with their own query: the ended session is refused there too.
    trip = factories.create_trip(client, user)
    support.assert_problem(
        client.get(f"/trips/{trip['id']}", headers=_bearer(phone)), 401, "invalid_token"
    )
    assert _works(client, laptop)
    assert _refresh(client, laptop["refresh_token"]).status_code == 200


def test_the_session_list_shows_my_sessions_only(client: TestClient, session: Session) -> None:
    me, someone = factories.make_user(session), factories.make_user(session)
    phone = _log_in(client, me, device_label="  Ada's  phone ")
    laptop = _log_in(client, me, user_agent="Mozilla/5.0 (X11; Linux x86_64) Firefox/140.0")
    _log_in(client, someone, device_label="Not mine")

    response = client.get("/users/me/sessions", headers=_bearer(laptop))
    assert response.status_code == 200, response.text
    page = response.json()
    assert page["next_cursor"] is None
    listed = page["items"]
    # Newest first; `current` is the session of the token that asked.
    assert [s["device_label"] for s in listed] == [
        "Mozilla/5.0 (X11; Linux x86_64) Firefox/140.0",
        "Ada's phone",
    ]
    assert [s["current"] for s in listed] == [True, False]
    assert set(listed[0]) == {"id", "device_label", "created_at", "last_used_at", "current"}
    mine = {row.id for row in _sessions_of(session, me)}
    assert {uuid.UUID(s["id"]) for s in listed} == mine

    from_phone = client.get("/users/me/sessions", headers=_bearer(phone)).json()["items"]
    assert [s["current"] for s in from_phone] == [False, True]


def test_the_session_list_pages(client: TestClient, session: Session) -> None:
    me = factories.make_user(session)
    tokens = [_log_in(client, me, device_label=f"Device {n}") for n in range(3)]
    first = client.get("/users/me/sessions", headers=_bearer(tokens[0]), params={"limit": 2})
    assert first.status_code == 200, first.text
    assert [s["device_label"] for s in first.json()["items"]] == ["Device 2", "Device 1"]
    second = client.get(
        "/users/me/sessions",
        headers=_bearer(tokens[0]),
        params={"limit": 2, "cursor": first.json()["next_cursor"]},
    ).json()
    assert [s["device_label"] for s in second["items"]] == ["Device 0"]
    assert second["next_cursor"] is None


@pytest.mark.parametrize(
    ("fields", "label"),
    [
        ({"user_agent": "A" * 300}, "A" * DEVICE_LABEL_MAX),
        ({"user_agent": "Agent\twith  tabs"}, "Agent with tabs"),
        ({"user_agent": "  "}, "Unknown device"),
        ({"device_label": "Tablet", "user_agent": "Agent"}, "Tablet"),
    ],
)
def test_the_device_label_comes_from_the_form_or_the_user_agent(
    client: TestClient, session: Session, fields: dict[str, str], label: str
) -> None:
    user = factories.make_user(session)
    _log_in(client, user, **fields)
    assert [s.device_label for s in _sessions_of(session, user)] == [label]


@pytest.mark.parametrize("device_label", ["x" * (DEVICE_LABEL_MAX + 1), "a\x00b", "   "])
def test_a_device_label_no_list_could_show_is_422(
    client: TestClient, session: Session, device_label: str
) -> None:
    user = factories.make_user(session)
    response = client.post(
        "/auth/login",
        data={"username": user.email, "password": support.PASSWORD, "device_label": device_label},
    )
    support.assert_problem(response, 422, "validation_error")
    assert _sessions_of(session, user) == []


def test_revoking_one_of_my_sessions(client: TestClient, session: Session) -> None:
    me = factories.make_user(session)
    lost_phone, laptop = _log_in(client, me), _log_in(client, me)
    listed = client.get("/users/me/sessions", headers=_bearer(laptop)).json()["items"]
    [phone_id] = [s["id"] for s in listed if not s["current"]]

    response = client.delete(f"/users/me/sessions/{phone_id}", headers=_bearer(laptop))
    assert response.status_code == 204, response.text
    assert not _works(client, lost_phone)
    support.assert_problem(_refresh(client, lost_phone["refresh_token"]), 401)
    assert _works(client, laptop)
    # Gone: the same 404 again.
    support.assert_problem(
        client.delete(f"/users/me/sessions/{phone_id}", headers=_bearer(laptop)),
        404,
        "session_not_found",
    )


def test_another_users_session_is_the_same_404_as_a_missing_one(
    client: TestClient, session: Session
) -> None:
    me, someone = factories.make_user(session), factories.make_user(session)
    mine, theirs = _log_in(client, me), _log_in(client, someone)
    [their_session] = _sessions_of(session, someone)

    foreign = client.delete(f"/users/me/sessions/{their_session.id}", headers=_bearer(mine))
    missing = client.delete(f"/users/me/sessions/{uuid.uuid4()}", headers=_bearer(mine))
    support.assert_problem(foreign, 404, "session_not_found")
    assert foreign.json() == missing.json()
    assert _works(client, theirs)
    assert _refresh(client, theirs["refresh_token"]).status_code == 200


def test_a_password_change_ends_every_other_session(client: TestClient, session: Session) -> None:
    user = factories.make_user(session)
    here, elsewhere, another = _log_in(client, user), _log_in(client, user), _log_in(client, user)
    stream_token = client.post("/sync/stream-tokens", headers=_bearer(elsewhere)).json()["token"]

    changed = client.put(
        "/users/me/password",
        headers=_bearer(here),
        json={"current_password": support.PASSWORD, "new_password": "new-password-1"},
    )
    assert changed.status_code == 204, changed.text

    assert _works(client, here)
    assert _refresh(client, here["refresh_token"]).status_code == 200
    for ended in (elsewhere, another):
        assert not _works(client, ended)
        support.assert_problem(_refresh(client, ended["refresh_token"]), 401)
    # A stream token of an ended session opens nothing.
    support.assert_problem(
        client.get(f"/sync/events?token={stream_token}"), 401, "invalid_stream_token"
    )
    assert len(_sessions_of(session, user)) == 1


def test_the_cleanup_deletes_sessions_past_their_expiry(
    client: TestClient, session: Session
) -> None:
    user = factories.make_user(session)
    expired, kept = _log_in(client, user), _log_in(client, user)
    listed = client.get("/users/me/sessions", headers=_bearer(expired)).json()["items"]
    [expired_id] = [uuid.UUID(s["id"]) for s in listed if s["current"]]
    session.exec(
        update(UserSession)
        .where(col(UserSession.id) == expired_id)
        .values(expires_at=utcnow() - timedelta(seconds=1))
    )
    session.commit()

    assert cli.cleanup(batch_size=1)["sessions unused past their expiry"] == 1
    assert [row.id for row in _sessions_of(session, user)] != [expired_id]
    assert len(_sessions_of(session, user)) == 1
    assert _works(client, kept)
    assert cli.cleanup()["sessions unused past their expiry"] == 0


# --- Racing refreshes, on committed data --------------------------------------------------


@pytest.fixture
def committed_user(engine: Engine) -> Iterator[User]:
    with Session(engine, expire_on_commit=False) as session:
        user = factories.make_user(session)
    yield user
    with engine.begin() as connection:
        connection.execute(text("DELETE FROM users WHERE id = :u"), {"u": user.id})


def test_of_two_refreshes_racing_with_one_token_only_one_gets_tokens(
    committed_user: User, engine: Engine
) -> None:
    """The session's row is locked: the second finds the token used (reuse), never two live
    refresh tokens for one session."""
    client = TestClient(create_app(), raise_server_exceptions=False)
    # Served once before the threads, so the framework's lazily built parts are built.
    assert _refresh(client, _log_in(client, committed_user)["refresh_token"]).status_code == 200
    for _ in range(5):
        current = _log_in(client, committed_user)["refresh_token"]
        start = threading.Barrier(2)
        statuses: list[int] = []

        def race(token: str, start: threading.Barrier, statuses: list[int]) -> None:
            start.wait()
            statuses.append(_refresh(client, token).status_code)

        threads = [threading.Thread(target=race, args=(current, start, statuses)) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert sorted(statuses) == [200, 401]
    with Session(engine) as session:
        # Each race ended its session (reuse); the first login's session is untouched.
        assert len(_sessions_of(session, committed_user)) == 1
