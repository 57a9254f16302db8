"""The activity log records who changed what, newest first, page by page."""

from fastapi.testclient import TestClient
from sqlmodel import Session

from tests import factories, support


def test_changes_are_logged_with_their_actor(client: TestClient, session: Session) -> None:
    owner, friend = factories.make_user(session, full_name="Olga"), factories.make_user(session)
    trip = factories.create_trip(client, owner)
    base = f"/trips/{trip['id']}"
    client.patch(base, headers=support.auth(owner, if_match="*"), json={"name": "Renamed"})
    factories.join(client, owner, trip["id"], friend, "viewer")
    client.post(f"{base}/guests", headers=support.auth(owner), json={"name": "Gus"})

    first = client.get(f"{base}/activity", headers=support.auth(friend), params={"limit": 3}).json()
    rest = client.get(
        f"{base}/activity", headers=support.auth(friend), params={"cursor": first["next_cursor"]}
    ).json()
    entries = first["items"] + rest["items"]
    assert [(e["action"], e["actor_name"]) for e in entries] == [
        ("guest.added", "Olga"),
        ("member.added", "Test User"),  # the friend joined by accepting
        ("invitation.sent", "Olga"),
        ("trip.updated", "Olga"),
        ("trip.created", "Olga"),
    ]
    assert entries[3]["summary"] == "name"
    assert friend.email not in str(entries)  # every member reads the log
    assert rest["next_cursor"] is None


def test_a_failed_change_leaves_no_entry(client: TestClient, session: Session) -> None:
    owner = factories.make_user(session)
    trip = factories.create_trip(client, owner)
    client.patch(
        f"/trips/{trip['id']}",
        headers=support.auth(owner, if_match="*"),
        json={"end_date": "2000-01-01"},
    )
    entries = client.get(f"/trips/{trip['id']}/activity", headers=support.auth(owner)).json()[
        "items"
    ]
    assert [e["action"] for e in entries] == ["trip.created"]
