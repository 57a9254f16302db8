"""Invite links: who makes, sees and revokes them, and joining with one (once per use)."""

import hashlib
import uuid
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text, update
from sqlmodel import Session, col

from app.core.columns import utcnow
from app.invite_links.models import InviteLink
from app.trips.models import Role, TripMember
from app.users.models import User
from tests import factories, support


def join(client: TestClient, user: User, token: str):  # type: ignore[no-untyped-def]
    return client.post(f"/join/{token}", headers=support.auth(user))


def links(client: TestClient, user: User, trip_id: str) -> list[dict[str, object]]:
    response = client.get(f"/trips/{trip_id}/invite-links", headers=support.auth(user))
    assert response.status_code == 200, response.text
    return response.json()["items"]  # type: ignore[no-any-return]


def activity(client: TestClient, user: User, trip_id: str) -> list[tuple[str, str]]:
    entries = client.get(f"/trips/{trip_id}/activity", headers=support.auth(user)).json()
    return [(entry["action"], entry["summary"]) for entry in entries["items"]]


def head(client: TestClient, user: User, trip_id: str) -> int:
    """The trip's version now, as the user's device list (`GET /sync`) shows it."""
    states = client.get("/sync", headers=support.auth(user)).json()["trips"]
    return next(int(state["version"]) for state in states if state["trip_id"] == trip_id)


def test_a_link_is_shown_once_and_stored_hashed(client: TestClient, session: Session) -> None:
    owner = factories.make_user(session)
    trip = factories.create_trip(client, owner)
    response = client.post(
        f"/trips/{trip['id']}/invite-links",
        headers=support.auth(owner),
        json={"role": "editor", "expires_in_hours": 48, "max_uses": 3},
    )
    assert response.status_code == 201, response.text
    assert response.headers["cache-control"] == "no-store"
    created = response.json()
    token = created["token"]
    assert len(token) >= 43  # 32 random bytes
    assert created["join_path"] == f"/join/{token}"
    assert (created["role"], created["uses"], created["max_uses"]) == ("editor", 0, 3)
    assert (created["status"], created["revoked"]) == ("active", False)
    assert created["created_by"] == str(owner.id)

    stored = (
        session.execute(
            text("SELECT * FROM trip_invite_links WHERE id = :id"), {"id": created["id"]}
        )
        .mappings()
        .one()
    )
    assert stored["token_hash"] == hashlib.sha256(token.encode()).hexdigest()
    assert token not in {str(value) for value in stored.values()}
    listed = links(client, owner, trip["id"])
    assert [link["id"] for link in listed] == [created["id"]]
    assert "token" not in listed[0]
    assert token not in str(listed)
    assert ("invite_link.created", "as editor, up to 3 use(s)") in activity(
        client, owner, trip["id"]
    )


def test_joining_makes_a_member_as_accepting_an_invitation_does(
    client: TestClient, session: Session
) -> None:
    owner, newcomer = factories.make_user(session), factories.make_user(session, full_name="Nia")
    trip = factories.create_trip(client, owner)
    link = factories.create_invite_link(client, owner, trip["id"], role="editor", max_uses=2)
    since = head(client, owner, trip["id"])

    joined = join(client, newcomer, link["token"])
    assert joined.status_code == 201, joined.text
    body = joined.json()
    assert (body["trip"]["id"], body["trip"]["role"]) == (trip["id"], "editor")
    assert (body["membership"]["user_id"], body["membership"]["role"]) == (
        str(newcomer.id),
        "editor",
    )
    # The member's participant, the activity entry, and a new trip version with both in it.
    assert str(newcomer.id) in {
        p["user_id"] for p in support.participants(client, owner, trip["id"])
    }
    assert ("member.added", "Nia as editor") in activity(client, owner, trip["id"])
    changes = client.get(
        f"/trips/{trip['id']}/changes", headers=support.auth(owner), params={"since": since}
    ).json()
    changed = {(change["entity"], change["id"]) for change in changes["changes"]}
    assert ("member", str(newcomer.id)) in changed
    assert any(entity == "participant" for entity, _ in changed)
    assert [link_["uses"] for link_ in links(client, owner, trip["id"])] == [1]


