"""No mass assignment: fields a client may not set are rejected (422), and nothing changes."""

import uuid
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session

from tests import factories, support

FORBIDDEN = {
    "version": 99,
    "trip_id": str(uuid.uuid4()),
    "created_by": str(uuid.uuid4()),
    "created_at": "2020-01-01T00:00:00Z",
    "updated_at": "2020-01-01T00:00:00Z",
    "deleted_at": "2020-01-01T00:00:00Z",
    "head_version": 5,
    "role": "owner",
    "owner_id": str(uuid.uuid4()),
}


def _me(client: TestClient, user: Any, trip_id: str) -> str:
    people = client.get(f"/trips/{trip_id}/participants", headers=support.auth(user)).json()
    return next(p["id"] for p in people["items"] if p["user_id"] == str(user.id))


def _writes(
    client: TestClient, user: Any, trip: dict[str, Any]
) -> list[tuple[str, str, dict[str, Any]]]:
    base = f"/trips/{trip['id']}"
    item = factories.add_item(client, user, trip["id"], title="Item")
    me = _me(client, user, trip["id"])
    expense = {
        "title": "Taxi",
        "amount_minor": 1000,
        "currency": "EUR",
        "spent_on": "2027-05-01",
        "payers": [{"participant_id": me, "amount_minor": 1000}],
        "split_mode": "equal",
        "splits": [{"participant_id": me}],
    }
    return [
        ("POST", "/trips", {"name": "T", "start_date": "2027-01-01", "end_date": "2027-01-02"}),
        ("PATCH", base, {"name": "Renamed"}),
        ("POST", f"{base}/items", {"kind": "note", "title": "x"}),
        ("PATCH", f"{base}/items/{item['id']}", {"title": "y"}),
        ("POST", f"{base}/guests", {"name": "Gus"}),
        ("POST", f"{base}/checklists", {"kind": "todo", "title": "T"}),
        ("POST", f"{base}/expenses", expense),
        ("PATCH", "/users/me", {"full_name": "Me"}),
    ]


@pytest.mark.parametrize("field", sorted(FORBIDDEN))
def test_fields_a_client_may_not_set_are_rejected(
    client: TestClient, session: Session, field: str
) -> None:
    owner = factories.make_user(session)
    trip = factories.create_trip(client, owner)
    for method, path, body in _writes(client, owner, trip):
        before = client.get(f"/trips/{trip['id']}/snapshot", headers=support.auth(owner)).json()
        response = client.request(
            method,
            path,
            headers={**support.auth(owner), "If-Match": "*"},
            json={**body, field: FORBIDDEN[field]},
        )
        problem = support.assert_problem(response, 422, "validation_error")
        assert any(error["loc"][-1] == field for error in problem["errors"]), (method, path)
        after = client.get(f"/trips/{trip['id']}/snapshot", headers=support.auth(owner)).json()
        assert after == before, (method, path)
