"""Trips and members: behaviour, validation and the rules of who may do what."""

import uuid
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session, col, delete, select

from app.trips.models import Role, Trip, TripMember
from app.users.models import UserSession
from tests import factories, support


def test_create_get_update_delete(client: TestClient, session: Session) -> None:
    owner = factories.make_user(session)
    trip = factories.create_trip(client, owner)
    assert trip["role"] == "owner"
    assert trip["timezone"] == "Europe/Lisbon"

    fetched = client.get(f"/trips/{trip['id']}", headers=support.auth(owner))
    assert fetched.json() == trip

    updated = client.patch(
        f"/trips/{trip['id']}",
        headers=support.auth(owner, if_match=trip["version"]),
        json={"name": "Porto"},
    ).json()
    assert updated["name"] == "Porto"
    assert updated["destination"] == "Portugal"
    assert updated["updated_at"] > trip["updated_at"]

    deleted = client.delete(
        f"/trips/{trip['id']}", headers=support.auth(owner, if_match=updated["version"])
    )
    assert deleted.status_code == 204
    support.assert_problem(
        client.get(f"/trips/{trip['id']}", headers=support.auth(owner)), 404, "trip_not_found"
    )
    assert session.get(TripMember, (uuid.UUID(trip["id"]), owner.id)) is None


@pytest.mark.parametrize(
    "changes",
    [
        {"end_date": "2027-04-30"},
        {"end_date": "2028-05-07"},
        {"timezone": "Mars/Olympus"},
        {"timezone": "../../etc/passwd"},
        {"timezone": "localtime"},
        {"base_currency": "XXX"},
        {"base_currency": "DEM"},
        {"base_currency": "eur"},
        {"name": "   "},
        {"start_date": "2027-02-30"},
        {"start_date": "10000-01-01"},
        {"owner_id": str(uuid.uuid4())},
        {"description": "x" * 5001},
        {"name": "Robert'); DROP TABLE trips;--\x00"},
    ],
)
def test_invalid_trips_are_422_and_store_nothing(
    client: TestClient, session: Session, changes: dict[str, object]
) -> None:
    owner = factories.make_user(session)
    response = client.post(
        "/trips", headers=support.auth(owner), json={**factories.TRIP, **changes}
    )
    support.assert_problem(response, 422)
    assert session.exec(select(Trip).where(Trip.created_by == owner.id)).first() is None


def test_sql_looking_text_is_just_text(client: TestClient, session: Session) -> None:
    owner = factories.make_user(session)
    name = "Robert'); DROP TABLE trips;--"
    assert factories.create_trip(client, owner, name=name)["name"] == name
    assert session.exec(select(Trip).where(Trip.name == name)).one()


@pytest.mark.parametrize(
    "patch",
    [{"end_date": "2027-04-01"}, {"start_date": "2027-06-01"}, {"name": None}, {"id": "x"}],
)
def test_invalid_updates_change_nothing(
    client: TestClient, session: Session, patch: dict[str, object]
) -> None:
    owner = factories.make_user(session)
    trip = factories.create_trip(client, owner)
    response = client.patch(
        f"/trips/{trip['id']}", headers=support.auth(owner, if_match="*"), json=patch
    )
    support.assert_problem(response, 422)
    assert client.get(f"/trips/{trip['id']}", headers=support.auth(owner)).json() == trip


def test_list_only_my_trips_with_their_roles(client: TestClient, session: Session) -> None:
    me, other = factories.make_user(session), factories.make_user(session)
    mine = factories.create_trip(client, me, name="Mine")
    shared = factories.create_trip(client, other, name="Shared")
    factories.create_trip(client, other, name="Not mine")
    factories.add_member(session, shared["id"], me, Role.VIEWER)

    page = client.get("/trips", headers=support.auth(me)).json()
    assert [(t["name"], t["role"]) for t in page["items"]] == [
        ("Shared", "viewer"),
        ("Mine", "owner"),
    ]
    assert page["next_cursor"] is None
    assert mine["id"] in {t["id"] for t in page["items"]}


