"""A trip with an owner, an editor, a viewer and a guest, built through the API."""

from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session

from app.users.models import User
from tests import support


@dataclass(frozen=True)
class Ledger:
    trip_id: str
    owner: User
    editor: User
    viewer: User
    # Participant ids (the viewer is a participant too: anyone in the trip can owe).
    owner_pid: str
    editor_pid: str
    viewer_pid: str
    guest_pid: str

    def url(self, path: str = "") -> str:
        return f"/trips/{self.trip_id}{path}"

    def expense(self, **changes: Any) -> dict[str, Any]:
        """A valid body: the owner paid 90.00 EUR, shared equally by owner, editor and guest."""
        body: dict[str, Any] = {
            "title": "Dinner",
            "amount_minor": 9000,
            "currency": "EUR",
            "spent_on": "2027-05-02",
            "payers": [{"participant_id": self.owner_pid, "amount_minor": 9000}],
            "split_mode": "equal",
            "splits": [
                {"participant_id": pid} for pid in (self.owner_pid, self.editor_pid, self.guest_pid)
            ],
        }
        return {**body, **changes}


def create_trip(client: TestClient, owner: User, **changes: Any) -> dict[str, Any]:
    trip = {"name": "Lisbon", "start_date": "2027-05-01", "end_date": "2027-05-07", **changes}
    response = client.post("/trips", headers=support.auth(owner), json=trip)
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


def participants(client: TestClient, trip_id: str, user: User) -> list[dict[str, Any]]:
    response = client.get(f"/trips/{trip_id}/participants", headers=support.auth(user))
    assert response.status_code == 200, response.text
    return response.json()["items"]  # type: ignore[no-any-return]


def add_member(client: TestClient, trip_id: str, owner: User, user: User, role: str) -> None:
    support.join(client, owner, trip_id, user, role)


@pytest.fixture
def ledger(client: TestClient, session: Session) -> Ledger:
    owner = support.make_user(session, full_name="Olivia Owner")
    editor = support.make_user(session, full_name="Eddie Editor")
    viewer = support.make_user(session, full_name="Vera Viewer")
    trip = create_trip(client, owner)
    add_member(client, trip["id"], owner, editor, "editor")
    add_member(client, trip["id"], owner, viewer, "viewer")
    guest = client.post(
        f"/trips/{trip['id']}/guests", headers=support.auth(owner), json={"name": "Gus Guest"}
    )
    assert guest.status_code == 201, guest.text
    by_user = {p["user_id"]: p["id"] for p in participants(client, trip["id"], owner)}
    return Ledger(
        trip_id=trip["id"],
        owner=owner,
        editor=editor,
        viewer=viewer,
        owner_pid=by_user[str(owner.id)],
        editor_pid=by_user[str(editor.id)],
        viewer_pid=by_user[str(viewer.id)],
        guest_pid=guest.json()["id"],
    )
