"""Invitations by email: sent by owners, seen and answered only by the invitee."""

import uuid
from datetime import timedelta

from fastapi.testclient import TestClient
from sqlmodel import Session, select

from app.core.columns import utcnow
from app.core.config import get_settings
from app.core.security import create_email_token
from app.invitations.models import Invitation
from app.trips.models import Role, TripMember
from tests import factories, support


def invite(client: TestClient, owner, trip_id: str, email: str, role: str = "editor"):  # type: ignore[no-untyped-def]
    return client.post(
        f"/trips/{trip_id}/invitations",
        headers=support.auth(owner),
        json={"email": email, "role": role},
    )


def test_the_invitee_joins_on_acceptance_only(client: TestClient, session: Session) -> None:
    owner, invitee = factories.make_user(session), factories.make_user(session)
    trip = factories.create_trip(client, owner)
    sent = invite(client, owner, trip["id"], invitee.email.upper())
    assert sent.status_code == 201, sent.text
    assert sent.json()["status"] == "pending"

    # Invited is not joined: the trip is still invisible to the invitee.
    assert session.get(TripMember, (uuid.UUID(trip["id"]), invitee.id)) is None
    support.assert_problem(client.get(f"/trips/{trip['id']}", headers=support.auth(invitee)), 404)

    received = client.get("/invitations", headers=support.auth(invitee)).json()["items"]
    assert [(i["id"], i["trip_name"], i["role"]) for i in received] == [
        (sent.json()["id"], trip["name"], "editor")
    ]
    accepted = client.post(
        f"/invitations/{sent.json()['id']}/accept", headers=support.auth(invitee)
    )
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["role"] == "editor"
    assert client.get(f"/trips/{trip['id']}", headers=support.auth(invitee)).status_code == 200
    participants = client.get(
        f"/trips/{trip['id']}/participants", headers=support.auth(invitee)
    ).json()
    assert str(invitee.id) in {p["user_id"] for p in participants["items"]}
    # Answered invitations cannot be answered again.
    support.assert_problem(
        client.post(f"/invitations/{sent.json()['id']}/accept", headers=support.auth(invitee)),
        409,
        "invitation_closed",
    )


