"""Creates: every 201 declares `Location` and sends one, and it leads to the created resource,
checked over every create route of the app."""

import re
from typing import Any
from urllib.parse import parse_qs, urlsplit

from fastapi.testclient import TestClient
from sqlmodel import Session

from app.main import app
from tests import factories, support

DOCUMENT = app.openapi()
CREATES = sorted(
    path
    for path, operations in DOCUMENT["paths"].items()
    if "201" in operations.get("post", {}).get("responses", {})
)


def _template_of(path: str) -> str:
    """The OpenAPI path an address belongs to."""
    found = [
        template
        for template in DOCUMENT["paths"]
        if re.fullmatch(re.sub(r"\{\w+\}", "[^/]+", template), path)
    ]
    assert len(found) == 1, (path, found)
    return found[0]


def _location_description(path: str) -> str:
    created = DOCUMENT["paths"][path]["post"]["responses"]["201"]
    return str(created["headers"]["Location"]["description"])


def test_every_201_declares_location() -> None:
    assert CREATES
    for path in CREATES:
        assert _location_description(path), path


def _bodies(client: TestClient, session: Session, owner: Any) -> dict[str, tuple[str, Any]]:
    """Each create route: the address to post to and its body (made valid by `seeded`)."""
    seeded = factories.seed_trip_with_everything(client, owner)
    trip = seeded["trip"]["id"]
    link = factories.create_invite_link(client, owner, trip)
    payer = seeded["payer"]
    return {
        "/trips": ("/trips", factories.TRIP),
        "/trips/{trip_id}/guests": (f"/trips/{trip}/guests", {"name": "Dana"}),
        "/trips/{trip_id}/invitations": (
            f"/trips/{trip}/invitations",
            {"email": "someone@example.com", "role": "viewer"},
        ),
        "/trips/{trip_id}/invite-links": (f"/trips/{trip}/invite-links", {"role": "viewer"}),
        "/trips/{trip_id}/share-links": (f"/trips/{trip}/share-links", {"scope": "itinerary"}),
        "/join/{token}": (f"/join/{link['token']}", None),
        "/sync/stream-tokens": ("/sync/stream-tokens", None),
        "/users/me/calendar-token": ("/users/me/calendar-token", None),
        "/trips/{trip_id}/items": (f"/trips/{trip}/items", {"kind": "note", "title": "x"}),
        "/trips/{trip_id}/checklists": (
            f"/trips/{trip}/checklists",
            {"kind": "todo", "title": "x"},
        ),
        "/trips/{trip_id}/checklists/{checklist_id}/items": (
            f"/trips/{trip}/checklists/{seeded['checklist']['id']}/items",
            {"text": "x"},
        ),
        "/trips/{trip_id}/expenses": (
            f"/trips/{trip}/expenses",
            {
                "title": "Taxi",
                "amount_minor": 1500,
                "currency": "EUR",
                "spent_on": "2027-05-02",
                "payers": [{"participant_id": payer, "amount_minor": 1500}],
                "split_mode": "equal",
                "splits": [{"participant_id": payer}],
            },
        ),
        "/trips/{trip_id}/settlements": (
            f"/trips/{trip}/settlements",
            {
                "from_participant_id": seeded["guest"]["id"],
                "to_participant_id": payer,
                "amount_minor": 100,
                "currency": "EUR",
                "settled_on": "2027-05-03",
            },
        ),
    }


def test_every_201_sends_a_location_that_leads_to_what_was_created(
    client: TestClient, session: Session
) -> None:
    owner, joiner = factories.make_user(session), factories.make_user(session)
    bodies = _bodies(client, session, owner)
    assert set(bodies) == set(CREATES), "add the new create route here"
    wrong: list[str] = []
    for path, (url, body) in sorted(bodies.items()):
        caller = joiner if path == "/join/{token}" else owner
        response = client.post(url, headers=support.auth(caller), json=body)
        assert response.status_code == 201, f"{path}: {response.text}"
        location = response.headers.get("location")
        if location is None:
            wrong.append(f"{path}: no Location")
            continue
        address = urlsplit(location)
        template = _template_of(address.path)
        operations = DOCUMENT["paths"][template]
        created = response.json()
        if "id" in created and created["id"] not in address.path:
            wrong.append(f"{path}: {location} does not name {created['id']}")
        if template == "/sync/events":  # a stream, answered until its client leaves
            assert parse_qs(address.query)["token"] == [created["token"]]
        elif "get" in operations:
            read = client.get(location, headers=support.auth(caller))
            if read.status_code != 200:
                wrong.append(f"{path}: GET {location} is {read.status_code}")
        else:
            # No GET of it: the route says so, and the address is where DELETE reaches it.
            assert "no GET" in _location_description(path), path
            removed = client.delete(location, headers=support.auth(caller, if_match="*"))
            if removed.status_code != 204:
                wrong.append(f"{path}: DELETE {location} is {removed.status_code}")
    assert not wrong, wrong
