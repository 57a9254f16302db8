"""DELETE /users/me: confirmed by password, refused to a sole owner, and the ledger keeps its
sums under a "former member" guest while the account's personal data goes."""

import uuid
from collections.abc import Iterator
from typing import Any

import psycopg2
import psycopg2.extensions
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text, update
from sqlmodel import Session, col, func, select

from app.activity.models import Activity
from app.core.columns import utcnow
from app.expenses import service as expense_service
from app.expenses.models import ParticipantTotals
from app.idempotency.models import IdempotencyKey, user_scope
from app.main import create_app
from app.outbox.models import OutboxMessage, OutboxStatus
from app.sync import live
from app.trips.models import Role, Trip, TripMember
from app.users import hooks as user_hooks
from app.users.models import FORMER_MEMBER_NAME, User, UserSession
from tests import factories, support


def delete_account(client: TestClient, user: User, password: str = support.PASSWORD):  # type: ignore[no-untyped-def]
    return client.request(
        "DELETE", "/users/me", headers=support.auth(user), json={"password": password}
    )


def balances(client: TestClient, user: User, trip_id: str) -> dict[str, dict[str, Any]]:
    response = client.get(f"/trips/{trip_id}/balances", headers=support.auth(user))
    assert response.status_code == 200, response.text
    return {row["participant_id"]: row for row in response.json()["balances"]}


def post(client: TestClient, user: User, path: str, body: dict[str, Any]) -> dict[str, Any]:
    response = client.post(path, headers=support.auth(user), json=body)
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


def participant_of(client: TestClient, viewer: User, trip_id: str, user: User) -> str:
    """The id of `user`'s participant in the trip, as `viewer` lists it."""
    by_user = {p["user_id"]: p["id"] for p in support.participants(client, viewer, trip_id)}
    return str(by_user[str(user.id)])


def test_the_ledger_keeps_its_sums_under_a_former_member(
    client: TestClient, session: Session
) -> None:
    alice = factories.make_user(session, full_name="Alice")
    bob = factories.make_user(session, full_name="Bob Leaving")
    trip = factories.create_trip(client, alice)
    factories.join(client, alice, trip["id"], bob, "editor")
    base = f"/trips/{trip['id']}"
    alice_pid = participant_of(client, alice, trip["id"], alice)
    bob_pid = participant_of(client, alice, trip["id"], bob)
    gus_pid = factories.add_guest(client, alice, trip["id"], "Gus")
    post(
        client,
        bob,
        f"{base}/expenses",
        {
            "title": "Dinner",
            "amount_minor": 9001,
            "currency": "EUR",
            "spent_on": "2027-05-02",
            "payers": [{"participant_id": bob_pid, "amount_minor": 9001}],
            "split_mode": "equal",
            "splits": [{"participant_id": pid} for pid in (alice_pid, bob_pid, gus_pid)],
        },
    )
    post(
        client,
        alice,
        f"{base}/expenses",
        {
            "title": "Taxi",
            "amount_minor": 2500,
            "currency": "USD",
            "exchange_rate": "0.9",
            "spent_on": "2027-05-03",
            "payers": [{"participant_id": alice_pid, "amount_minor": 2500}],
            "split_mode": "shares",
            "splits": [
                {"participant_id": alice_pid, "shares": 1},
                {"participant_id": bob_pid, "shares": 2},
            ],
        },
    )
    post(
        client,
        alice,
        f"{base}/settlements",
        {
            "from_participant_id": gus_pid,
            "to_participant_id": bob_pid,
            "amount_minor": 1000,
            "currency": "EUR",
            "settled_on": "2027-05-04",
        },
    )
    before = balances(client, alice, trip["id"])
    assert sum(row["balance_minor"] for row in before.values()) == 0
    assert before[bob_pid]["balance_minor"] != 0

    deleted = delete_account(client, bob)
    assert deleted.status_code == 204, deleted.text

    after = balances(client, alice, trip["id"])
    assert sum(row["balance_minor"] for row in after.values()) == 0
    # Same participants, same amounts: only the name of Bob's changed.
    assert {pid: row["balance_minor"] for pid, row in after.items()} == {
        pid: row["balance_minor"] for pid, row in before.items()
    }
    assert after[bob_pid]["name"] == FORMER_MEMBER_NAME
    former = next(p for p in support.participants(client, alice, trip["id"]) if p["id"] == bob_pid)
    assert former == {**former, "user_id": None, "is_guest": True, "is_member": False}
    # The running totals still agree with the ledger summed from scratch.
    stored = {
        (row.participant_id, row.paid_minor, row.owed_minor)
        for row in session.exec(
            select(ParticipantTotals).where(ParticipantTotals.trip_id == uuid.UUID(trip["id"]))
        )
    }
    recomputed = {
        (row.participant_id, row.paid_minor, row.owed_minor)
        for row in session.execute(expense_service.recomputed_totals(uuid.UUID(trip["id"])))
    }
    assert stored == recomputed


