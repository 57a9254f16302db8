"""Idempotency-Key on writes: replay, reuse, in-flight requests, concurrency, expiry, coverage."""

import threading
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from fastapi import APIRouter
from fastapi.routing import APIRoute, iter_route_contexts
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, text
from sqlmodel import Session, col, select, update

from app import cli
from app.api.routing import (
    IDEMPOTENCY_HEADER,
    REPLAYED_HEADER,
    WRITE_METHODS,
    AppRoute,
    idempotency_guard,
)
from app.core.columns import utcnow
from app.core.deps import BEFORE_SESSION
from app.idempotency import service as idempotency_service
from app.idempotency.models import ANONYMOUS_SCOPE, IdempotencyKey, user_scope
from app.idempotency.service import lock_name
from app.main import app, create_app
from app.trips.models import Trip
from app.users.models import User
from tests import factories, support

TRIP = {"name": "Lisbon", "start_date": "2027-05-01", "end_date": "2027-05-04"}


def _keyed(user: User | None = None, key: str | None = None) -> dict[str, str]:
    headers = support.auth(user) if user is not None else {}
    return {**headers, IDEMPOTENCY_HEADER: key or str(uuid.uuid4())}


def _trips_of(session: Session, user: User) -> list[Trip]:
    return list(session.exec(select(Trip).where(Trip.created_by == user.id)).all())


def _records(session: Session, key: str) -> list[IdempotencyKey]:
    return list(session.exec(select(IdempotencyKey).where(IdempotencyKey.key == key)).all())


def _activity_count(session: Session, trip_id: str) -> int:
    return int(
        session.exec(  # type: ignore[call-overload]
            text("SELECT count(*) FROM trip_activity WHERE trip_id = :t").bindparams(t=trip_id)
        ).scalar_one()
    )


# --- Replay -------------------------------------------------------------------------------


def test_the_same_post_twice_creates_one_row_and_replays_the_first_answer(
    client: TestClient, session: Session
) -> None:
    user = factories.make_user(session)
    headers = _keyed(user)
    first = client.post("/trips", headers=headers, json=TRIP)
    second = client.post("/trips", headers=headers, json=TRIP)

    assert first.status_code == second.status_code == 201, first.text
    assert REPLAYED_HEADER.lower() not in first.headers
    assert second.headers[REPLAYED_HEADER] == "true"
    assert second.content == first.content
    assert second.headers["content-type"] == first.headers["content-type"]
    assert len(_trips_of(session, user)) == 1
    [record] = _records(session, headers[IDEMPOTENCY_HEADER])
    assert (record.scope, record.method, record.path) == (user_scope(user.id), "POST", "/trips")
    assert record.status_code == 201
    assert record.response_body == first.content
    assert record.expires_at - record.created_at == timedelta(days=28)


def test_patch_and_delete_replay_without_running_again(
    client: TestClient, session: Session
) -> None:
    user = factories.make_user(session)
    trip = client.post("/trips", headers=support.auth(user), json=TRIP).json()
    trip_id = trip["id"]
    rename = {**_keyed(user), "If-Match": f'"{trip["version"]}"'}
    first = client.patch(f"/trips/{trip_id}", headers=rename, json={"name": "Porto"})
    assert first.status_code == 200, first.text
    # Someone renames it again; a retry of the first rename must not undo that.
    client.patch(
        f"/trips/{trip_id}", headers=support.auth(user, if_match="*"), json={"name": "Faro"}
    )
    entries = _activity_count(session, trip_id)

    replay = client.patch(f"/trips/{trip_id}", headers=rename, json={"name": "Porto"})
    assert replay.status_code == 200
    assert replay.headers[REPLAYED_HEADER] == "true"
    assert replay.json() == first.json()
    assert replay.json()["name"] == "Porto"
    assert client.get(f"/trips/{trip_id}", headers=support.auth(user)).json()["name"] == "Faro"
    assert _activity_count(session, trip_id) == entries

    delete = {**_keyed(user), "If-Match": "*"}
    deleted = client.delete(f"/trips/{trip_id}", headers=delete)
    again = client.delete(f"/trips/{trip_id}", headers=delete)
    assert deleted.status_code == again.status_code == 204
    assert again.headers[REPLAYED_HEADER] == "true"
    assert again.content == b""
    # Without the key, the retry would have been told the trip is gone.
    support.assert_problem(
        client.delete(f"/trips/{trip_id}", headers=support.auth(user, if_match="*")),
        404,
        "trip_not_found",
    )


