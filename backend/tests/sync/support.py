"""Shared by the sync tests: reading the feed, and a replica built only from it."""

from typing import Any

from fastapi.testclient import TestClient

from app.users.models import User
from tests import support


def changes(client: TestClient, user: User, trip_id: str, since: int, **params: Any) -> Any:
    """One page of the trip's changes after version `since`."""
    response = client.get(
        f"/trips/{trip_id}/changes", headers=support.auth(user), params={"since": since, **params}
    )
    assert response.status_code == 200, response.text
    return response.json()


def snapshot(client: TestClient, user: User, trip_id: str) -> Any:
    """The trip's snapshot as `user` sees it."""
    response = client.get(f"/trips/{trip_id}/snapshot", headers=support.auth(user))
    assert response.status_code == 200, response.text
    return response.json()


class Replica:
    """A client's local copy, built only from a snapshot and the changes after it."""

    def __init__(self, client: TestClient, user: User, trip_id: str) -> None:
        self.client, self.user, self.trip_id = client, user, trip_id
        taken = snapshot(client, user, trip_id)
        self.version = taken["version"]
        self.rows = {(r["entity"], r["id"]): (r["version"], r["data"]) for r in taken["rows"]}

    def pull(self, limit: int = 500) -> None:
        while True:
            page = changes(self.client, self.user, self.trip_id, self.version, limit=limit)
            for change in page["changes"]:
                key = (change["entity"], change["id"])
                if change["op"] == "delete":
                    self.rows.pop(key, None)
                elif key not in self.rows or self.rows[key][0] <= change["version"]:
                    self.rows[key] = (change["version"], change["data"])
            assert page["version"] >= self.version
            self.version = page["version"]
            if not page["has_more"]:
                return

    def state(self) -> dict[tuple[str, str], Any]:
        return {key: data for key, (_, data) in self.rows.items()}