def test_the_account_is_gone_its_tokens_stop_and_its_address_is_free(
    client: TestClient, session: Session
) -> None:
    alice = factories.make_user(session)
    bob = factories.make_user(session, full_name="Bob Leaving")
    trip = factories.create_trip(client, alice)
    factories.join(client, alice, trip["id"], bob, "viewer")
    address, old_token = bob.email, support.auth(bob)
    # Another device, signed in for real: an access token and a refresh token of its own.
    phone = client.post(
        "/auth/login",
        data={"username": address, "password": support.PASSWORD, "device_label": "Phone"},
    )
    assert phone.status_code == 200, phone.text
    phone_access = {"Authorization": f"Bearer {phone.json()['access_token']}"}
    assert client.get("/users/me", headers=phone_access).status_code == 200

    assert delete_account(client, bob).status_code == 204

    for access in (old_token, phone_access):
        support.assert_problem(client.get("/users/me", headers=access), 401, "invalid_token")
        support.assert_problem(client.get(f"/trips/{trip['id']}", headers=access), 401)
    refreshed = client.post("/auth/refresh", json={"refresh_token": phone.json()["refresh_token"]})
    support.assert_problem(refreshed, 401, "invalid_refresh_token")
    # Its sessions are gone, not merely refused.
    assert session.scalar(select(func.count()).where(col(UserSession.user_id) == bob.id)) == 0
    login = client.post("/auth/login", data={"username": address, "password": support.PASSWORD})
    support.assert_problem(login, 401, "invalid_credentials")
    # The row stays (others' records point at it) with nothing personal left in it.
    row = session.execute(
        text(
            "SELECT email, full_name, password_hash, is_active, deleted_at FROM users "
            "WHERE id = :id"
        ),
        {"id": bob.id},
    ).one()
    assert address not in row.email
    assert "Bob" not in row.full_name
    assert row.full_name == FORMER_MEMBER_NAME
    assert not row.password_hash.startswith("$argon2")
    assert row.is_active is False
    assert row.deleted_at is not None
    members = client.get(f"/trips/{trip['id']}/members", headers=support.auth(alice)).json()
    assert [m["user_id"] for m in members["items"]] == [str(alice.id)]
    # The address can make a new account.
    again = client.post(
        "/auth/register",
        json={"email": address, "password": "another password", "full_name": "New Bob"},
    )
    assert 200 <= again.status_code < 300, again.text
    newcomer = session.exec(select(User).where(User.email == address)).one()
    assert newcomer.id != bob.id
    assert newcomer.is_active


def test_a_sole_owner_is_told_which_trips_to_hand_over_and_nothing_changes(
    client: TestClient, session: Session
) -> None:
    alice, bob = factories.make_user(session), factories.make_user(session)
    solo = factories.create_trip(client, alice, name="Solo")
    shared = factories.create_trip(client, alice, name="Shared")
    co_owned = factories.create_trip(client, alice, name="Co-owned")
    factories.join(client, alice, shared["id"], bob, "editor")
    factories.join(client, alice, co_owned["id"], bob, "owner")
    before = client.get("/sync", headers=support.auth(alice)).json()["trips"]

    refused = delete_account(client, alice)
    problem = support.assert_problem(refused, 409, "sole_owner")
    assert problem["blocking"] == [
        {"type": "trip", "id": solo["id"], "name": "Solo"},
        {"type": "trip", "id": shared["id"], "name": "Shared"},
    ]
    assert client.get("/users/me", headers=support.auth(alice)).status_code == 200
    assert client.get("/sync", headers=support.auth(alice)).json()["trips"] == before

    # Once each is handed over or deleted, the account can go.
    handed = client.post(
        f"/trips/{shared['id']}/transfer-ownership",
        headers=support.auth(alice),
        json={"user_id": str(bob.id)},
    )
    assert handed.status_code in (200, 204), handed.text
    gone = client.delete(f"/trips/{solo['id']}", headers=support.auth(alice, if_match="*"))
    assert gone.status_code == 204, gone.text
    assert delete_account(client, alice).status_code == 204
    owners = session.exec(
        select(TripMember.trip_id).where(
            TripMember.role == Role.OWNER, TripMember.user_id == bob.id
        )
    ).all()
    assert {str(trip_id) for trip_id in owners} == {shared["id"], co_owned["id"]}


