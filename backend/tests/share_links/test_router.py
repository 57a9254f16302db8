"""Share links: only owners make, see and revoke them; a link shows what a viewer of its
scope sees, no more; revoked and expired links answer 404 at once; reads are rate-limited."""

import hashlib
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text, update
from sqlmodel import Session, col

from app.core.columns import utcnow
from app.main import app
from app.share_links.models import ShareLink
from app.users.models import User
from tests import factories, support

ITINERARY = {"trip", "item"}
WITH_EXPENSES = {"trip", "item", "participant", "expense", "settlement"}


def create_link(client: TestClient, user: User, trip_id: str, **fields: object) -> dict[str, Any]:
    response = client.post(f"/trips/{trip_id}/share-links", headers=support.auth(user), json=fields)
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


def links(client: TestClient, user: User, trip_id: str) -> list[dict[str, Any]]:
    response = client.get(f"/trips/{trip_id}/share-links", headers=support.auth(user))
    assert response.status_code == 200, response.text
    return response.json()["items"]  # type: ignore[no-any-return]


def shared(client: TestClient, token: str) -> dict[str, Any]:
    response = client.get(f"/shared/{token}")
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def viewer_rows(client: TestClient, viewer: User, trip_id: str, kinds: set[str]) -> list[Any]:
    """The rows of the viewer's own snapshot of the trip that the scope's kinds cover."""
    response = client.get(f"/trips/{trip_id}/snapshot", headers=support.auth(viewer))
    assert response.status_code == 200, response.text
    snapshot = response.json()
    assert snapshot["role"] == "viewer"
    return [row for row in snapshot["rows"] if row["entity"] in kinds]


def test_a_link_is_shown_once_and_stored_hashed(client: TestClient, session: Session) -> None:
    owner = factories.make_user(session)
    trip = factories.create_trip(client, owner)
    response = client.post(
        f"/trips/{trip['id']}/share-links",
        headers=support.auth(owner),
        json={"scope": "itinerary_and_expenses", "hide_amounts": True, "expires_in_hours": 48},
    )
    assert response.status_code == 201, response.text
    assert response.headers["cache-control"] == "no-store"
    created = response.json()
    token = created["token"]
    assert len(token) >= 43  # 32 random bytes
    assert created["shared_path"] == f"/shared/{token}"
    assert (created["scope"], created["hide_amounts"]) == ("itinerary_and_expenses", True)
    assert (created["status"], created["revoked"]) == ("active", False)
    assert created["created_by"] == str(owner.id)
    hours = (
        datetime.fromisoformat(created["expires_at"])
        - datetime.fromisoformat(created["created_at"])
    ) / timedelta(hours=1)
    assert round(hours) == 48

    stored = session.execute(
        text("SELECT token_hash FROM trip_share_links WHERE id = :id"), {"id": created["id"]}
    ).scalar_one()
    assert stored == hashlib.sha256(token.encode()).hexdigest()
    assert token not in str(stored)

    listed = links(client, owner, trip["id"])
    assert [link["id"] for link in listed] == [created["id"]]
    assert "token" not in listed[0]
    assert "shared_path" not in listed[0]
    entries = client.get(f"/trips/{trip['id']}/activity", headers=support.auth(owner)).json()
    assert "share_link.created" in [entry["action"] for entry in entries["items"]]