def test_joining_again_changes_nothing_and_counts_no_use(
    client: TestClient, session: Session
) -> None:
    owner, friend = factories.make_user(session), factories.make_user(session)
    trip = factories.create_trip(client, owner)
    link = factories.create_invite_link(client, owner, trip["id"], role="editor", max_uses=1)
    assert join(client, friend, link["token"]).status_code == 201
    client.patch(
        f"/trips/{trip['id']}/members/{friend.id}",
        headers=support.auth(owner, if_match="*"),
        json={"role": "viewer"},
    )
    log = activity(client, owner, trip["id"])

    again = join(client, friend, link["token"])  # used up, but they are in already
    assert again.status_code == 200, again.text
    assert again.json()["membership"]["role"] == "viewer"  # no role change
    assert links(client, owner, trip["id"])[0]["uses"] == 1
    assert activity(client, owner, trip["id"]) == log
    # The owner is a member too: their own link answers with their membership.
    assert join(client, owner, link["token"]).json()["membership"]["role"] == "owner"


def test_a_used_up_expired_revoked_or_unknown_link_is_the_same_404(
    client: TestClient, session: Session
) -> None:
    owner, first, late = (factories.make_user(session) for _ in range(3))
    trip = factories.create_trip(client, owner)
    used_up = factories.create_invite_link(client, owner, trip["id"], max_uses=1)
    assert join(client, first, used_up["token"]).status_code == 201
    expired = factories.create_invite_link(client, owner, trip["id"])
    session.execute(
        update(InviteLink)
        .where(col(InviteLink.id) == uuid.UUID(expired["id"]))
        .values(expires_at=utcnow() - timedelta(seconds=1), created_at=utcnow() - timedelta(days=1))
    )
    session.commit()
    revoked = factories.create_invite_link(client, owner, trip["id"])
    revoke = client.delete(
        f"/trips/{trip['id']}/invite-links/{revoked['id']}", headers=support.auth(owner)
    )
    assert revoke.status_code == 204, revoke.text

    answers = [
        join(client, late, token)
        for token in (used_up["token"], expired["token"], revoked["token"], "x" * 43)
    ]
    bodies = [support.assert_problem(answer, 404, "invite_link_not_found") for answer in answers]
    assert all(body == bodies[0] for body in bodies)
    assert session.get(TripMember, (uuid.UUID(trip["id"]), late.id)) is None
    statuses = {link["id"]: link["status"] for link in links(client, owner, trip["id"])}
    assert statuses == {
        used_up["id"]: "used_up",
        expired["id"]: "expired",
        revoked["id"]: "revoked",
    }
    # A malformed token is not a token at all.
    support.assert_problem(join(client, late, "not a token"), 422)


def test_a_link_gives_at_most_its_creators_role(client: TestClient, session: Session) -> None:
    owner, editor, viewer = (factories.make_user(session) for _ in range(3))
    trip = factories.create_trip(client, owner)
    factories.add_member(session, trip["id"], editor, Role.EDITOR)
    factories.add_member(session, trip["id"], viewer, Role.VIEWER)
    path = f"/trips/{trip['id']}/invite-links"

    support.assert_problem(
        client.post(path, headers=support.auth(editor), json={"role": "owner"}),
        403,
        "role_above_own",
    )
    support.assert_problem(
        client.post(path, headers=support.auth(viewer), json={"role": "viewer"}),
        403,
        "read_only_member",
    )
    assert factories.create_invite_link(client, editor, trip["id"], role="editor")
    assert factories.create_invite_link(client, owner, trip["id"], role="owner")