def test_a_wrong_password_deletes_nothing(client: TestClient, session: Session) -> None:
    bob = factories.make_user(session)
    support.assert_problem(delete_account(client, bob, "not my password"), 403, "wrong_password")
    support.assert_problem(
        client.request("DELETE", "/users/me", headers=support.auth(bob), json={}), 422
    )
    assert client.get("/users/me", headers=support.auth(bob)).status_code == 200
    session.refresh(bob)
    assert bob.deleted_at is None


def test_what_only_the_account_could_see_goes_with_it(client: TestClient, session: Session) -> None:
    alice, bob = factories.make_user(session), factories.make_user(session, full_name="Bob Leaving")
    trip = factories.create_trip(client, alice)
    factories.join(client, alice, trip["id"], bob, "editor")
    checklist = post(
        client, alice, f"/trips/{trip['id']}/checklists", {"kind": "packing", "title": "Bags"}
    )
    items = f"/trips/{trip['id']}/checklists/{checklist['id']}/items"
    private = post(client, bob, items, {"text": "Bob's secret", "private": True})
    shared = post(client, bob, items, {"text": "Tent"})
    keyed = client.patch(
        "/users/me",
        headers={**support.auth(bob), "Idempotency-Key": "rename-1"},
        json={"full_name": "Bob Renamed"},
    )
    assert keyed.status_code == 200, keyed.text
    assert session.exec(
        select(IdempotencyKey).where(IdempotencyKey.scope == user_scope(bob.id))
    ).all()

    assert delete_account(client, bob).status_code == 204

    listed = client.get(items, headers=support.auth(alice)).json()["items"]
    assert [item["id"] for item in listed] == [shared["id"]]  # others' rows stay
    session.expire_all()
    assert session.exec(select(Activity).where(Activity.visible_to == bob.id)).all() == []
    stored_items = session.execute(
        text("SELECT id FROM checklist_items WHERE id = :id"), {"id": private["id"]}
    ).all()
    assert stored_items == []
    assert (
        session.exec(select(IdempotencyKey).where(IdempotencyKey.scope == user_scope(bob.id))).all()
        == []
    )
    log = client.get(f"/trips/{trip['id']}/activity", headers=support.auth(alice)).json()
    entries = [(e["action"], e["summary"], e["actor_name"]) for e in log["items"]]
    assert ("member.added", f"{FORMER_MEMBER_NAME} as editor", FORMER_MEMBER_NAME) in entries
    assert ("member.account_deleted", "", FORMER_MEMBER_NAME) in entries
    assert "Bob" not in str(entries)


def test_mail_to_the_account_goes_unsent_and_unkept(client: TestClient, session: Session) -> None:
    alice, bob = factories.make_user(session), factories.make_user(session)
    trip = factories.create_trip(client, alice)
    factories.join(client, alice, trip["id"], bob, "viewer")  # an invitation mailed to Bob
    again = client.post(
        "/auth/register",
        json={"email": bob.email, "password": "another password", "full_name": "Not Bob"},
    )
    assert again.status_code == 202, again.text  # a notice mailed to Bob
    carol = factories.make_user(session)
    other = factories.create_trip(client, carol)
    factories.join(client, carol, other["id"], alice, "viewer")  # and one to Alice
    session.execute(  # the invitation to Bob went out already; the notice waits
        update(OutboxMessage)
        .where(col(OutboxMessage.recipient) == bob.email, col(OutboxMessage.kind) == "invitation")
        .values(status=OutboxStatus.SENT, sent_at=utcnow())
    )

    def kinds_to(address: str) -> list[str]:
        session.expire_all()
        rows = session.exec(select(OutboxMessage).where(OutboxMessage.recipient == address))
        return sorted(message.kind for message in rows)

    assert kinds_to(bob.email) == ["invitation", "registration_attempt"]
    address = bob.email

    assert delete_account(client, bob).status_code == 204

    assert kinds_to(address) == []  # neither sent nor kept
    assert kinds_to(alice.email) == ["invitation"]  # mail to others stays


