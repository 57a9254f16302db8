"""Test data: users, trips, members, guests and items, made the way each test needs them.

One definition of each: a test that needs a different trip passes keyword changes.
"""

import uuid
from datetime import date
from decimal import Decimal
from functools import cache
from typing import Any

from fastapi.testclient import TestClient
from sqlmodel import Session

from app.core.columns import utcnow
from app.core.security import hash_password
from app.fx import service as fx_service
from app.fx.ecb import DayRates
from app.trips.models import Role, TripMember
from app.users.models import User
from tests import support

TRIP: dict[str, Any] = {
    "name": "Lisbon",
    "destination": "Portugal",
    "start_date": "2027-05-01",
    "end_date": "2027-05-07",
    "timezone": "Europe/Lisbon",
    "description": "Spring trip",
}


@cache
def password_hash() -> str:
    """The hash of support.PASSWORD, computed once per run."""
    return hash_password(support.PASSWORD)


def make_user(
    session: Session, email: str | None = None, full_name: str = "Test User", verified: bool = True
) -> User:
    """A user with support.PASSWORD, committed through `session` (verified unless asked)."""
    user = User(
        email=email or f"user-{uuid.uuid4().hex[:12]}@example.com",
        full_name=full_name,
        password_hash=password_hash(),
        email_verified_at=utcnow() if verified else None,
    )
    session.add(user)
    session.commit()
    return user


def create_trip(client: TestClient, user: User, **changes: object) -> dict[str, Any]:
    """A trip made through the API by `user`: TRIP with `changes` applied."""
    response = client.post("/trips", headers=support.auth(user), json={**TRIP, **changes})
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


def add_member(session: Session, trip_id: str, user: User, role: Role) -> None:
    """Make `user` a member straight in the database (no invitation, no participant row)."""
    session.add(TripMember(trip_id=uuid.UUID(trip_id), user_id=user.id, role=role))
    session.commit()


def join(client: TestClient, owner: User, trip_id: str, user: User, role: str) -> None:
    """Bring `user` into the trip the way people join: invited by email, then accepting."""
    sent = client.post(
        f"/trips/{trip_id}/invitations",
        headers=support.auth(owner),
        json={"email": user.email, "role": role},
    )
    assert sent.status_code == 201, sent.text
    accepted = client.post(f"/invitations/{sent.json()['id']}/accept", headers=support.auth(user))
    assert accepted.status_code == 200, accepted.text


def create_invite_link(
    client: TestClient, user: User, trip_id: str, **fields: object
) -> dict[str, Any]:
    """An invite link made through the API by `user` (a viewer link for one use unless
    `fields` say otherwise); the answer includes its token."""
    response = client.post(
        f"/trips/{trip_id}/invite-links", headers=support.auth(user), json=fields
    )
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