def test_only_owners_make_see_and_revoke_links(client: TestClient, session: Session) -> None:
    owner, editor, viewer = (factories.make_user(session) for _ in range(3))
    trip = factories.create_trip(client, owner)
    factories.join(client, owner, trip["id"], editor, "editor")
    factories.join(client, owner, trip["id"], viewer, "viewer")
    link = create_link(client, owner, trip["id"])
    base = f"/trips/{trip['id']}/share-links"
    for member in (editor, viewer):
        headers = support.auth(member)
        support.assert_problem(client.post(base, headers=headers, json={}), 403, "owner_required")
        support.assert_problem(client.get(base, headers=headers), 403, "owner_required")
        revoked = client.delete(f"{base}/{link['id']}", headers={**headers, "If-Match": "*"})
        support.assert_problem(revoked, 403, "owner_required")
    assert [entry["status"] for entry in links(client, owner, trip["id"])] == ["active"]
    assert shared(client, link["token"])["trip_id"] == trip["id"]

    # Another trip's owner cannot reach this trip's link through their own trip.
    other = factories.make_user(session)
    other_trip = factories.create_trip(client, other)
    response = client.delete(
        f"/trips/{other_trip['id']}/share-links/{link['id']}",
        headers={**support.auth(other), "If-Match": "*"},
    )
    support.assert_problem(response, 404, "share_link_not_found")


def test_a_revoked_link_answers_404_at_once(client: TestClient, session: Session) -> None:
    owner = factories.make_user(session)
    trip = factories.create_trip(client, owner)
    link, kept = create_link(client, owner, trip["id"]), create_link(client, owner, trip["id"])
    assert shared(client, link["token"])["trip_id"] == trip["id"]
    path = f"/trips/{trip['id']}/share-links/{link['id']}"
    headers = {**support.auth(owner), "If-Match": "*"}
    assert client.delete(path, headers=headers).status_code == 204
    support.assert_problem(client.get(f"/shared/{link['token']}"), 404, "share_link_not_found")
    assert client.delete(path, headers=headers).status_code == 204  # again: harmless
    statuses = {entry["id"]: entry["status"] for entry in links(client, owner, trip["id"])}
    assert statuses == {link["id"]: "revoked", kept["id"]: "active"}
    assert shared(client, kept["token"])["trip_id"] == trip["id"]
    missing = client.delete(f"/trips/{trip['id']}/share-links/{uuid.uuid4()}", headers=headers)
    support.assert_problem(missing, 404, "share_link_not_found")


def test_an_expired_link_answers_404(client: TestClient, session: Session) -> None:
    owner = factories.make_user(session)
    trip = factories.create_trip(client, owner)
    link = create_link(client, owner, trip["id"], expires_in_hours=1)
    assert shared(client, link["token"])["trip_id"] == trip["id"]
    session.execute(
        update(ShareLink)
        .where(col(ShareLink.id) == uuid.UUID(link["id"]))
        .values(
            created_at=utcnow() - timedelta(hours=2), expires_at=utcnow() - timedelta(seconds=1)
        )
    )
    session.commit()
    support.assert_problem(client.get(f"/shared/{link['token']}"), 404, "share_link_not_found")
    assert [entry["status"] for entry in links(client, owner, trip["id"])] == ["expired"]


def test_unknown_tokens_and_bad_input(client: TestClient, session: Session) -> None:
    support.assert_problem(client.get("/shared/not-a-token"), 404, "share_link_not_found")
    owner = factories.make_user(session)
    trip = factories.create_trip(client, owner)
    base = f"/trips/{trip['id']}/share-links"
    for body in (
        {"scope": "everything"},
        {"expires_in_hours": 0},
        {"expires_in_hours": 90 * 24 + 1},
        {"hide_amounts": "yes"},
        {"token_hash": "0" * 64},
    ):
        support.assert_problem(client.post(base, headers=support.auth(owner), json=body), 422)
    assert links(client, owner, trip["id"]) == []


def test_shared_reads_carry_their_headers(client: TestClient, session: Session) -> None:
    owner = factories.make_user(session)
    trip = factories.create_trip(client, owner)
    link = create_link(client, owner, trip["id"])
    for response in (client.get(f"/shared/{link['token']}"), client.get("/shared/unknown")):
        assert response.headers["cache-control"] == "no-store"
        assert response.headers["x-robots-tag"] == "noindex, nofollow"


@pytest.fixture
def small_limit(environment: Callable[..., None]) -> None:
    """Set before the test's transaction begins (the engine is rebuilt)."""
    environment(SHARED_READS_PER_ADDRESS="3", RATE_LIMIT_WINDOW_SECONDS="600")


