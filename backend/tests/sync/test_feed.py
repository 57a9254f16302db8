"""The sync feed: versions, tombstones, snapshot + changes, resets, and what viewers see."""

import uuid

from fastapi.testclient import TestClient
from sqlmodel import Session, select

from app.sync.models import Tombstone
from app.trips.models import Trip
from tests import factories, support
from tests.sync.support import Replica, changes, snapshot


def test_every_write_takes_the_next_trip_version(client: TestClient, session: Session) -> None:
    owner = factories.make_user(session)
    trip = factories.create_trip(client, owner)
    assert trip["version"] == 1
    first = factories.add_item(client, owner, trip["id"], title="One")
    second = factories.add_item(client, owner, trip["id"], title="Two")
    head = session.exec(select(Trip.head_version).where(Trip.id == uuid.UUID(trip["id"]))).one()
    feed = changes(client, owner, trip["id"], 1)
    assert [(c["entity"], c["data"]["title"]) for c in feed["changes"]] == [
        ("item", "One"),
        ("item", "Two"),
    ]
    assert feed["changes"][0]["version"] < feed["changes"][1]["version"] == feed["version"] == head
    assert {first["id"], second["id"]} == {c["id"] for c in feed["changes"]}


def test_deletions_become_tombstones_in_the_feed(client: TestClient, session: Session) -> None:
    owner = factories.make_user(session)
    trip = factories.create_trip(client, owner)
    item = factories.add_item(client, owner, trip["id"], title="Gone soon")
    since = changes(client, owner, trip["id"], 0)["version"]
    assert (
        client.delete(
            f"/trips/{trip['id']}/items/{item['id']}", headers=support.auth(owner, if_match="*")
        ).status_code
        == 204
    )
    feed = changes(client, owner, trip["id"], since)
    assert [(c["entity"], c["id"], c["op"], c["data"]) for c in feed["changes"]] == [
        ("item", item["id"], "delete", None)
    ]
    stored = session.exec(
        select(Tombstone).where(Tombstone.entity_id == uuid.UUID(item["id"]))
    ).one()
    assert stored.version == feed["version"]


def test_snapshot_plus_changes_equals_a_fresh_snapshot(
    client: TestClient, session: Session
) -> None:
    owner, friend = factories.make_user(session), factories.make_user(session)
    trip = factories.create_trip(client, owner)
    replica = Replica(client, owner, trip["id"])
    base = f"/trips/{trip['id']}"
    items = [
        factories.add_item(client, owner, trip["id"], title=f"Item {n}", day="2027-05-02")
        for n in range(6)
    ]
    factories.join(client, owner, trip["id"], friend, "editor")
    client.patch(
        f"{base}/items/{items[0]['id']}",
        headers=support.auth(friend, if_match="*"),
        json={"title": "Renamed"},
    )
    client.post(
        f"{base}/items/{items[5]['id']}/move",
        headers=support.auth(friend),
        json={"day": "2027-05-02", "before_id": items[0]["id"]},
    )
    client.delete(f"{base}/items/{items[3]['id']}", headers=support.auth(owner, if_match="*"))
    client.post(f"{base}/guests", headers=support.auth(owner), json={"name": "Gus"})
    client.patch(base, headers=support.auth(owner, if_match="*"), json={"description": "Changed"})
    checklist = client.post(
        f"{base}/checklists", headers=support.auth(owner), json={"kind": "packing", "title": "Bags"}
    ).json()
    client.post(
        f"{base}/checklists/{checklist['id']}/items",
        headers=support.auth(owner),
        json={"text": "Socks"},
    )

    replica.pull(limit=2)  # small pages: a page never splits a version
    fresh = Replica(client, owner, trip["id"])
    assert replica.state() == fresh.state()
    assert replica.version == fresh.version


