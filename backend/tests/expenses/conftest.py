"""A trip with an owner, an editor, a viewer and a guest, built through the API."""

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session

from tests import factories, support
from tests.expenses.support import Ledger


@pytest.fixture
def ledger(client: TestClient, session: Session) -> Ledger:
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
