"""GET /users/me/export: everything stored about the caller, nothing private of anyone else,
streamed as it is read."""

import json
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlmodel import Session

from app.core.config import get_settings
from app.users import export
from app.users.models import User
from tests import factories, support


def post(client: TestClient, user: User, path: str, body: dict[str, Any]) -> dict[str, Any]:
    response = client.post(path, headers=support.auth(user), json=body)
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


def exported(client: TestClient, user: User) -> dict[str, Any]:
    response = client.get("/users/me/export", headers=support.auth(user))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["content-disposition"].startswith("attachment")
    return response.json()  # type: ignore[no-any-return]


def ids(rows: list[dict[str, Any]], key: str = "id") -> set[str]:
    return {row[key] for row in rows}


def test_the_export_holds_the_callers_rows_and_no_one_elses_private_data(
    client: TestClient, session: Session
) -> None:
    alice = factories.make_user(session, full_name="Alice Exporter")
    bob = factories.make_user(session, full_name="Bob Zyxwvut")
    carol = factories.make_user(session, full_name="Carol Elsewhere")
    trip = factories.create_trip(client, alice, name="Shared trip")
    factories.join(client, alice, trip["id"], bob, "editor")
    elsewhere = factories.create_trip(client, carol, name="Carol's own trip")
    base = f"/trips/{trip['id']}"
    by_user = {p["user_id"]: p["id"] for p in support.participants(client, alice, trip["id"])}
    alice_pid, bob_pid = by_user[str(alice.id)], by_user[str(bob.id)]
    guest_pid = factories.add_guest(client, bob, trip["id"], "Gus")

    def expense(user: User, title: str, payer: str, sharers: list[str]) -> dict[str, Any]:
        return post(
            client,
            user,
            f"{base}/expenses",
            {
                "title": title,
                "category": "food",
                "amount_minor": 6000,
                "currency": "EUR",
                "spent_on": "2027-05-02",
                "payers": [{"participant_id": payer, "amount_minor": 6000}],
                "split_mode": "equal",
                "splits": [{"participant_id": pid} for pid in sharers],
            },
        )

    shared = expense(bob, "Shared dinner", bob_pid, [alice_pid, bob_pid])
    paid = expense(alice, "Alice pays for Gus", alice_pid, [guest_pid])
    bobs_own = expense(bob, "Bob and Gus only", bob_pid, [bob_pid, guest_pid])
    settlement = post(
        client,
        alice,
        f"{base}/settlements",
        {
            "from_participant_id": alice_pid,
            "to_participant_id": bob_pid,
            "amount_minor": 3000,
            "currency": "EUR",
            "settled_on": "2027-05-03",
        },
    )
    item = factories.add_item(client, alice, trip["id"], title="Alice's museum")
    bobs_item = factories.add_item(client, bob, trip["id"], title="Bob's bar")
    checklist = post(client, alice, f"{base}/checklists", {"kind": "packing", "title": "Bags"})
    items_path = f"{base}/checklists/{checklist['id']}/items"
    mine = post(client, alice, items_path, {"text": "Alice's passport", "private": True})
    post(client, bob, items_path, {"text": "Bob's hidden thing", "private": True})
    link = factories.create_invite_link(client, alice, trip["id"])
    share_link = post(client, alice, f"{base}/share-links", {"scope": "itinerary"})
    post(client, carol, f"/trips/{elsewhere['id']}/share-links", {})  # Carol's: not Alice's
    invited = client.post(
        f"/trips/{elsewhere['id']}/invitations",
        headers=support.auth(carol),
        json={"email": alice.email, "role": "viewer"},
    )
    assert invited.status_code == 201, invited.text

    phone = client.post(
        "/auth/login",
        data={"username": alice.email, "password": support.PASSWORD, "device_label": "Phone"},
    )
    assert phone.status_code == 200, phone.text
    support.auth(bob)  # Bob has a session too: not Alice's to see

    document = exported(client, alice)

    assert document["format"] == "tripsync-account-export/1"
    assert document["account"] == {**document["account"], "id": str(alice.id), "email": alice.email}
    assert document["memberships"] == [
        {**document["memberships"][0], "trip_id": trip["id"], "trip_name": "Shared trip"}
    ]
    assert ids(document["participants"]) == {alice_pid}
    shares = {row["expense_id"]: row for row in document["expense_shares"]}
    assert set(shares) == {shared["id"], paid["id"]}  # not Bob's expense without her
    assert {row["category"] for row in shares.values()} == {"food"}
    assert (shares[shared["id"]]["paid_minor"], shares[shared["id"]]["share_minor"]) == (None, 3000)
    assert (shares[paid["id"]]["paid_minor"], shares[paid["id"]]["share_minor"]) == (6000, None)
    assert [(s["id"], s["direction"]) for s in document["settlements"]] == [
        (settlement["id"], "paid")
    ]
    assert ids(document["itinerary_items"]) == {item["id"]}
    assert ids(document["checklists"]) == {checklist["id"]}
    assert ids(document["checklist_items"]) == {mine["id"]}
    assert ids(document["invite_links"]) == {link["id"]}
    assert "token" not in json.dumps(document["invite_links"])
    assert ids(document["share_links"]) == {share_link["id"]}
    assert share_link["token"] not in json.dumps(document)
    assert [i["trip_name"] for i in document["invitations_received"]] == ["Carol's own trip"]
    # Her signed-in devices (the tests' own session and the phone), never a token or its hash.
    assert sorted(row["device_label"] for row in document["sessions"]) == ["Phone", "Test client"]
    assert all(
        set(row) == {"id", "device_label", "created_at", "last_used_at"}
        for row in document["sessions"]
    )
    assert phone.json()["refresh_token"] not in json.dumps(document)
    # Mail to her address (Carol's invitation), by kind and time: never its text or subject.
    assert [(m["kind"], m["status"]) for m in document["mail"]] == [("invitation", "pending")]
    assert set(document["mail"][0]) == {"id", "kind", "status", "created_at", "sent_at"}
    # Alice sent Bob's invitation: the address she typed is hers to see, and only there.
    assert [i["email"] for i in document["invitations_sent"]] == [bob.email]
    actions = {entry["action"] for entry in document["activity"]}
    assert {"trip.created", "expense.created", "invite_link.created"} <= actions
    assert "member.added" not in actions or all(
        entry["object_id"] == str(alice.id)
        for entry in document["activity"]
        if entry["action"] == "member.added"
    )

    text = json.dumps({k: v for k, v in document.items() if k != "invitations_sent"})
    for private in (
        bob.email,
        "Zyxwvut",  # Bob's name
        "Bob's hidden thing",  # his private checklist item
        "Bob and Gus only",  # an expense she has no part in
        bobs_own["id"],
        bobs_item["id"],
        carol.email,
        "Carol Elsewhere",
        str(support.session_of(bob)),
    ):
        assert private not in text, private