def test_a_page_never_splits_a_version(client: TestClient, session: Session) -> None:
    owner = factories.make_user(session)
    trip = factories.create_trip(client, owner)
    for n in range(3):
        factories.add_item(client, owner, trip["id"], title=f"Item {n}", day="2027-05-03")
    since = changes(client, owner, trip["id"], 0)["version"]
    # Shortening the trip moves all three items in one transaction: one version.
    client.patch(
        f"/trips/{trip['id']}",
        headers=support.auth(owner, if_match="*"),
        json={"end_date": "2027-05-02"},
    )
    page = changes(client, owner, trip["id"], since, limit=1)
    versions = {c["version"] for c in page["changes"]}
    assert len(versions) == 1
    assert len(page["changes"]) == 4  # the trip and its three items, all of that version
    assert page["has_more"] is False


def test_private_items_and_hidden_amounts_never_reach_others(
    client: TestClient, session: Session
) -> None:
    owner, viewer = factories.make_user(session), factories.make_user(session)
    trip = factories.create_trip(client, owner, hide_amounts_from_viewers=True)
    factories.join(client, owner, trip["id"], viewer, "viewer")
    base = f"/trips/{trip['id']}"
    checklist = client.post(
        f"{base}/checklists", headers=support.auth(owner), json={"kind": "todo", "title": "T"}
    ).json()
    secret = client.post(
        f"{base}/checklists/{checklist['id']}/items",
        headers=support.auth(owner),
        json={"text": "Surprise party", "private": True},
    ).json()
    me = next(
        p
        for p in client.get(f"{base}/participants", headers=support.auth(owner)).json()["items"]
        if p["user_id"] == str(owner.id)
    )
    client.post(
        f"{base}/expenses",
        headers=support.auth(owner),
        json={
            "title": "Dinner",
            "amount_minor": 4200,
            "currency": "EUR",
            "spent_on": "2027-05-01",
            "payers": [{"participant_id": me["id"], "amount_minor": 4200}],
            "split_mode": "equal",
            "splits": [{"participant_id": me["id"]}],
        },
    )
    for document in (snapshot(client, viewer, trip["id"]), changes(client, viewer, trip["id"], 0)):
        assert "Surprise party" not in str(document)
        # No value is the amount (a substring test would trip on an id or a timestamp).
        values = set(_leaves(document))
        assert not values & {4200, "4200", "42.00"}
    rows = snapshot(client, viewer, trip["id"])["rows"]
    expense = next(r["data"] for r in rows if r["entity"] == "expense")
    assert expense["amount_minor"] is None
    # The feed tells the viewer to drop the private item rather than showing it.
    feed = changes(client, viewer, trip["id"], 0)["changes"]
    assert {"entity": "checklist_item", "id": secret["id"], "op": "delete"}.items() <= next(
        c for c in feed if c["id"] == secret["id"]
    ).items()
    assert "4200" in str(snapshot(client, owner, trip["id"]))


def test_clients_are_told_to_reset(client: TestClient, session: Session) -> None:
    owner, friend = factories.make_user(session), factories.make_user(session)
    trip = factories.create_trip(client, owner)
    factories.join(client, owner, trip["id"], friend, "editor")
    since = snapshot(client, friend, trip["id"])["version"]
    url = f"/trips/{trip['id']}/changes"

    support.assert_problem(
        client.get(url, headers=support.auth(friend), params={"since": since + 5}),
        410,
        "cursor_ahead",
    )
    client.patch(
        f"/trips/{trip['id']}/members/{friend.id}",
        headers=support.auth(owner, if_match="*"),
        json={"role": "viewer"},
    )
    support.assert_problem(
        client.get(url, headers=support.auth(friend), params={"since": since}),
        410,
        "access_changed",
    )
    fresh = snapshot(client, friend, trip["id"])["version"]
    trip_row = session.get(Trip, uuid.UUID(trip["id"]))
    assert trip_row is not None
    trip_row.pruned_version = fresh + 1
    session.add(trip_row)
    session.commit()
    support.assert_problem(
        client.get(url, headers=support.auth(friend), params={"since": fresh}),
        410,
        "cursor_expired",
    )