def add_guest(client: TestClient, user: User, trip_id: str, name: str = "Guest") -> str:
    """A guest participant added through the API; returns its participant id."""
    response = client.post(
        f"/trips/{trip_id}/guests", headers=support.auth(user), json={"name": name}
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def add_item(client: TestClient, user: User, trip_id: str, **fields: object) -> dict[str, Any]:
    """An itinerary item (an activity unless `fields` say otherwise) added through the API."""
    body = {"kind": "activity", "title": "Something", **fields}
    response = client.post(f"/trips/{trip_id}/items", headers=support.auth(user), json=body)
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


def seed_trip_with_everything(client: TestClient, owner: User) -> dict[str, Any]:
    """A trip with one of each kind of row, made through the API as a client would.

    Returns the created representations by name, plus `payer`, the owner's participant id.
    """
    headers = support.auth(owner)

    def post(path: str, body: dict[str, Any]) -> dict[str, Any]:
        response = client.post(path, headers=headers, json=body)
        assert response.status_code == 201, response.text
        return response.json()  # type: ignore[no-any-return]

    trip = post(
        "/trips",
        {
            "name": "Lisbon",
            "start_date": "2027-05-01",
            "end_date": "2027-05-07",
            "timezone": "Europe/Lisbon",
            "base_currency": "EUR",
        },
    )
    base = f"/trips/{trip['id']}"
    guest = post(f"{base}/guests", {"name": "Carol"})
    participants = client.get(f"{base}/participants", headers=headers).json()["items"]
    payer = next(p["id"] for p in participants if p["user_id"] == str(owner.id))
    item = post(f"{base}/items", {"kind": "activity", "title": "Tram 28", "day": "2027-05-02"})
    checklist = post(f"{base}/checklists", {"kind": "packing", "title": "Bags"})
    checklist_item = post(f"{base}/checklists/{checklist['id']}/items", {"text": "Socks"})
    expense = post(
        f"{base}/expenses",
        {
            "title": "Dinner",
            "amount_minor": 9000,
            "currency": "EUR",
            "spent_on": "2027-05-02",
            "payers": [{"participant_id": payer, "amount_minor": 9000}],
            "split_mode": "equal",
            "splits": [{"participant_id": payer}, {"participant_id": guest["id"]}],
        },
    )
    settlement = post(
        f"{base}/settlements",
        {
            "from_participant_id": guest["id"],
            "to_participant_id": payer,
            "amount_minor": 4500,
            "currency": "EUR",
            "settled_on": "2027-05-03",
        },
    )
    return {
        "trip": trip,
        "guest": guest,
        "payer": payer,
        "item": item,
        "checklist": checklist,
        "checklist_item": checklist_item,
        "expense": expense,
        "settlement": settlement,
    }


def add_fx_rates(session: Session, days: dict[str, dict[str, str]]) -> None:
    """ECB reference rates (day → currency → units per 1 EUR), imported as a file's would be."""
    fx_service.import_rates(
        session=session,
        days=[
            DayRates(date.fromisoformat(day), {code: Decimal(rate) for code, rate in rates.items()})
            for day, rates in days.items()
        ],
    )
    session.flush()


def create_trip_with_full_lists(
    client: TestClient, session: Session, owner: User, invitee: User
) -> dict[str, str]:
    """A trip of `owner` with two rows or more in every list a trip has (members, guests,
    invitations (one to `invitee`), links, items, checklists and their items, expenses and
    their revisions, settlements, activity), made through the API.

    Returns the ids the lists' paths name: `trip_id`, `checklist_id`, `expense_id`.
    """
    seeded = seed_trip_with_everything(client, owner)
    trip_id, headers = seeded["trip"]["id"], support.auth(owner)
    base = f"/trips/{trip_id}"

    def post(path: str, body: dict[str, Any]) -> None:
        response = client.post(f"{base}{path}", headers=headers, json=body)
        assert response.status_code == 201, response.text

    add_member(session, trip_id, make_user(session), Role.VIEWER)
    for email in (invitee.email, f"guest-{uuid.uuid4().hex[:12]}@example.com"):
        post("/invitations", {"email": email, "role": "viewer"})
    for _ in range(2):
        post("/invite-links", {"role": "viewer"})
        post("/share-links", {"scope": "itinerary"})
    post("/items", {"kind": "note", "title": "Second", "day": "2027-05-02"})
    post("/checklists", {"kind": "todo", "title": "Second list"})
    post(f"/checklists/{seeded['checklist']['id']}/items", {"text": "Shirts"})
    post(
        "/expenses",
        {
            "title": "Lunch",
            "amount_minor": 2000,
            "currency": "EUR",
            "spent_on": "2027-05-03",
            "payers": [{"participant_id": seeded["payer"], "amount_minor": 2000}],
            "split_mode": "equal",
            "splits": [{"participant_id": seeded["payer"]}],
        },
    )
    post(
        "/settlements",
        {
            "from_participant_id": seeded["guest"]["id"],
            "to_participant_id": seeded["payer"],
            "amount_minor": 100,
            "currency": "EUR",
            "settled_on": "2027-05-04",
        },
    )
    expense_id = seeded["expense"]["id"]
    revised = client.patch(
        f"{base}/expenses/{expense_id}",
        headers=support.auth(owner, if_match="*"),
        json={"title": "Dinner for two"},
    )
    assert revised.status_code == 200, revised.text
    return {"trip_id": trip_id, "checklist_id": seeded["checklist"]["id"], "expense_id": expense_id}
