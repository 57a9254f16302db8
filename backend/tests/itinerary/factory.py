"""Helpers for itinerary tests: trips, participants and items made through the API."""

from typing import Any

from fastapi.testclient import TestClient

from app.users.models import User
from tests import support

TRIP = {
    "name": "Lisbon and Tokyo",
    "start_date": "2027-05-01",
    "end_date": "2027-05-07",
    "timezone": "Europe/Lisbon",
}


def create_trip(client: TestClient, user: User, **changes: object) -> dict[str, Any]:
    response = client.post("/trips", headers=support.auth(user), json={**TRIP, **changes})
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


def participant_ids(client: TestClient, user: User, trip_id: str) -> list[str]:
    response = client.get(f"/trips/{trip_id}/participants", headers=support.auth(user))
    return [participant["id"] for participant in response.json()["items"]]


def add_guest(client: TestClient, user: User, trip_id: str, name: str = "Guest") -> str:
    response = client.post(
        f"/trips/{trip_id}/guests", headers=support.auth(user), json={"name": name}
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def add_item(client: TestClient, user: User, trip_id: str, **fields: object) -> dict[str, Any]:
    body = {"kind": "activity", "title": "Something", **fields}
    response = client.post(f"/trips/{trip_id}/items", headers=support.auth(user), json=body)
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


def list_items(client: TestClient, user: User, trip_id: str, **params: str) -> list[Any]:
    response = client.get(
        f"/trips/{trip_id}/items", headers=support.auth(user), params={"limit": 100, **params}
    )
    assert response.status_code == 200, response.text
    return response.json()["items"]  # type: ignore[no-any-return]


def titles(items: list[Any]) -> list[str]:
    return [item["title"] for item in items]