def test_the_device_feed_lists_trips_and_what_was_lost(
    client: TestClient, session: Session
) -> None:
    owner, me = factories.make_user(session), factories.make_user(session)
    kept, left, deleted = (
        factories.create_trip(client, owner, name=n) for n in ("Kept", "Left", "Deleted")
    )
    for trip in (kept, left, deleted):
        factories.join(client, owner, trip["id"], me, "editor")
    first = client.get("/sync", headers=support.auth(me)).json()
    assert {t["name"]: t["status"] for t in first["trips"]} == {
        "Kept": "new",
        "Left": "new",
        "Deleted": "new",
    }

    factories.add_item(client, owner, kept["id"], title="New")
    client.delete(f"/trips/{left['id']}/members/{me.id}", headers=support.auth(owner, if_match="*"))
    client.delete(f"/trips/{deleted['id']}", headers=support.auth(owner, if_match="*"))
    second = client.get(
        "/sync", headers=support.auth(me), params={"cursor": first["cursor"]}
    ).json()
    assert [(t["name"], t["status"]) for t in second["trips"]] == [("Kept", "changed")]
    assert {r["trip_id"]: r["reason"] for r in second["removed"]} == {
        left["id"]: "access_lost",
        deleted["id"]: "deleted",
    }
    third = client.get(
        "/sync", headers=support.auth(me), params={"cursor": second["cursor"]}
    ).json()
    assert [(t["name"], t["status"]) for t in third["trips"]] == [("Kept", "unchanged")]
    assert third["removed"] == []
    # A cursor is bound to its user.
    support.assert_problem(
        client.get("/sync", headers=support.auth(owner), params={"cursor": third["cursor"]}),
        400,
        "invalid_cursor",
    )


def test_pruning_old_tombstones_makes_older_cursors_reset(
    client: TestClient, session: Session
) -> None:
    from datetime import timedelta

    from app.core.columns import utcnow
    from app.feed.service import prune_tombstones

    owner = factories.make_user(session)
    trip = factories.create_trip(client, owner)
    before = snapshot(client, owner, trip["id"])["version"]
    old, recent = (
        factories.add_item(client, owner, trip["id"], title=t) for t in ("old", "recent")
    )
    for item in (old, recent):
        client.delete(
            f"/trips/{trip['id']}/items/{item['id']}", headers=support.auth(owner, if_match="*")
        )
    aged = session.exec(select(Tombstone).where(Tombstone.entity_id == uuid.UUID(old["id"]))).one()
    aged.deleted_at = utcnow() - timedelta(days=100)
    session.add(aged)
    session.commit()

    assert prune_tombstones(session=session, now=utcnow(), limit=100) == 1
    session.commit()
    remaining = session.exec(
        select(Tombstone.entity_id).where(Tombstone.trip_id == uuid.UUID(trip["id"]))
    ).all()
    assert remaining == [uuid.UUID(recent["id"])]
    support.assert_problem(
        client.get(
            f"/trips/{trip['id']}/changes", headers=support.auth(owner), params={"since": before}
        ),
        410,
        "cursor_expired",
    )
    # A cursor from after the forgotten deletion still works.
    assert changes(client, owner, trip["id"], aged.version)["changes"]


def test_a_member_leaving_updates_their_participant_in_the_feed(
    client: TestClient, session: Session
) -> None:
    owner, friend = factories.make_user(session), factories.make_user(session)
    trip = factories.create_trip(client, owner)
    factories.join(client, owner, trip["id"], friend, "editor")
    since = snapshot(client, owner, trip["id"])["version"]
    client.delete(
        f"/trips/{trip['id']}/members/{friend.id}", headers=support.auth(friend, if_match="*")
    )
    feed = changes(client, owner, trip["id"], since)["changes"]
    assert {(c["entity"], c["op"]) for c in feed} == {
        ("member", "delete"),
        ("participant", "upsert"),
    }
    participant = next(c["data"] for c in feed if c["entity"] == "participant")
    assert (participant["user_id"], participant["is_member"]) == (str(friend.id), False)


def _leaves(document: object) -> list[object]:
    """Every scalar value inside a JSON document."""
    if isinstance(document, dict):
        return [leaf for value in document.values() for leaf in _leaves(value)]
    if isinstance(document, list):
        return [leaf for value in document for leaf in _leaves(value)]
    return [document]