def test_someone_who_registers_later_sees_the_invitation(
    client: TestClient, session: Session
) -> None:
    owner = factories.make_user(session)
    trip = factories.create_trip(client, owner)
    assert invite(client, owner, trip["id"], "later@example.com").status_code == 201
    registered = client.post(
        "/auth/register",
        json={"email": "Later@Example.com", "password": "password123", "full_name": "Late"},
    )
    assert registered.status_code == 202
    token = client.post(
        "/auth/login", data={"username": "later@example.com", "password": "password123"}
    ).json()["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    # Until they prove they read that address, the invitation is not theirs to see.
    support.assert_problem(client.get("/invitations", headers=headers), 403, "email_not_verified")

    verified = client.post(
        "/auth/verify-email", json={"token": support.mailed_token("later@example.com")}
    )
    assert verified.status_code == 200, verified.text
    assert verified.json()["email_verified"] is True
    received = client.get("/invitations", headers=headers).json()
    assert [i["trip_id"] for i in received["items"]] == [trip["id"]]


def test_taking_over_an_address_does_not_take_over_its_invitations(
    client: TestClient, session: Session
) -> None:
    owner, stranger = factories.make_user(session), factories.make_user(session)
    old_address_token = create_email_token(stranger.id, stranger.email)
    trip = factories.create_trip(client, owner)
    sent = invite(client, owner, trip["id"], "friend@example.com").json()
    # The stranger switches to the invited address: it is unverified from that moment.
    changed = client.patch(
        "/users/me", headers=support.auth(stranger), json={"email": "friend@example.com"}
    )
    assert changed.json()["email_verified"] is False
    for call in (
        lambda: client.get("/invitations", headers=support.auth(stranger)),
        lambda: client.post(f"/invitations/{sent['id']}/accept", headers=support.auth(stranger)),
    ):
        support.assert_problem(call(), 403, "email_not_verified")
    # A token proving the stranger's old address proves nothing about the new one.
    support.assert_problem(
        client.post("/auth/verify-email", json={"token": old_address_token}), 400, "invalid_token"
    )
    assert session.get(TripMember, (uuid.UUID(trip["id"]), stranger.id)) is None


def test_decline_and_revoke(client: TestClient, session: Session) -> None:
    owner, invitee = factories.make_user(session), factories.make_user(session)
    trip = factories.create_trip(client, owner)
    first = invite(client, owner, trip["id"], invitee.email).json()
    support.assert_problem(invite(client, owner, trip["id"], invitee.email), 409, "already_invited")
    assert (
        client.post(
            f"/invitations/{first['id']}/decline", headers=support.auth(invitee)
        ).status_code
        == 204
    )
    assert client.get("/invitations", headers=support.auth(invitee)).json()["items"] == []

    second = invite(client, owner, trip["id"], invitee.email).json()
    revoked = client.delete(
        f"/trips/{trip['id']}/invitations/{second['id']}", headers=support.auth(owner)
    )
    assert revoked.status_code == 204
    support.assert_problem(
        client.post(f"/invitations/{second['id']}/accept", headers=support.auth(invitee)),
        409,
        "invitation_closed",
    )
    statuses = [
        i["status"]
        for i in client.get(f"/trips/{trip['id']}/invitations", headers=support.auth(owner)).json()[
            "items"
        ]
    ]
    assert statuses == ["revoked", "declined"]
    assert session.get(TripMember, (uuid.UUID(trip["id"]), invitee.id)) is None


def test_expired_invitations_cannot_be_accepted_and_can_be_resent(
    client: TestClient, session: Session
) -> None:
    owner, invitee = factories.make_user(session), factories.make_user(session)
    trip = factories.create_trip(client, owner)
    sent = invite(client, owner, trip["id"], invitee.email).json()
    invitation = session.exec(
        select(Invitation).where(Invitation.id == uuid.UUID(sent["id"]))
    ).one()
    invitation.created_at = utcnow() - timedelta(days=30)
    invitation.expires_at = utcnow() - timedelta(seconds=1)
    session.add(invitation)
    session.commit()

    support.assert_problem(
        client.post(f"/invitations/{sent['id']}/accept", headers=support.auth(invitee)),
        409,
        "invitation_expired",
    )
    assert client.get("/invitations", headers=support.auth(invitee)).json()["items"] == []
    assert invite(client, owner, trip["id"], invitee.email).status_code == 201


def test_only_the_invitee_can_see_or_answer(client: TestClient, session: Session) -> None:
    owner, invitee, stranger = (factories.make_user(session) for _ in range(3))
    trip = factories.create_trip(client, owner)
    sent = invite(client, owner, trip["id"], invitee.email).json()
    assert client.get("/invitations", headers=support.auth(stranger)).json()["items"] == []
    for action in ("accept", "decline"):
        support.assert_problem(
            client.post(f"/invitations/{sent['id']}/{action}", headers=support.auth(stranger)),
            404,
            "invitation_not_found",
        )
    # Even the owner who sent it cannot accept it for the invitee.
    support.assert_problem(
        client.post(f"/invitations/{sent['id']}/accept", headers=support.auth(owner)), 404
    )
    assert session.get(TripMember, (uuid.UUID(trip["id"]), stranger.id)) is None


def test_inviting_a_member_is_a_conflict(client: TestClient, session: Session) -> None:
    owner = factories.make_user(session)
    trip = factories.create_trip(client, owner)
    support.assert_problem(invite(client, owner, trip["id"], owner.email), 409, "already_member")
    support.assert_problem(invite(client, owner, trip["id"], "not-an-email"), 422)


def test_the_invitee_is_mailed_a_link_to_the_invitation(
    client: TestClient, session: Session
) -> None:
    owner = factories.make_user(session, full_name="Alice <b>")
    trip = factories.create_trip(client, owner, name="Lisbon & <Porto>")
    support.deliver_mail()
    sent = invite(client, owner, trip["id"], "Bob@Example.com", role="viewer")
    assert sent.status_code == 201, sent.text

    [mail] = support.mail_to("bob@example.com")
    link = f"{get_settings().PUBLIC_URL}#/invitations/{sent.json()['id']}"
    assert mail["Subject"] == "Alice <b> invites you to Lisbon & <Porto> on TripSync"
    text = support.text_of(mail)
    assert link in text
    assert '"Lisbon & <Porto>"' in text
    assert "as viewer" in text
    html_part = mail.get_body(("html",))
    assert html_part is not None
    html = html_part.get_content()  # type: ignore[attr-defined]
    assert f'href="{link}"' in html
    # Names typed by users are text in the HTML part, never markup.
    assert "<strong>Lisbon &amp; &lt;Porto&gt;</strong>" in html
    assert "<strong>Alice &lt;b&gt;</strong>" in html
    assert "<b>" not in html


def test_a_refused_invitation_mails_nothing(client: TestClient, session: Session) -> None:
    owner, member = factories.make_user(session), factories.make_user(session)
    trip = factories.create_trip(client, owner)
    factories.add_member(session, trip["id"], member, Role.EDITOR)
    support.deliver_mail()
    support.assert_problem(invite(client, owner, trip["id"], member.email), 409, "already_member")
    assert support.deliver_mail() == []
