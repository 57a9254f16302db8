"""Batches of offline writes: applied in order, each with its own result."""

import uuid

from fastapi.testclient import TestClient
from sqlmodel import Session, select

from app.itinerary.models import ItineraryItem
from tests import support
from tests.itinerary.factory import add_item, create_trip


def batch(client: TestClient, user, trip_id: str, *mutations: dict) -> list[dict]:  # type: ignore[no-untyped-def]
    response = client.post(
        f"/trips/{trip_id}/mutations",
        headers=support.auth(user),
        json={"mutations": list(mutations)},
    )
    assert response.status_code == 200, response.text
    return response.json()["results"]


def test_a_batch_applies_in_order_and_reports_each_write(
    client: TestClient, session: Session
) -> None:
    owner = support.make_user(session)
    trip = create_trip(client, owner)
    base = f"/trips/{trip['id']}"
    existing = add_item(client, owner, trip["id"], title="Existing")
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
        {"id": "f", "method": "POST", "path": f"{base}/mutations", "body": {"mutations": []}},
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
    owner, viewer = support.make_user(session), support.make_user(session)
    trip = create_trip(client, owner)
    support.join(client, owner, trip["id"], viewer, "viewer")
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
    owner, stranger = support.make_user(session), support.make_user(session)
    trip = create_trip(client, owner)
    response = client.post(
        f"/trips/{trip['id']}/mutations",
        headers=support.auth(stranger),
        json={"mutations": [{"id": "1", "method": "DELETE", "path": f"/trips/{trip['id']}"}]},
    )
    support.assert_problem(response, 404, "trip_not_found")
    assert client.get(f"/trips/{trip['id']}", headers=support.auth(owner)).status_code == 200


def test_a_batch_is_never_replayed_from_its_own_key(client: TestClient, session: Session) -> None:
    """The writes inside carry their own keys; the batch's answer is never stored."""
    owner = support.make_user(session)
    trip = create_trip(client, owner)
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

