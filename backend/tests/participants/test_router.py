"""Participants: members appear on joining; guests are added, renamed, removed and claimed."""

import uuid

from fastapi.testclient import TestClient
from sqlmodel import Session

from app.participants.models import Participant
from app.trips.models import Role, TripMember
from tests import factories, support


def test_members_and_guests_are_participants(client: TestClient, session: Session) -> None:
    owner = factories.make_user(session, full_name="Olga")
    trip = factories.create_trip(client, owner)
    guest = client.post(
        f"/trips/{trip['id']}/guests", headers=support.auth(owner), json={"name": " Gus "}
    )
    assert guest.status_code == 201, guest.text
    assert guest.json()["is_guest"] is True
    assert [
        (p["name"], p["is_guest"], p["is_member"])
        for p in support.participants(client, owner, trip["id"])
    ] == [
        ("Olga", False, True),
        ("Gus", True, False),
    ]
    renamed = client.patch(
        f"/trips/{trip['id']}/guests/{guest.json()['id']}",
        headers=support.auth(owner, if_match=guest.json()["version"]),
        json={"name": "Gustav"},
    )
    assert renamed.json()["name"] == "Gustav"
    assert renamed.headers["etag"] == f'"{renamed.json()["version"]}"'
    support.assert_problem(
        client.post(f"/trips/{trip['id']}/guests", headers=support.auth(owner), json={"name": ""}),
        422,
    )


def test_members_are_not_guests(client: TestClient, session: Session) -> None:
    owner = factories.make_user(session)
    trip = factories.create_trip(client, owner)
    me = support.participants(client, owner, trip["id"])[0]
    headers = support.auth(owner, if_match="*")
    support.assert_problem(
        client.delete(f"/trips/{trip['id']}/guests/{me['id']}", headers=headers),
        409,
        "not_a_guest",
    )
    support.assert_problem(
        client.delete(f"/trips/{trip['id']}/guests/{uuid.uuid4()}", headers=headers),
        404,
        "participant_not_found",
    )


def test_a_member_claims_a_guest(client: TestClient, session: Session) -> None:
    owner, friend = factories.make_user(session), factories.make_user(session, full_name="Fran")
    trip = factories.create_trip(client, owner)
    guest = client.post(
        f"/trips/{trip['id']}/guests", headers=support.auth(owner), json={"name": "F."}
    ).json()
    factories.join(client, owner, trip["id"], friend, "editor")
    claimed = client.post(
        f"/trips/{trip['id']}/guests/{guest['id']}/claim", headers=support.auth(friend)
    )
    assert claimed.status_code == 200, claimed.text
    assert claimed.json() == {
        "id": guest["id"],
        "name": "Fran",
        "user_id": str(friend.id),
        "is_guest": False,
        "is_member": True,
        "version": claimed.json()["version"],
    }
    assert claimed.json()["version"] > guest["version"]
    # The friend's own (empty) participant was merged away: one participant per person.
    mine = [
        p for p in support.participants(client, owner, trip["id"]) if p["user_id"] == str(friend.id)
    ]
    assert [p["id"] for p in mine] == [guest["id"]]
    support.assert_problem(
        client.post(f"/trips/{trip['id']}/guests/{guest['id']}/claim", headers=support.auth(owner)),
        409,
        "not_a_guest",
    )


def test_participants_stay_when_a_member_leaves(client: TestClient, session: Session) -> None:
    owner, friend = factories.make_user(session), factories.make_user(session)
    trip = factories.create_trip(client, owner)
    session.add(TripMember(trip_id=uuid.UUID(trip["id"]), user_id=friend.id, role=Role.VIEWER))
    session.add(Participant(trip_id=uuid.UUID(trip["id"]), user_id=friend.id, name="Friend"))
    session.commit()
    left = client.delete(
        f"/trips/{trip['id']}/members/{friend.id}", headers=support.auth(friend, if_match="*")
    )
    assert left.status_code == 204, left.text
    after = [
        p for p in support.participants(client, owner, trip["id"]) if p["user_id"] == str(friend.id)
    ]
    assert [(p["is_member"], p["is_guest"]) for p in after] == [(False, False)]