def test_pages_cover_every_trip_once(client: TestClient, session: Session) -> None:
    me = factories.make_user(session)
    created = {factories.create_trip(client, me, name=f"T{i}")["id"] for i in range(7)}
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        page = client.get("/trips", headers=support.auth(me), params=params).json()
        seen += [t["id"] for t in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen)) == 7
    assert set(seen) == created


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"limit": 101}, "validation_error"),
        ({"limit": 0}, "validation_error"),
        ({"cursor": "garbage"}, "invalid_cursor"),
        ({"cursor": "eyJhIjoxfQ.AAAA"}, "invalid_cursor"),
        ({"cursor": "x" * 600}, "validation_error"),
    ],
)
def test_bad_page_parameters(
    client: TestClient, session: Session, params: dict[str, Any], code: str
) -> None:
    me = factories.make_user(session)
    response = client.get("/trips", headers=support.auth(me), params=params)
    assert response.status_code in (400, 422)
    support.assert_problem(response, response.status_code, code)


def test_a_forged_cursor_is_refused(client: TestClient, session: Session) -> None:
    me = factories.make_user(session)
    for i in range(3):
        factories.create_trip(client, me, name=f"T{i}")
    cursor = client.get("/trips", headers=support.auth(me), params={"limit": 1}).json()[
        "next_cursor"
    ]
    payload, signature = cursor.split(".")
    forged = payload[:-2] + ("AA" if payload[-2:] != "AA" else "BB") + "." + signature
    response = client.get("/trips", headers=support.auth(me), params={"cursor": forged})
    support.assert_problem(response, 400, "invalid_cursor")


def test_malformed_ids_are_422(client: TestClient, session: Session) -> None:
    me = factories.make_user(session)
    support.assert_problem(client.get("/trips/not-a-uuid", headers=support.auth(me)), 422)


def test_editor_can_edit_but_not_delete_or_manage_members(
    client: TestClient, session: Session
) -> None:
    owner, editor = factories.make_user(session), factories.make_user(session)
    trip = factories.create_trip(client, owner)
    factories.add_member(session, trip["id"], editor, Role.EDITOR)
    headers = support.auth(editor, if_match="*")
    assert (
        client.patch(f"/trips/{trip['id']}", headers=headers, json={"name": "E"}).status_code == 200
    )
    support.assert_problem(
        client.delete(f"/trips/{trip['id']}", headers=headers), 403, "owner_required"
    )
    support.assert_problem(
        client.post(
            f"/trips/{trip['id']}/invitations", headers=headers, json={"email": "x@example.com"}
        ),
        403,
        "owner_required",
    )


def test_owner_manages_members(client: TestClient, session: Session) -> None:
    owner, friend = factories.make_user(session), factories.make_user(session)
    trip = factories.create_trip(client, owner)
    base = f"/trips/{trip['id']}/members"
    headers = support.auth(owner, if_match="*")
    # Members join by accepting an invitation (tests/invitations); nobody is added unasked.
    assert client.post(base, headers=headers, json={"email": friend.email}).status_code == 405
    factories.join(client, owner, trip["id"], friend, "editor")

    changed = client.patch(f"{base}/{friend.id}", headers=headers, json={"role": "viewer"})
    assert changed.json()["role"] == "viewer"
    members = client.get(base, headers=support.auth(friend)).json()["items"]
    assert [(m["user_id"], m["role"]) for m in members] == [
        (str(owner.id), "owner"),
        (str(friend.id), "viewer"),
    ]
    assert client.delete(f"{base}/{friend.id}", headers=headers).status_code == 204
    support.assert_problem(client.get(f"/trips/{trip['id']}", headers=support.auth(friend)), 404)
    support.assert_problem(
        client.delete(f"{base}/{friend.id}", headers=headers), 404, "member_not_found"
    )


def test_a_trip_always_keeps_an_owner(client: TestClient, session: Session) -> None:
    owner, friend = factories.make_user(session), factories.make_user(session)
    trip = factories.create_trip(client, owner)
    base = f"/trips/{trip['id']}/members"
    headers = support.auth(owner, if_match="*")
    support.assert_problem(
        client.patch(f"{base}/{owner.id}", headers=headers, json={"role": "editor"}),
        409,
        "last_owner",
    )
    support.assert_problem(client.delete(f"{base}/{owner.id}", headers=headers), 409, "last_owner")
    # Hand over ownership, then the former owner may step down and leave.
    factories.add_member(session, trip["id"], friend, Role.VIEWER)
    client.patch(f"{base}/{friend.id}", headers=headers, json={"role": "owner"})
    assert client.delete(f"{base}/{owner.id}", headers=headers).status_code == 204
    assert (
        client.get(f"/trips/{trip['id']}", headers=support.auth(friend)).json()["role"] == "owner"
    )