def test_amounts_hidden_from_viewers_stay_hidden_in_their_export(
    client: TestClient, session: Session
) -> None:
    owner, viewer = factories.make_user(session), factories.make_user(session)
    trip = factories.create_trip(client, owner)
    factories.join(client, owner, trip["id"], viewer, "editor")
    by_user = {p["user_id"]: p["id"] for p in support.participants(client, owner, trip["id"])}
    post(
        client,
        owner,
        f"/trips/{trip['id']}/expenses",
        {
            "title": "Hotel",
            "amount_minor": 20000,
            "currency": "EUR",
            "spent_on": "2027-05-02",
            "payers": [{"participant_id": by_user[str(owner.id)], "amount_minor": 20000}],
            "split_mode": "equal",
            "splits": [{"participant_id": pid} for pid in by_user.values()],
        },
    )
    assert exported(client, viewer)["expense_shares"][0]["share_minor"] == 10000
    for path, body in (
        (f"/trips/{trip['id']}", {"hide_amounts_from_viewers": True}),
        (f"/trips/{trip['id']}/members/{viewer.id}", {"role": "viewer"}),
    ):
        changed = client.patch(path, headers=support.auth(owner, if_match="*"), json=body)
        assert changed.status_code == 200, changed.text

    [share] = exported(client, viewer)["expense_shares"]
    assert (share["title"], share["amount_minor"], share["share_minor"]) == ("Hotel", None, None)


def test_the_document_is_written_as_it_is_read(
    client: TestClient, session: Session, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    small = get_settings().model_copy(update={"EXPORT_BATCH_ROWS": 2})
    monkeypatch.setattr(export, "get_settings", lambda: small)
    monkeypatch.setattr(export, "CHUNK_BYTES", 512)
    alice = factories.make_user(session)
    trip = factories.create_trip(client, alice)
    for number in range(20):
        factories.add_item(client, alice, trip["id"], kind="note", title=f"Note {number}")

    with support.counted_statements(engine) as statements:
        chunks = export.stream_document(session, alice)
        first = next(chunks)
        read_before_first_chunk = len(statements)
        rest = list(chunks)
    # Nothing was read up front: the first chunk left before most sections were queried.
    assert read_before_first_chunk < len(statements)
    assert len(rest) >= 3
    assert all(len(chunk) < 2 * 512 for chunk in rest[:-1])
    document = json.loads(b"".join([first, *rest]))
    assert len(document["itinerary_items"]) == 20
    assert document == {
        **exported(client, alice),
        "exported_at": document["exported_at"],
    }


def test_a_deleted_account_has_nothing_to_export(client: TestClient, session: Session) -> None:
    bob = factories.make_user(session)
    token = support.auth(bob)
    deleted = client.request(
        "DELETE", "/users/me", headers=token, json={"password": support.PASSWORD}
    )
    assert deleted.status_code == 204, deleted.text
    support.assert_problem(client.get("/users/me/export", headers=token), 401, "invalid_token")
