"""Batches of offline writes: applied in order, each with its own result."""

import uuid

from fastapi.testclient import TestClient
from sqlmodel import Session, select

from app.itinerary.models import ItineraryItem
from tests import factories, support


def keyed(mutation: dict) -> dict:  # type: ignore[type-arg]
    """Every queued write carries an Idempotency-Key; a fresh one unless it has its own."""
    headers = {"Idempotency-Key": f"{mutation['id']}-{uuid.uuid4()}", **mutation.get("headers", {})}
    return {**mutation, "headers": headers}


def batch(client: TestClient, user, trip_id: str, *mutations: dict) -> list[dict]:  # type: ignore[no-untyped-def]
    response = client.post(
        f"/trips/{trip_id}/mutations",
        headers=support.auth(user),
        json={"mutations": [keyed(mutation) for mutation in mutations]},
    )
    assert response.status_code == 200, response.text
    return response.json()["results"]


def test_a_batch_applies_in_order_and_reports_each_write(
    client: TestClient, session: Session
) -> None:
    owner = factories.make_user(session)
    trip = factories.create_trip(client, owner)
    base = f"/trips/{trip['id']}"
    existing = factories.add_item(client, owner, trip["id"], title="Existing")
    results = batch(
        client,
        owner,
        trip["id"],
        {
            "id": "a",
            "method": "POST",
            "path": f"{base}/items",
            "body": {"kind": "note", "title": "First"},
        },
        {
            "id": "b",
            "method": "POST",
            "path": f"{base}/items",
            "body": {"kind": "party", "title": "Bad"},
        },
        {
            "id": "c",
            "method": "DELETE",
            "path": f"{base}/items/{existing['id']}",
            "headers": {"If-Match": f'"{existing["version"]}"'},
        },
        {
            "id": "d",
            "method": "DELETE",
            "path": f"{base}/items/{existing['id']}",
            "headers": {"If-Match": f'"{existing["version"]}"'},
        },
        {"id": "e", "method": "PATCH", "path": "/users/me", "body": {"full_name": "Hijack"}},
        {
            "id": "f",
            "method": "POST",
            "path": f"{base}/mutations",
            "body": {"mutations": [keyed({"id": "g", "method": "DELETE", "path": base})]},
        },
    )
    assert [(r["id"], r["result"], r["status"]) for r in results] == [
        ("a", "applied", 201),
        ("b", "rejected", 422),
        ("c", "applied", 204),
        ("d", "rejected", 404),
        ("e", "rejected", 400),
        ("f", "rejected", 400),
    ]
    assert results[0]["body"]["title"] == "First"
    assert results[1]["body"]["code"] == "validation_error"
    assert results[4]["body"]["code"] == "mutation_outside_trip"
    titles = session.exec(
        select(ItineraryItem.title).where(ItineraryItem.trip_id == uuid.UUID(trip["id"]))
    ).all()
    assert titles == ["First"]


def test_a_viewers_writes_are_refused_one_by_one(client: TestClient, session: Session) -> None:
    owner, viewer = factories.make_user(session), factories.make_user(session)
    trip = factories.create_trip(client, owner)
    factories.join(client, owner, trip["id"], viewer, "viewer")
    results = batch(
        client,
        viewer,
        trip["id"],
        {
            "id": "1",
            "method": "POST",
            "path": f"/trips/{trip['id']}/items",
            "body": {"kind": "note", "title": "x"},
        },
    )
    assert [(r["result"], r["status"], r["body"]["code"]) for r in results] == [
        ("rejected", 403, "read_only_member")
    ]


def test_a_batch_for_a_trip_i_am_not_in_is_404(client: TestClient, session: Session) -> None:
    owner, stranger = factories.make_user(session), factories.make_user(session)
    trip = factories.create_trip(client, owner)
    trip_path = f"/trips/{trip['id']}"
    response = client.post(
        f"{trip_path}/mutations",
        headers=support.auth(stranger),
        json={
            "mutations": [keyed({"id": "1", "method": "DELETE", "path": f"/trips/{trip['id']}"})]
        },
    )
    support.assert_problem(response, 404, "trip_not_found")
    assert client.get(f"/trips/{trip['id']}", headers=support.auth(owner)).status_code == 200


