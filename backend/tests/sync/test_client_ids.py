"""Client-chosen ids on create: a replay is not an error, a taken id is, a deleted one stays so."""

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session, SQLModel, col, func, select

from app.activity.models import Activity
from app.checklists.models import Checklist, ChecklistItem
from app.expenses.models import Expense, Settlement
from app.itinerary.models import ItineraryItem
from app.participants.models import Participant
from app.trips.models import Trip
from app.users.models import User
from tests import factories, support


@dataclass(frozen=True)
class Place:
    """A trip as the tests use it: where creates go, and participants to refer to."""

    id: str
    me: str  # the owner's participant
    guest: str
    checklist: str


@dataclass(frozen=True)
class Kind:
    model: type[SQLModel]
    collection: Callable[[Place], str]
    body: Callable[[Place], dict[str, Any]]
    changed: dict[str, Any]  # the same body with other content


def _expense(place: Place) -> dict[str, Any]:
    return {
        "title": "Dinner",
        "amount_minor": 3000,
        "currency": "EUR",
        "spent_on": "2027-05-02",
        "payers": [{"participant_id": place.me, "amount_minor": 3000}],
        "split_mode": "equal",
        "splits": [{"participant_id": place.me}, {"participant_id": place.guest}],
    }


def _settlement(place: Place) -> dict[str, Any]:
    return {
        "from_participant_id": place.guest,
        "to_participant_id": place.me,
        "amount_minor": 1500,
        "currency": "EUR",
        "settled_on": "2027-05-03",
    }


KINDS = {
    "trip": Kind(
        Trip, lambda place: "/trips", lambda place: dict(factories.TRIP), {"name": "Elsewhere"}
    ),
    "guest": Kind(
        Participant,
        lambda place: f"/trips/{place.id}/guests",
        lambda place: {"name": "Gus"},
        {"name": "Gustav"},
    ),
    "item": Kind(
        ItineraryItem,
        lambda place: f"/trips/{place.id}/items",
        lambda place: {"kind": "meal", "title": "Lunch", "participant_ids": [place.guest]},
        {"participant_ids": []},
    ),
    "checklist": Kind(
        Checklist,
        lambda place: f"/trips/{place.id}/checklists",
        lambda place: {"kind": "packing", "title": "Bags"},
        {"kind": "todo"},
    ),
    "checklist_item": Kind(
        ChecklistItem,
        lambda place: f"/trips/{place.id}/checklists/{place.checklist}/items",
        lambda place: {"text": "Passport", "assignee_id": place.guest},
        {"done": True},
    ),
    "expense": Kind(
        Expense,
        lambda place: f"/trips/{place.id}/expenses",
        _expense,
        {"split_mode": "shares", "splits": []},
    ),
    "settlement": Kind(
        Settlement,
        lambda place: f"/trips/{place.id}/settlements",
        _settlement,
        {"note": "cash"},
    ),
}


def _place(client: TestClient, owner: User, name: str) -> Place:
    trip = factories.create_trip(client, owner, name=name)
    base = f"/trips/{trip['id']}"
    guest = client.post(f"{base}/guests", headers=support.auth(owner), json={"name": "Gus"})
    checklist = client.post(
        f"{base}/checklists", headers=support.auth(owner), json={"kind": "todo", "title": "To do"}
    )
    return Place(
        id=trip["id"],
        me=support.participant_ids(client, owner, trip["id"])[0],
        guest=guest.json()["id"],
        checklist=checklist.json()["id"],
    )


@pytest.fixture
def owner(session: Session) -> User:
    return factories.make_user(session)


@pytest.fixture
def place(client: TestClient, owner: User) -> Place:
    return _place(client, owner, "Here")


def _body(kind: Kind, place: Place, row_id: str, *, changed: bool = False) -> dict[str, Any]:
    body = {**kind.body(place), "id": row_id}
    if changed:
        body.update(kind.changed)
        if "splits" in kind.changed:  # the same people, in other proportions
            body["splits"] = [{"participant_id": place.me, "shares": 2}]
            body["splits"].append({"participant_id": place.guest, "shares": 1})
    return body


def _rows(session: Session, model: Any, row_id: str) -> int:
    return session.exec(
        select(func.count()).select_from(model).where(col(model.id) == uuid.UUID(row_id))
    ).one()


def _activity(session: Session) -> int:
    return session.exec(select(func.count()).select_from(Activity)).one()


@pytest.mark.parametrize("name", list(KINDS))
def test_a_create_with_an_id_and_its_replays(
    client: TestClient, session: Session, owner: User, place: Place, name: str
) -> None:
    kind, row_id = KINDS[name], str(uuid.uuid4())
    url, headers = kind.collection(place), support.auth(owner)
    created = client.post(url, headers=headers, json=_body(kind, place, row_id))
    assert created.status_code == 201, created.text
    assert created.json()["id"] == row_id
    assert created.headers["etag"] == f'"{created.json()["version"]}"'
    logged = _activity(session)

    for _ in range(2):  # a device that never heard back sends it again, and again
        replayed = client.post(url, headers=headers, json=_body(kind, place, row_id))
        assert replayed.status_code == 200, replayed.text
        assert replayed.json() == created.json()
        assert replayed.headers["etag"] == created.headers["etag"]
    assert _rows(session, kind.model, row_id) == 1
    assert _activity(session) == logged  # a replay records nothing

    other = client.post(url, headers=headers, json=_body(kind, place, row_id, changed=True))
    body = support.assert_problem(other, 409, "id_conflict")
    assert body["current"] == created.json()
    assert other.headers["etag"] == created.headers["etag"]
    assert _rows(session, kind.model, row_id) == 1