def test_an_anonymous_registration_replays_its_first_answer(client: TestClient) -> None:
    headers = _keyed()
    body = {"email": f"{uuid.uuid4().hex}@example.com", "password": "password123"}
    first = client.post("/auth/register", headers=headers, json={**body, "full_name": "A"})
    second = client.post("/auth/register", headers=headers, json={**body, "full_name": "A"})
    assert first.status_code == second.status_code == 202, second.text
    assert second.headers[REPLAYED_HEADER] == "true"
    assert second.json() == first.json()


def test_a_login_response_is_never_stored(client: TestClient, session: Session) -> None:
    user = factories.make_user(session)
    headers = _keyed()
    form = {"username": user.email, "password": support.PASSWORD}
    first = client.post("/auth/login", headers=headers, data=form)
    second = client.post("/auth/login", headers=headers, data=form)
    assert first.status_code == second.status_code == 200
    assert first.headers["cache-control"] == "no-store"
    assert REPLAYED_HEADER.lower() not in second.headers
    assert _records(session, headers[IDEMPOTENCY_HEADER]) == []


def test_the_write_and_its_record_commit_together(
    client: TestClient, session: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    user = factories.make_user(session)

    def cannot_store(**_: object) -> None:
        raise RuntimeError("the record could not be written")

    monkeypatch.setattr(idempotency_service, "record_key", cannot_store)
    response = client.post("/trips", headers=_keyed(user), json=TRIP)
    support.assert_problem(response, 500, "internal_error")
    assert _trips_of(session, user) == []  # no record, so the write did not happen either


# --- Reuse and scope ----------------------------------------------------------------------


def test_the_same_key_for_another_request_is_422_and_changes_nothing(
    client: TestClient, session: Session
) -> None:
    user = factories.make_user(session)
    headers = _keyed(user)
    first = client.post("/trips", headers=headers, json=TRIP)
    assert first.status_code == 201
    trip_id = first.json()["id"]

    other_body = client.post("/trips", headers=headers, json={**TRIP, "name": "Porto"})
    support.assert_problem(other_body, 422, "idempotency_key_reused")
    other_route = client.patch(f"/trips/{trip_id}", headers=headers, json={"name": "Porto"})
    support.assert_problem(other_route, 422, "idempotency_key_reused")

    assert [trip.name for trip in _trips_of(session, user)] == ["Lisbon"]
    [record] = _records(session, headers[IDEMPOTENCY_HEADER])
    assert record.response_body == first.content


def test_keys_belong_to_one_user(client: TestClient, session: Session) -> None:
    alice, bob = factories.make_user(session), factories.make_user(session)
    key = str(uuid.uuid4())
    for_alice = client.post("/trips", headers=_keyed(alice, key), json=TRIP)
    for_bob = client.post("/trips", headers=_keyed(bob, key), json=TRIP)
    assert for_alice.status_code == for_bob.status_code == 201
    assert REPLAYED_HEADER.lower() not in for_bob.headers
    assert for_alice.json()["id"] != for_bob.json()["id"]
    assert len(_trips_of(session, alice)) == len(_trips_of(session, bob)) == 1
    # A different body under Bob's key is Bob's problem only.
    changed = client.post("/trips", headers=_keyed(bob, key), json={**TRIP, "name": "Porto"})
    support.assert_problem(changed, 422, "idempotency_key_reused")
    again = client.post("/trips", headers=_keyed(alice, key), json=TRIP)
    assert again.headers[REPLAYED_HEADER] == "true"


# --- Failures and invalid keys ------------------------------------------------------------


def test_a_failed_request_stores_nothing_and_its_retry_runs(
    client: TestClient, session: Session
) -> None:
    user = factories.make_user(session)
    headers = _keyed(user)
    key = headers[IDEMPOTENCY_HEADER]
    backwards = {**TRIP, "start_date": "2027-05-09"}
    support.assert_problem(client.post("/trips", headers=headers, json=backwards), 422)
    expired_token = {IDEMPOTENCY_HEADER: key, "Authorization": "Bearer not-a-token"}
    support.assert_problem(client.post("/trips", headers=expired_token, json=TRIP), 401)
    assert _records(session, key) == []
    assert _trips_of(session, user) == []

    retried = client.post("/trips", headers=headers, json=TRIP)
    assert retried.status_code == 201, retried.text
    assert REPLAYED_HEADER.lower() not in retried.headers
    assert len(_records(session, key)) == 1


@pytest.mark.parametrize(
    "key",
    [b"", b"x" * 256, "caf\u00e9".encode(), b"tab\there"],
    ids=["empty", "too-long", "not-ascii", "control-character"],
)
def test_an_invalid_key_is_400_and_nothing_runs(
    client: TestClient, session: Session, key: bytes
) -> None:
    user = factories.make_user(session)
    headers = [(b"authorization", support.auth(user)["Authorization"].encode())]
    response = client.post("/trips", headers=[*headers, (b"idempotency-key", key)], json=TRIP)
    support.assert_problem(response, 400, "invalid_idempotency_key")
    assert _trips_of(session, user) == []


def test_two_keys_in_one_request_are_400(client: TestClient, session: Session) -> None:
    user = factories.make_user(session)
    headers = [
        (b"authorization", support.auth(user)["Authorization"].encode()),
        (b"idempotency-key", b"one"),
        (b"idempotency-key", b"two"),
    ]
    response = client.post("/trips", headers=headers, json=TRIP)
    support.assert_problem(response, 400, "invalid_idempotency_key")


def test_the_longest_valid_key_works(client: TestClient, session: Session) -> None:
    user = factories.make_user(session)
    key = "k" * 254 + "~"
    assert client.post("/trips", headers=_keyed(user, key), json=TRIP).status_code == 201
    assert len(_records(session, key)) == 1


# --- In flight ----------------------------------------------------------------------------


def test_a_key_held_by_a_running_request_is_409(
    client: TestClient, session: Session, engine: Engine
) -> None:
    user = factories.make_user(session)
    headers = _keyed(user)
    name = lock_name(user_scope(user.id), headers[IDEMPOTENCY_HEADER])
    # Another connection holds the key's lock, as the first request's transaction does.
    with engine.connect() as other:
        other.execute(text("SELECT pg_advisory_lock(hashtextextended(:n, 0))"), {"n": name})
        busy = client.post("/trips", headers=headers, json=TRIP)
        other.execute(text("SELECT pg_advisory_unlock(hashtextextended(:n, 0))"), {"n": name})
    support.assert_problem(busy, 409, "idempotency_request_in_progress")
    assert _trips_of(session, user) == []
    assert client.post("/trips", headers=headers, json=TRIP).status_code == 201


@pytest.fixture
def slow_app() -> Iterator[tuple[TestClient, threading.Event, threading.Event, list[int]]]:
    """The real app plus a write route that waits until the test lets it finish (committed)."""
    application = create_app()
    router = APIRouter(route_class=AppRoute)
    entered, release = threading.Event(), threading.Event()
    runs: list[int] = []

    @router.post("/_test/slow", status_code=201)
    def slow() -> dict[str, int]:
        runs.append(1)
        entered.set()
        assert release.wait(10)
        return {"run": len(runs)}

    application.include_router(router)
    yield TestClient(application, raise_server_exceptions=False), entered, release, runs
    release.set()


def test_a_second_request_while_the_first_runs_is_409_then_replayed(
    engine: Engine, slow_app: tuple[TestClient, threading.Event, threading.Event, list[int]]
) -> None:
    client, entered, release, runs = slow_app
    key = f"slow-{uuid.uuid4()}"
    answers: list[Any] = []
    first = threading.Thread(
        target=lambda: answers.append(
            client.post("/_test/slow", headers={IDEMPOTENCY_HEADER: key}, json={})
        )
    )
    first.start()
    try:
        assert entered.wait(10)
        support.assert_problem(
            client.post("/_test/slow", headers={IDEMPOTENCY_HEADER: key}, json={}),
            409,
            "idempotency_request_in_progress",
        )
        release.set()
        first.join(10)
        [original] = answers
        assert original.status_code == 201, original.text
        replay = client.post("/_test/slow", headers={IDEMPOTENCY_HEADER: key}, json={})
        assert replay.status_code == 201
        assert replay.headers[REPLAYED_HEADER] == "true"
        assert replay.json() == original.json() == {"run": 1}
        assert runs == [1]
    finally:
        release.set()
        first.join(10)
        with engine.begin() as connection:
            connection.execute(
                text("DELETE FROM idempotency_keys WHERE scope = :s AND key = :k"),
                {"s": ANONYMOUS_SCOPE, "k": key},
            )


# --- Real concurrency on committed data ---------------------------------------------------

THREADS = 8


@pytest.fixture
def committed_user(engine: Engine) -> Iterator[User]:
    with Session(engine, expire_on_commit=False) as session:
        user = factories.make_user(session)
    yield user
    with engine.begin() as connection:
        connection.execute(text("DELETE FROM trips WHERE created_by = :u"), {"u": user.id})
        connection.execute(
            text("DELETE FROM idempotency_keys WHERE scope = :s"), {"s": user_scope(user.id)}
        )
        connection.execute(text("DELETE FROM users WHERE id = :u"), {"u": user.id})


def test_the_same_key_sent_at_once_from_many_threads_creates_one_row(
    engine: Engine, committed_user: User
) -> None:
    application = create_app()
    client = TestClient(application, raise_server_exceptions=False)
    warm_up = client.post("/trips", headers=_keyed(committed_user), json=TRIP)
    assert warm_up.status_code == 201  # the framework builds some validators on first use
    headers = _keyed(committed_user)
    race = {**TRIP, "name": "Race"}
    start = threading.Barrier(THREADS, timeout=30)
    answers: list[Any] = []
    errors: list[BaseException] = []

    def send() -> None:
        try:
            device = TestClient(application, raise_server_exceptions=False)
            start.wait()
            answers.append(device.post("/trips", headers=headers, json=race))
        except BaseException as error:  # reported below, not lost in the thread
            errors.append(error)

    threads = [threading.Thread(target=send) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    assert len(answers) == THREADS

    originals = [a for a in answers if a.status_code == 201 and REPLAYED_HEADER not in a.headers]
    replays = [a for a in answers if a.headers.get(REPLAYED_HEADER) == "true"]
    busy = [a for a in answers if a.status_code == 409]
    assert len(originals) == 1
    assert len(originals) + len(replays) + len(busy) == THREADS, [a.text for a in answers]
    for answer in busy:
        support.assert_problem(answer, 409, "idempotency_request_in_progress")
    for answer in replays:
        assert answer.status_code == 201
        assert answer.content == originals[0].content
    with Session(engine) as session:
        created = session.exec(
            select(func.count())
            .select_from(Trip)
            .where(Trip.created_by == committed_user.id, Trip.name == "Race")
        ).one()
        assert created == 1
        [record] = _records(session, headers[IDEMPOTENCY_HEADER])
    # Whoever got the 409s retries and gets the one answer.
    retry = client.post("/trips", headers=headers, json=race)
    assert retry.headers[REPLAYED_HEADER] == "true"
    assert retry.content == record.response_body


# --- Expiry -------------------------------------------------------------------------------


def _expire(session: Session, key: str) -> None:
    session.exec(
        update(IdempotencyKey)  # type: ignore[call-overload]
        .where(col(IdempotencyKey.key) == key)
        .values(expires_at=utcnow() - timedelta(seconds=1))
    )
    session.commit()


def test_expired_keys_are_kept_until_the_cleanup_command_deletes_them(
    client: TestClient, session: Session
) -> None:
    user = factories.make_user(session)
    expired, kept = _keyed(user), _keyed(user)
    for headers in (expired, kept):
        assert client.post("/trips", headers=headers, json=TRIP).status_code == 201
    _expire(session, expired[IDEMPOTENCY_HEADER])

    # Requests neither delete nor ignore an expired key: only the cleanup does.
    late = client.post("/trips", headers=expired, json=TRIP)
    assert late.headers[REPLAYED_HEADER] == "true"
    assert len(_records(session, expired[IDEMPOTENCY_HEADER])) == 1

    assert cli.cleanup(batch_size=1)["expired idempotency keys"] == 1
    session.expire_all()
    assert _records(session, expired[IDEMPOTENCY_HEADER]) == []
    assert len(_records(session, kept[IDEMPOTENCY_HEADER])) == 1
    assert cli.cleanup()["expired idempotency keys"] == 0

    # The key is free again: the same request now runs as a new one.
    fresh = client.post("/trips", headers=expired, json=TRIP)
    assert fresh.status_code == 201
    assert REPLAYED_HEADER.lower() not in fresh.headers
    assert len(_trips_of(session, user)) == 3


def test_the_cleanup_command_prints_what_it_deleted(
    client: TestClient, session: Session, capsys: pytest.CaptureFixture[str]
) -> None:
    user = factories.make_user(session)
    for _ in range(3):
        headers = _keyed(user)
        assert client.post("/trips", headers=headers, json=TRIP).status_code == 201
        _expire(session, headers[IDEMPOTENCY_HEADER])
    assert cli.main(["cleanup", "--batch-size", "2"]) == 0
    assert "expired idempotency keys: 3 deleted\n" in capsys.readouterr().out


# --- Coverage -----------------------------------------------------------------------------

_WRITE_OPERATIONS = sorted(
    (method.upper(), path)
    for path, operations in app.openapi()["paths"].items()
    for method in operations
    if method.upper() in WRITE_METHODS
)


def test_every_route_uses_the_app_route_class_and_every_write_is_guarded_first() -> None:
    guarded = set()
    for route in iter_route_contexts(app.routes):
        if not isinstance(route.original_route, APIRoute):
            continue  # the docs pages and the static frontend
        assert isinstance(route.original_route, AppRoute), route.path
        assert route.methods is not None
        if route.methods & WRITE_METHODS:
            # First, or right after the waits that hold no session (app.api.routing).
            calls = [d.call for d in route.dependant.dependencies]
            while calls and calls[0] in BEFORE_SESSION:
                calls.pop(0)
            assert calls, route.path
            assert calls[0] is idempotency_guard, route.path
            guarded |= {(method, route.path) for method in route.methods & WRITE_METHODS}
    assert ("POST", "/trips") in guarded
    assert guarded == set(_WRITE_OPERATIONS)


@pytest.mark.parametrize(("method", "path"), _WRITE_OPERATIONS)
def test_the_openapi_document_declares_the_headers(method: str, path: str) -> None:
    document = app.openapi()
    operation = document["paths"][path][method.lower()]
    parameters = [support.resolved(document, p) for p in operation.get("parameters", [])]
    headers = {p["name"] for p in parameters if p["in"] == "header"}
    assert IDEMPOTENCY_HEADER in headers
    assert {"400", "409", "422"} <= set(operation["responses"])
    successes = [code for code in operation["responses"] if code.startswith("2")]
    assert successes, operation["responses"]
    for code in successes:
        assert (
            REPLAYED_HEADER in support.resolved(document, operation["responses"][code])["headers"]
        )