@pytest.mark.parametrize(
    "body",
    [
        {"max_uses": 0},
        {"max_uses": 1001},
        {"max_uses": 1.0},
        {"expires_in_hours": 0},
        {"expires_in_hours": 721},
        {"role": "admin"},
        {"token": "mine"},
    ],
)
def test_invalid_links_are_422_and_store_nothing(
    client: TestClient, session: Session, body: dict[str, object]
) -> None:
    owner = factories.make_user(session)
    trip = factories.create_trip(client, owner)
    response = client.post(
        f"/trips/{trip['id']}/invite-links", headers=support.auth(owner), json=body
    )
    support.assert_problem(response, 422, "validation_error")
    assert links(client, owner, trip["id"]) == []


def test_owners_see_and_revoke_every_link_editors_their_own(
    client: TestClient, session: Session
) -> None:
    owner, editor, other_editor = (factories.make_user(session) for _ in range(3))
    trip = factories.create_trip(client, owner)
    for member in (editor, other_editor):
        factories.add_member(session, trip["id"], member, Role.EDITOR)
    owners = factories.create_invite_link(client, owner, trip["id"])
    editors = factories.create_invite_link(client, editor, trip["id"])

    assert {link["id"] for link in links(client, owner, trip["id"])} == {
        owners["id"],
        editors["id"],
    }
    assert [link["id"] for link in links(client, editor, trip["id"])] == [editors["id"]]
    assert links(client, other_editor, trip["id"]) == []

    path = f"/trips/{trip['id']}/invite-links"
    # Another's link is as missing to an editor as a link that does not exist.
    for user, link_id in ((editor, owners["id"]), (other_editor, editors["id"])):
        support.assert_problem(
            client.delete(f"{path}/{link_id}", headers=support.auth(user)),
            404,
            "invite_link_not_found",
        )
    assert client.delete(f"{path}/{editors['id']}", headers=support.auth(editor)).status_code == 204
    assert client.delete(f"{path}/{owners['id']}", headers=support.auth(owner)).status_code == 204
    log = activity(client, owner, trip["id"])
    assert client.delete(f"{path}/{owners['id']}", headers=support.auth(owner)).status_code == 204
    assert activity(client, owner, trip["id"]) == log  # revoking twice records nothing new
    assert [link["revoked"] for link in links(client, owner, trip["id"])] == [True, True]


def test_a_link_stops_working_when_its_creator_loses_the_role(
    client: TestClient, session: Session
) -> None:
    owner, editor, friend, stranger = (factories.make_user(session) for _ in range(4))
    trip = factories.create_trip(client, owner)
    factories.add_member(session, trip["id"], editor, Role.EDITOR)
    editor_link = factories.create_invite_link(client, editor, trip["id"], role="editor")
    viewer_link = factories.create_invite_link(
        client, editor, trip["id"], role="viewer", max_uses=3
    )
    demoted = client.patch(
        f"/trips/{trip['id']}/members/{editor.id}",
        headers=support.auth(owner, if_match="*"),
        json={"role": "viewer"},
    )
    assert demoted.status_code == 200, demoted.text
    support.assert_problem(join(client, friend, editor_link["token"]), 404, "invite_link_not_found")
    assert join(client, friend, viewer_link["token"]).status_code == 201  # still within the role

    left = client.delete(
        f"/trips/{trip['id']}/members/{editor.id}", headers=support.auth(editor, if_match="*")
    )
    assert left.status_code == 204, left.text
    # Removed, they cannot come back (nor bring anyone) through a link they made.
    for user in (editor, stranger):
        support.assert_problem(
            join(client, user, viewer_link["token"]), 404, "invite_link_not_found"
        )
    statuses = {link["id"]: link["status"] for link in links(client, owner, trip["id"])}
    assert statuses[editor_link["id"]] == statuses[viewer_link["id"]] == "orphaned"


def test_links_of_a_deleted_trip_are_gone(client: TestClient, session: Session) -> None:
    owner, friend = factories.make_user(session), factories.make_user(session)
    trip = factories.create_trip(client, owner)
    link = factories.create_invite_link(client, owner, trip["id"])
    deleted = client.delete(f"/trips/{trip['id']}", headers=support.auth(owner, if_match="*"))
    assert deleted.status_code == 204, deleted.text
    support.assert_problem(join(client, friend, link["token"]), 404, "invite_link_not_found")
