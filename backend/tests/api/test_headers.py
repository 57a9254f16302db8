"""Caching: every answer to a signed-in caller is `Cache-Control: no-store`, read from every
route of the app; routes that choose their own policy keep it."""

import re
import uuid

from fastapi.testclient import TestClient
from sqlmodel import Session

from app.main import app
from tests import factories, support

# The live event stream answers until its client leaves (it sets no-store itself:
# tests/sync/test_events.py); the rest are read with a bearer token below.
_STREAM = "/sync/events"
READS = sorted(path for path, operations in app.openapi()["paths"].items() if "get" in operations)


def test_every_read_of_a_signed_in_caller_is_no_store(client: TestClient, session: Session) -> None:
    owner, invitee = factories.make_user(session), factories.make_user(session)
    ids = factories.create_trip_with_full_lists(client, session, owner, invitee)
    items = support.list_items(client, owner, ids["trip_id"])
    ids["item_id"] = items[0]["id"]
    wrong, answered = [], set()
    for path in READS:
        if path == _STREAM:
            continue
        url = re.sub(r"\{(\w+)\}", lambda m: ids.get(m.group(1), str(uuid.uuid4())), path)
        response = client.get(url, headers=support.auth(owner))
        answered.add(response.status_code)
        policy = response.headers.get("cache-control")
        if policy != "no-store":
            wrong.append(f"{path} ({response.status_code}): {policy}")
    assert not wrong, wrong
    assert 200 in answered


def test_users_me_is_not_kept_by_caches(client: TestClient, session: Session) -> None:
    me = factories.make_user(session)
    response = client.get("/users/me", headers=support.auth(me))
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"


def test_writes_of_a_signed_in_caller_are_no_store(client: TestClient, session: Session) -> None:
    me = factories.make_user(session)
    response = client.post("/trips", headers=support.auth(me), json=factories.TRIP)
    assert response.status_code == 201
    assert response.headers["cache-control"] == "no-store"


def test_anonymous_public_answers_are_left_alone(client: TestClient) -> None:
    assert "cache-control" not in client.get("/health/live").headers


def test_the_calendar_feed_keeps_its_own_policy(client: TestClient, session: Session) -> None:
    """Calendar apps fetch it with the token in the address, no bearer header."""
    me = factories.make_user(session)
    trip = factories.create_trip(client, me)
    token = client.post("/users/me/calendar-token", headers=support.auth(me)).json()["token"]
    response = client.get(f"/trips/{trip['id']}/calendar.ics", params={"token": token})
    assert response.status_code == 200
    assert response.headers["cache-control"] == "private, no-cache"