def test_members_can_leave_but_not_remove_others(client: TestClient, session: Session) -> None:
    owner, viewer, editor = (factories.make_user(session) for _ in range(3))
    trip = factories.create_trip(client, owner)
    factories.add_member(session, trip["id"], viewer, Role.VIEWER)
    factories.add_member(session, trip["id"], editor, Role.EDITOR)
    base = f"/trips/{trip['id']}/members"
    support.assert_problem(
        client.delete(f"{base}/{viewer.id}", headers=support.auth(editor, if_match="*")),
        403,
        "owner_required",
    )
    leaving = client.delete(f"{base}/{viewer.id}", headers=support.auth(viewer, if_match="*"))
    assert leaving.status_code == 204
    assert session.get(TripMember, (uuid.UUID(trip["id"]), viewer.id)) is None


def test_ownership_transfer_keeps_exactly_the_new_owner(
    client: TestClient, session: Session
) -> None:
    owner, friend = factories.make_user(session), factories.make_user(session)
    trip = factories.create_trip(client, owner)
    base = f"/trips/{trip['id']}"
    support.assert_problem(
        client.post(
            f"{base}/transfer-ownership",
            headers=support.auth(owner),
            json={"user_id": str(friend.id)},
        ),
        422,
        "member_not_found",
    )
    factories.add_member(session, trip["id"], friend, Role.VIEWER)
    support.assert_problem(
        client.post(
            f"{base}/transfer-ownership",
            headers=support.auth(owner),
            json={"user_id": str(owner.id)},
        ),
        409,
        "already_owner",
    )
    moved = client.post(
        f"{base}/transfer-ownership", headers=support.auth(owner), json={"user_id": str(friend.id)}
    )
    assert moved.status_code == 204, moved.text
    roles = {
        m["user_id"]: m["role"]
        for m in client.get(f"{base}/members", headers=support.auth(friend)).json()["items"]
    }
    assert roles == {str(owner.id): "editor", str(friend.id): "owner"}
    support.assert_problem(client.delete(base, headers=support.auth(owner)), 403, "owner_required")


def test_a_cursor_only_works_for_the_list_that_issued_it(
    client: TestClient, session: Session
) -> None:
    me = factories.make_user(session)
    trips = [factories.create_trip(client, me, name=f"T{i}") for i in range(2)]
    cursor = client.get("/trips", headers=support.auth(me), params={"limit": 1}).json()[
        "next_cursor"
    ]
    response = client.get(
        f"/trips/{trips[0]['id']}/members", headers=support.auth(me), params={"cursor": cursor}
    )
    support.assert_problem(response, 400, "invalid_cursor")


@pytest.mark.parametrize("revoke", ["session_ended", "deactivated"])
def test_a_member_with_a_revoked_token_is_401_on_trip_routes_and_locks_nothing(
    client: TestClient, session: Session, revoke: str
) -> None:
    # The trip routes find the trip, the role and the user in one query: a member's token
    # that is no longer valid must still be 401 (not the trip), for reads and for writes.
    owner = factories.make_user(session)
    trip = factories.create_trip(client, owner)
    headers = support.auth(owner)
    if revoke == "session_ended":
        session.execute(delete(UserSession).where(col(UserSession.user_id) == owner.id))
    else:
        owner.is_active = False
        session.add(owner)
    session.commit()
    head = session.get(Trip, uuid.UUID(trip["id"]))
    assert head is not None
    before = head.head_version
    support.assert_problem(
        client.get(f"/trips/{trip['id']}", headers=headers), 401, "invalid_token"
    )
    response = client.patch(
        f"/trips/{trip['id']}",
        headers={**headers, "If-Match": "*"},
        json={"name": "Taken over"},
    )
    support.assert_problem(response, 401, "invalid_token")
    session.refresh(head)
    assert (head.name, head.head_version) == (trip["name"], before)
    # A stranger's valid token on the same trip is still the same 404 as a missing trip.
    stranger = factories.make_user(session)
    support.assert_problem(
        client.get(f"/trips/{trip['id']}", headers=support.auth(stranger)), 404, "trip_not_found"
    )