def test_a_batch_is_never_replayed_from_its_own_key(client: TestClient, session: Session) -> None:
    """The writes inside carry their own keys; the batch's answer is never stored."""
    owner = factories.make_user(session)
    trip = factories.create_trip(client, owner)
    body = {
        "mutations": [
            {
                "id": "1",
                "method": "POST",
                "path": f"/trips/{trip['id']}/items",
                "headers": {"Idempotency-Key": "item-1"},
                "body": {"kind": "note", "title": "Once"},
            }
        ]
    }
    headers = {**support.auth(owner), "Idempotency-Key": "batch-1"}
    first = client.post(f"/trips/{trip['id']}/mutations", headers=headers, json=body)
    second = client.post(f"/trips/{trip['id']}/mutations", headers=headers, json=body)
    assert first.headers["cache-control"] == "no-store"
    assert "idempotent-replayed" not in second.headers
    assert second.json()["results"][0]["body"] == first.json()["results"][0]["body"]
    titles = session.exec(
        select(ItineraryItem.title).where(ItineraryItem.trip_id == uuid.UUID(trip["id"]))
    ).all()
    assert titles == ["Once"]


def test_queued_writes_made_offline_meet_the_server_state(
    client: TestClient, session: Session
) -> None:
    """Ids the device chose make its creates replayable; edits carry the version they were
    based on, and one that another device overtook comes back as a conflict with the news."""
    owner, friend = factories.make_user(session), factories.make_user(session)
    trip = factories.create_trip(client, owner)
    factories.join(client, owner, trip["id"], friend, "editor")
    base = f"/trips/{trip['id']}"
    item = factories.add_item(client, owner, trip["id"], title="Lunch")
    item_id = str(uuid.uuid4())
    queue = [
        {
            "id": "new",
            "method": "POST",
            "path": f"{base}/items",
            "body": {"id": item_id, "kind": "note", "title": "Made offline"},
        },
        {
            "id": "edit",
            "method": "PATCH",
            "path": f"{base}/items/{item['id']}",
            "headers": {"If-Match": f'"{item["version"]}"'},
            "body": {"title": "Late lunch"},
        },
    ]
    # Meanwhile another device renamed the item.
    renamed = client.patch(
        f"{base}/items/{item['id']}",
        headers=support.auth(friend, if_match=item["version"]),
        json={"title": "Brunch"},
    )
    first = batch(client, owner, trip["id"], *queue)
    assert [(r["id"], r["result"], r["status"]) for r in first] == [
        ("new", "applied", 201),
        ("edit", "conflict", 412),
    ]
    assert first[0]["etag"] == f'"{first[0]["body"]["version"]}"'
    assert first[1]["body"]["current"] == renamed.json()
    assert first[1]["etag"] == renamed.headers["etag"]
    # The same queue sent again (the answer was lost): the create is a replay, not a copy.
    again = batch(client, owner, trip["id"], queue[0])
    assert (again[0]["result"], again[0]["status"]) == ("applied", 200)
    assert again[0]["body"] == first[0]["body"]


def test_a_batch_needs_a_key_on_every_write_and_unique_ids(
    client: TestClient, session: Session
) -> None:
    owner = factories.make_user(session)
    trip = factories.create_trip(client, owner)
    path = f"/trips/{trip['id']}/items"
    write = {"id": "a", "method": "POST", "path": path, "body": {"kind": "note", "title": "x"}}
    for mutations in (
        [write],  # no Idempotency-Key
        [keyed(write), keyed(write)],  # the same id twice
    ):
        response = client.post(
            f"/trips/{trip['id']}/mutations",
            headers=support.auth(owner),
            json={"mutations": mutations},
        )
        support.assert_problem(response, 422, "validation_error")
    items = client.get(path, headers=support.auth(owner)).json()["items"]
    assert items == []