@pytest.mark.parametrize("name", list(KINDS))
def test_a_deleted_id_is_never_brought_back(
    client: TestClient, session: Session, owner: User, place: Place, name: str
) -> None:
    kind, row_id = KINDS[name], str(uuid.uuid4())
    url, body = kind.collection(place), _body(kind, place, row_id)
    created = client.post(url, headers=support.auth(owner), json=body)
    assert created.status_code == 201, created.text
    item_url = f"/trips/{row_id}" if name == "trip" else f"{url}/{row_id}"
    deleted = client.delete(item_url, headers=support.auth(owner, if_match="*"))
    assert deleted.status_code == 204, deleted.text

    again = client.post(url, headers=support.auth(owner), json=body)
    support.assert_problem(again, 410, "deleted")
    if name in ("expense", "settlement"):  # kept as deleted rows, for the record
        assert _rows(session, kind.model, row_id) == 1
    else:
        assert _rows(session, kind.model, row_id) == 0


@pytest.mark.parametrize("name", list(KINDS))
def test_an_id_used_in_another_trip_is_a_conflict_that_says_nothing(
    client: TestClient, session: Session, owner: User, place: Place, name: str
) -> None:
    kind, row_id = KINDS[name], str(uuid.uuid4())
    stranger = factories.make_user(session)
    theirs = _place(client, stranger, "Theirs")
    used = client.post(
        kind.collection(theirs), headers=support.auth(stranger), json=_body(kind, theirs, row_id)
    )
    assert used.status_code == 201, used.text
    rows = _rows(session, kind.model, row_id)

    mine = client.post(
        kind.collection(place), headers=support.auth(owner), json=_body(kind, place, row_id)
    )
    body = support.assert_problem(mine, 409, "id_conflict")
    assert "current" not in body
    assert "etag" not in mine.headers
    assert _rows(session, kind.model, row_id) == rows


def test_an_id_deleted_in_another_trip_is_a_conflict_not_gone(
    client: TestClient, session: Session, owner: User, place: Place
) -> None:
    stranger = factories.make_user(session)
    theirs = _place(client, stranger, "Theirs")
    row_id = str(uuid.uuid4())
    body = {"kind": "note", "title": "x", "id": row_id}
    assert (
        client.post(f"/trips/{theirs.id}/items", headers=support.auth(stranger), json=body)
    ).status_code == 201
    client.delete(
        f"/trips/{theirs.id}/items/{row_id}", headers=support.auth(stranger, if_match="*")
    )
    mine = client.post(f"/trips/{place.id}/items", headers=support.auth(owner), json=body)
    support.assert_problem(mine, 409, "id_conflict")


def test_another_members_private_item_is_a_conflict_that_says_nothing(
    client: TestClient, session: Session, owner: User, place: Place
) -> None:
    editor = factories.make_user(session)
    factories.join(client, owner, place.id, editor, "editor")
    url = KINDS["checklist_item"].collection(place)
    body = {"text": "Surprise", "private": True, "id": str(uuid.uuid4())}
    assert client.post(url, headers=support.auth(editor), json=body).status_code == 201
    replayed = client.post(url, headers=support.auth(editor), json=body)
    assert replayed.status_code == 200, replayed.text
    hidden = client.post(url, headers=support.auth(owner), json=body)
    assert "current" not in support.assert_problem(hidden, 409, "id_conflict")


def test_a_replayed_trip_answers_with_the_callers_role(
    client: TestClient, session: Session, owner: User
) -> None:
    viewer = factories.make_user(session)
    body = {**factories.TRIP, "id": str(uuid.uuid4())}
    created = client.post("/trips", headers=support.auth(owner), json=body)
    assert created.status_code == 201, created.text
    factories.join(client, owner, body["id"], viewer, "viewer")
    replayed = client.post("/trips", headers=support.auth(viewer), json=body)
    assert replayed.status_code == 200, replayed.text
    assert replayed.json()["role"] == "viewer"


def test_an_offline_device_refers_to_rows_it_named_itself(
    client: TestClient, session: Session, owner: User, place: Place
) -> None:
    """Made offline: a guest, an item with them, an expense they paid; sent twice."""
    guest_id, item_id, expense_id = (str(uuid.uuid4()) for _ in range(3))
    base = f"/trips/{place.id}"
    queue = [
        (f"{base}/guests", {"id": guest_id, "name": "Ines"}),
        (
            f"{base}/items",
            {
                "id": item_id,
                "kind": "meal",
                "title": "Tasca",
                "participant_ids": [guest_id],
            },
        ),
        (
            f"{base}/expenses",
            {
                **_expense(place),
                "id": expense_id,
                "payers": [{"participant_id": guest_id, "amount_minor": 3000}],
            },
        ),
    ]
    first = [client.post(url, headers=support.auth(owner), json=body) for url, body in queue]
    assert [response.status_code for response in first] == [201, 201, 201], first[-1].text
    again = [client.post(url, headers=support.auth(owner), json=body) for url, body in queue]
    assert [response.status_code for response in again] == [200, 200, 200]
    assert [response.json() for response in again] == [response.json() for response in first]
    assert first[1].json()["participant_ids"] == [guest_id]
    assert first[2].json()["payers"][0]["participant_id"] == guest_id


@pytest.mark.parametrize("field", ["trip_id", "version", "created_at", "created_by"])
def test_server_owned_fields_stay_refused_in_creates(
    client: TestClient, owner: User, place: Place, field: str
) -> None:
    value: Any = 3 if field == "version" else str(uuid.uuid4())
    if field == "created_at":
        value = "2027-01-01T00:00:00Z"
    body = {"kind": "note", "title": "x", "id": str(uuid.uuid4()), field: value}
    response = client.post(f"/trips/{place.id}/items", headers=support.auth(owner), json=body)
    support.assert_problem(response, 422, "validation_error")
