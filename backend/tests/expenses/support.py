"""Shared by the expense tests: the four-person trip they use and the settle-up plan's checks."""

import uuid
from dataclasses import dataclass
from typing import Any

from fastapi.testclient import TestClient
from sqlmodel import Session

from app.expenses import ledger
from app.users.models import User
from tests import factories, support


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


def check_settles(balances: dict[uuid.UUID, int]) -> list[ledger.Transfer]:
    """The plan's properties, shared with the database-backed test."""
    assert sum(balances.values()) == 0
    plan = ledger.settle_up(balances)
    owing = sum(1 for amount in balances.values() if amount != 0)
    assert len(plan) <= max(owing - 1, 0)
    after = dict(balances)
    for transfer in plan:
        assert transfer.amount_minor > 0
        assert balances[transfer.from_participant_id] < 0 < balances[transfer.to_participant_id]
        after[transfer.from_participant_id] += transfer.amount_minor
        after[transfer.to_participant_id] -= transfer.amount_minor
    assert set(after.values()) <= {0}
    return plan


def make_ledger(client: TestClient, session: Session) -> Ledger:
    """A trip with an owner, an editor, a viewer and a guest, built through the API."""
    owner = factories.make_user(session, full_name="Olivia Owner")
    editor = factories.make_user(session, full_name="Eddie Editor")
    viewer = factories.make_user(session, full_name="Vera Viewer")
    trip = factories.create_trip(client, owner)
    factories.join(client, owner, trip["id"], editor, "editor")
    factories.join(client, owner, trip["id"], viewer, "viewer")
    guest_pid = factories.add_guest(client, owner, trip["id"], "Gus Guest")
    by_user = {p["user_id"]: p["id"] for p in support.participants(client, owner, trip["id"])}
    return Ledger(
        trip_id=trip["id"],
        owner=owner,
        editor=editor,
        viewer=viewer,
        owner_pid=by_user[str(owner.id)],
        editor_pid=by_user[str(editor.id)],
        viewer_pid=by_user[str(viewer.id)],
        guest_pid=guest_pid,
    )