def test_a_participant_with_no_records_is_removed_and_the_feed_says_so(
    client: TestClient, session: Session
) -> None:
    alice, bob = factories.make_user(session), factories.make_user(session)
    trip = factories.create_trip(client, alice)
    factories.join(client, alice, trip["id"], bob, "viewer")
    bob_pid = participant_of(client, alice, trip["id"], bob)
    since = next(
        int(state["version"])
        for state in client.get("/sync", headers=support.auth(alice)).json()["trips"]
        if state["trip_id"] == trip["id"]
    )

    assert delete_account(client, bob).status_code == 204

    assert bob_pid not in [p["id"] for p in support.participants(client, alice, trip["id"])]
    changes = client.get(
        f"/trips/{trip['id']}/changes", headers=support.auth(alice), params={"since": since}
    ).json()["changes"]
    deleted = {(c["entity"], c["id"]) for c in changes if c["op"] == "delete"}
    assert {("member", str(bob.id)), ("participant", bob_pid)} <= deleted


def test_a_participant_in_a_trip_left_earlier_becomes_a_former_member_too(
    client: TestClient, session: Session
) -> None:
    alice, bob = factories.make_user(session), factories.make_user(session, full_name="Bob Left")
    trip = factories.create_trip(client, alice)
    factories.join(client, alice, trip["id"], bob, "editor")
    bob_pid = participant_of(client, alice, trip["id"], bob)
    alice_pid = participant_of(client, alice, trip["id"], alice)
    post(
        client,
        alice,
        f"/trips/{trip['id']}/settlements",
        {
            "from_participant_id": alice_pid,
            "to_participant_id": bob_pid,
            "amount_minor": 500,
            "currency": "EUR",
            "settled_on": "2027-05-04",
        },
    )
    left = client.delete(
        f"/trips/{trip['id']}/members/{bob.id}", headers=support.auth(bob, if_match="*")
    )
    assert left.status_code == 204, left.text

    assert delete_account(client, bob).status_code == 204

    former = next(p for p in support.participants(client, alice, trip["id"]) if p["id"] == bob_pid)
    assert (former["name"], former["user_id"], former["is_guest"]) == (
        FORMER_MEMBER_NAME,
        None,
        True,
    )
    assert sum(row["balance_minor"] for row in balances(client, alice, trip["id"]).values()) == 0


@pytest.fixture
def committed_people(engine: Engine) -> Iterator[tuple[User, User]]:
    """Two committed accounts (the announcement is sent only at commit); cleaned up after."""
    with Session(engine, expire_on_commit=False) as session:
        alice, bob = factories.make_user(session), factories.make_user(session)
    yield alice, bob
    with engine.begin() as connection:
        connection.execute(text("DELETE FROM trips WHERE created_by = :u"), {"u": alice.id})
        for user in (alice, bob):
            connection.execute(text("DELETE FROM users WHERE id = :u"), {"u": user.id})
            # The invitations' mail, which no worker of the tests sends.
            connection.execute(
                text("DELETE FROM outbox_messages WHERE recipient = :e"), {"e": user.email}
            )


def test_live_sync_hears_that_the_account_left_each_trip(
    engine: Engine,
    committed_people: tuple[User, User],
    listening_connection: psycopg2.extensions.connection,
) -> None:
    alice, bob = committed_people
    client = TestClient(create_app())
    trips = [factories.create_trip(client, alice, name=name) for name in ("One", "Two")]
    for trip in trips:
        factories.join(client, alice, trip["id"], bob, "editor")
    support.received(listening_connection, 0.3)

    assert delete_account(client, bob).status_code == 204

    heard = support.received(listening_connection, 2)
    # Bob's sessions end with the account: their streams are told to stop.
    ended = [payload for payload in heard if payload.startswith("s:")]
    heard = [payload for payload in heard if not payload.startswith("s:")]
    assert ended, "the deleted account's sessions were not announced as ended"
    with Session(engine) as session:
        heads = {
            trip["id"]: session.get_one(Trip, uuid.UUID(trip["id"])).head_version for trip in trips
        }
    # Per trip, as a member's removal is announced: the new version, and access gone for Bob.
    assert sorted(heard) == sorted(
        payload
        for trip in trips
        for payload in (
            live.payload(trip["id"], heads[trip["id"]]),
            live.access_payload(uuid.UUID(trip["id"]), live.AccessChange.REMOVED, bob.id),
        )
    )


def test_every_account_hook_has_a_subscriber_or_the_app_does_not_start() -> None:
    assert user_hooks.unsubscribed() == []
    saved = list(user_hooks.account_deletable.subscribers)
    user_hooks.account_deletable.subscribers.clear()
    try:
        with pytest.raises(RuntimeError, match="account_deletable"):
            create_app()
    finally:
        user_hooks.account_deletable.subscribers.extend(saved)