def test_shared_reads_are_limited_per_address(small_limit: None, session: Session) -> None:
    address = f"10.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}"
    client = TestClient(app, client=(address, 50000), raise_server_exceptions=False)
    owner = factories.make_user(session)
    trip = factories.create_trip(client, owner)
    link = create_link(client, owner, trip["id"])
    for _ in range(2):
        assert client.get(f"/shared/{link['token']}").status_code == 200
    support.assert_problem(client.get("/shared/guess"), 404)  # a miss counts too
    refused = client.get(f"/shared/{link['token']}")
    support.assert_problem(refused, 429, "rate_limited")
    assert 1 <= int(refused.headers["retry-after"]) <= 600
    other = TestClient(app, client=("10.251.0.1", 50000), raise_server_exceptions=False)
    assert other.get(f"/shared/{link['token']}").status_code == 200


def test_a_link_never_shows_more_than_a_viewer_of_its_scope(
    client: TestClient, session: Session
) -> None:
    """The must-show: each link's rows are the rows of a viewer member's own snapshot that
    its scope covers, with amounts masked whenever the link or the trip hides them."""
    owner, viewer = factories.make_user(session), factories.make_user(session)
    seeded = factories.seed_trip_with_everything(client, owner)
    trip_id = seeded["trip"]["id"]
    factories.join(client, owner, trip_id, viewer, "viewer")
    # A private checklist item of the owner's: a viewer never sees it, nor does a link.
    private = client.post(
        f"/trips/{trip_id}/checklists/{seeded['checklist']['id']}/items",
        headers=support.auth(owner),
        json={"text": "Passport copy", "private": True},
    )
    assert private.status_code == 201, private.text
    plan = create_link(client, owner, trip_id, scope="itinerary")
    money = create_link(client, owner, trip_id, scope="itinerary_and_expenses")
    masked = create_link(client, owner, trip_id, scope="itinerary_and_expenses", hide_amounts=True)

    plan_view = shared(client, plan["token"])
    assert (plan_view["scope"], plan_view["amounts_hidden"]) == ("itinerary", False)
    assert plan_view["rows"] == viewer_rows(client, viewer, trip_id, ITINERARY)
    assert {row["entity"] for row in plan_view["rows"]} == ITINERARY

    money_view = shared(client, money["token"])
    assert money_view["amounts_hidden"] is False
    assert money_view["rows"] == viewer_rows(client, viewer, trip_id, WITH_EXPENSES)
    assert {row["entity"] for row in money_view["rows"]} == WITH_EXPENSES
    for view in (plan_view, money_view):
        assert view["version"] >= 1
        texts = str(view)
        assert "member" not in {row["entity"] for row in view["rows"]}
        assert owner.email not in texts
        assert viewer.email not in texts
        assert "Passport copy" not in texts
        assert "Socks" not in texts

    # The link's own option masks amounts as the trip's setting does for viewers: the same
    # rows a viewer sees once the trip hides amounts from them.
    masked_view = shared(client, masked["token"])
    assert masked_view["amounts_hidden"] is True
    assert masked_view["rows"] != money_view["rows"]  # something was masked
    hidden = client.patch(
        f"/trips/{trip_id}",
        headers={**support.auth(owner), "If-Match": "*"},
        json={"hide_amounts_from_viewers": True},
    )
    assert hidden.status_code == 200, hidden.text
    viewer_hidden = viewer_rows(client, viewer, trip_id, WITH_EXPENSES)
    not_trip = [row for row in viewer_hidden if row["entity"] != "trip"]
    assert [row for row in masked_view["rows"] if row["entity"] != "trip"] == not_trip
    # Once the trip hides amounts, every link hides them too, whatever its option.
    for token in (money["token"], masked["token"]):
        view = shared(client, token)
        assert view["amounts_hidden"] is True
        assert view["rows"] == viewer_hidden
    assert shared(client, plan["token"])["rows"] == viewer_rows(client, viewer, trip_id, ITINERARY)
