"""The feed's JSON, byte for byte, for every kind of row, as every kind of reader sees it.

The reference below builds the feed one model per row (`Model.model_validate(row)` and
friends) and serialises it as FastAPI does: however the service writes the feed, a client
must receive exactly this. (The service has PostgreSQL write it: app.core.json_sql.)
"""

import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text, update
from sqlmodel import Session, col, select

from app.checklists.models import Checklist, ChecklistItem, ChecklistItemPublic
from app.checklists.synced import SyncedChecklist
from app.expenses.models import Expense, ExpensePublic, Settlement, SettlementPublic
from app.expenses.service import expense_records
from app.feed.models import ChangesPublic, SnapshotPublic
from app.feed.service import Viewer
from app.itinerary.models import ItineraryItem
from app.itinerary.service import items_public
from app.participants.models import Participant, ParticipantPublic
from app.sync import registry
from app.sync.models import ChangePublic, Tombstone
from app.trips.models import MemberPublic, Role, Trip, TripMember, TripPublic
from app.users.models import User
from tests import factories, support

# --- the reference: one pydantic model per row -----------------------------------------------

Where = Callable[[Any], Any]  # a version column → condition


def _rows(session: Session, model: Any, viewer: Viewer, where: Where) -> list[Any]:
    trip_column = model.id if model is Trip else model.trip_id
    statement = select(model).where(trip_column == viewer.trip.id, where(model.version))
    return list(session.exec(statement).all())


def _upsert(entity: str, row_id: uuid.UUID, version: int, data: Any) -> ChangePublic:
    return ChangePublic(
        entity=entity, id=row_id, version=version, op="upsert", data=data.model_dump(mode="json")
    )


def _delete(entity: str, row_id: uuid.UUID, version: int) -> ChangePublic:
    return ChangePublic(entity=entity, id=row_id, version=version, op="delete", data=None)


def reference_changes(session: Session, viewer: Viewer, where: Where) -> list[ChangePublic]:
    """Rows and tombstones whose version meets `where`, in feed order, as models."""
    trip_id, hidden, base = viewer.trip.id, viewer.amounts_hidden, viewer.trip.base_currency
    out: list[ChangePublic] = []
    data: Any
    for trip in _rows(session, Trip, viewer, where):
        out.append(_upsert("trip", trip.id, trip.version, TripPublic.of(trip, viewer.role)))
    for member, user in session.exec(
        select(TripMember, User)
        .join(User, col(User.id) == TripMember.user_id)
        .where(TripMember.trip_id == trip_id, where(TripMember.version))
    ):
        out.append(_upsert("member", user.id, member.version, MemberPublic.of(member, user)))
    members = set(session.exec(select(TripMember.user_id).where(TripMember.trip_id == trip_id)))
    for participant, full_name in session.exec(
        select(Participant, User.full_name)
        .outerjoin(User, col(User.id) == Participant.user_id)
        .where(Participant.trip_id == trip_id, where(Participant.version))
    ):
        data = ParticipantPublic.of(
            participant, account_name=full_name, is_member=participant.user_id in members
        )
        out.append(_upsert("participant", participant.id, participant.version, data))
    items = _rows(session, ItineraryItem, viewer, where)
    for item, public in zip(
        items, items_public(session=session, trip_id=trip_id, items=items), strict=True
    ):
        out.append(_upsert("item", item.id, item.version, public))
    for checklist in _rows(session, Checklist, viewer, where):
        data = SyncedChecklist.model_validate(checklist, from_attributes=True)
        out.append(_upsert("checklist", checklist.id, checklist.version, data))
    for entry in _rows(session, ChecklistItem, viewer, where):
        if entry.private and entry.created_by != viewer.user_id:
            out.append(_delete("checklist_item", entry.id, entry.version))
        else:
            data = ChecklistItemPublic.model_validate(entry, from_attributes=True)
            out.append(_upsert("checklist_item", entry.id, entry.version, data))
    expenses = _rows(session, Expense, viewer, where)
    for expense in expenses:
        if expense.deleted_at is not None:
            out.append(_delete("expense", expense.id, expense.version))
    live = [expense for expense in expenses if expense.deleted_at is None]
    for record in expense_records(session=session, trip_id=trip_id, expenses=live):
        data = ExpensePublic.of(record, base_currency=base, hidden=hidden)
        out.append(_upsert("expense", record.expense.id, record.expense.version, data))
    for settlement in _rows(session, Settlement, viewer, where):
        if settlement.deleted_at is not None:
            out.append(_delete("settlement", settlement.id, settlement.version))
        else:
            data = SettlementPublic.of(settlement, base_currency=base, hidden=hidden)
            out.append(_upsert("settlement", settlement.id, settlement.version, data))
    for tombstone in session.exec(
        select(Tombstone).where(Tombstone.trip_id == trip_id, where(Tombstone.version))
    ):
        out.append(_delete(tombstone.entity, tombstone.entity_id, tombstone.version))
    order = {entity.name: entity.position for entity in registry.entities()}
    return sorted(out, key=lambda change: (change.version, order[change.entity], change.id))


# --- a trip with one of everything, and then some ------------------------------------------


def _send(client: TestClient, user: User, method: str, path: str, body: Any = None) -> Any:
    headers = support.auth(user, if_match="*" if method in ("PATCH", "DELETE") else None)
    response = client.request(method, path, headers=headers, json=body)
    assert response.status_code < 300, response.text
    return response.json() if response.content else None


@pytest.fixture
def trip(client: TestClient, session: Session) -> dict[str, Any]:
    """Every kind of row, deleted and private ones, and the awkward values: floats, decimals,
    times with and without fractions, text that JSON must escape, nulls."""
    owner, viewer, leaver = (factories.make_user(session, full_name=n) for n in ("O", "V", "L"))
    seeded = factories.seed_trip_with_everything(client, owner)
    trip_id = seeded["trip"]["id"]
    base = f"/trips/{trip_id}"
    factories.join(client, owner, trip_id, viewer, "viewer")
    factories.join(client, owner, trip_id, leaver, "editor")
    _send(client, leaver, "DELETE", f"{base}/members/{leaver.id}")  # a participant, no member
    _send(client, owner, "PATCH", base, {"hide_amounts_from_viewers": True})
    payer, guest = seeded["payer"], seeded["guest"]["id"]
    _send(
        client,
        owner,
        "POST",
        f"{base}/items",
        {
            "kind": "transport",
            "title": 'Flight "TP 1234" \\ café 🚋',
            "notes": "Line one\n\tindented\u2028 and a control-free end",
            "day": "2027-05-03",
            "start_local": "2027-05-03T10:00:00.5",
            "start_timezone": "Europe/Lisbon",
            "end_local": "2027-05-03T23:30",
            "end_timezone": "Asia/Tokyo",
            "place": {"name": "LIS", "address": "", "latitude": 38.0, "longitude": -9.1393},
            "booking_reference": "ABC123",
            "participant_ids": [guest, payer],
        },
    )
    _send(
        client,
        owner,
        "POST",
        f"{base}/items",
        {
            "kind": "note",
            "title": "Null Island",
            "place": {
                "name": "Almost nowhere",
                "latitude": 0.00001234,
                "longitude": -1e-7,
                "external_id": "osm:1",
            },
        },
    )
    gone = _send(client, owner, "POST", f"{base}/items", {"kind": "meal", "title": "Cancelled"})
    _send(client, owner, "DELETE", f"{base}/items/{gone['id']}")
    checklist = seeded["checklist"]["id"]
    _send(
        client,
        owner,
        "POST",
        f"{base}/checklists/{checklist}/items",
        {"text": "Surprise", "private": True, "assignee_id": guest},
    )
    for split_mode, splits, currency, rate in (
        (
            "percentages",
            [
                {"participant_id": payer, "percent": "33.333333"},
                {"participant_id": guest, "percent": "66.666667"},
            ],
            "USD",
            "0.9137",
        ),
        (
            "shares",
            [{"participant_id": payer, "shares": 1}, {"participant_id": guest, "shares": 2}],
            "JPY",
            "0.006100000000",
        ),
    ):
        _send(
            client,
            owner,
            "POST",
            f"{base}/expenses",
            {
                "title": f"In {currency}",
                "amount_minor": 12345,
                "currency": currency,
                "exchange_rate": rate,
                "spent_on": "2027-05-04",
                "payers": [{"participant_id": guest, "amount_minor": 12345}],
                "split_mode": split_mode,
                "splits": splits,
            },
        )
    deleted_expense = _send(
        client,
        owner,
        "POST",
        f"{base}/expenses",
        {
            "title": "Mistake",
            "amount_minor": 100,
            "currency": "EUR",
            "spent_on": "2027-05-04",
            "payers": [{"participant_id": payer, "amount_minor": 100}],
            "split_mode": "equal",
            "splits": [{"participant_id": payer}],
        },
    )
    _send(client, owner, "DELETE", f"{base}/expenses/{deleted_expense['id']}")
    _send(client, owner, "DELETE", f"{base}/settlements/{seeded['settlement']['id']}")
    for currency, rate in (("USD", "1.083700000000"), ("GBP", "2")):
        _send(
            client,
            owner,
            "POST",
            f"{base}/settlements",
            {
                "from_participant_id": payer,
                "to_participant_id": guest,
                "amount_minor": 999,
                "currency": currency,
                "exchange_rate": rate,
                "settled_on": "2027-05-05",
                "note": 'Cash, "thanks"',
            },
        )
    # Ties in the feed's order (version, kind, id, rows before tombstones): deletions of the
    # same version and kind as a live item, with ids before, after and equal to its id.
    item = session.exec(
        select(ItineraryItem).where(col(ItineraryItem.trip_id) == uuid.UUID(trip_id))
    ).first()
    assert item is not None
    for entity_id in (uuid.UUID(int=0), uuid.UUID(int=2**128 - 1), item.id):
        session.add(
            Tombstone(
                trip_id=item.trip_id, version=item.version, entity="item", entity_id=entity_id
            )
        )
    # A timestamp on the second exactly: pydantic then writes no fraction.
    session.execute(
        update(Checklist)
        .where(col(Checklist.id) == uuid.UUID(checklist))
        .values(created_at=datetime(2027, 1, 2, 3, 4, 5, tzinfo=UTC))
    )
    session.commit()
    return {"id": trip_id, "owner": owner, "viewer": viewer}


def _viewer(session: Session, trip_id: str, user: User) -> Viewer:
    found = session.get(Trip, uuid.UUID(trip_id))
    assert found is not None
    session.refresh(found)
    role = session.exec(
        select(TripMember.role).where(TripMember.trip_id == found.id, TripMember.user_id == user.id)
    ).one()
    return Viewer(trip=found, user_id=user.id, role=Role(role))


def _same(sent: bytes, expected: bytes) -> None:
    import json

    # The parsed documents first, for a readable difference; then every byte.
    assert json.loads(sent) == json.loads(expected)
    assert sent.decode() == expected.decode()


@pytest.mark.parametrize("reader", ["owner", "viewer"])
def test_snapshot_is_what_the_models_write(
    client: TestClient, session: Session, trip: dict[str, Any], reader: str
) -> None:
    user = trip[reader]
    response = client.get(f"/trips/{trip['id']}/snapshot", headers=support.auth(user))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    viewer = _viewer(session, trip["id"], user)
    rows = [
        change
        for change in reference_changes(session, viewer, lambda version: version >= 0)
        if change.op == "upsert"
    ]
    expected = SnapshotPublic(
        trip_id=viewer.trip.id, version=viewer.trip.head_version, role=viewer.role, rows=rows
    )
    _same(response.content, expected.model_dump_json().encode())
    entities = {row.entity for row in rows}
    assert entities == {entity.name for entity in registry.entities()}, entities


def _pages(
    client: TestClient, session: Session, trip: dict[str, Any], user: User, since: int, limit: int
) -> set[tuple[str, str]]:
    """Pull from `since` to the end, comparing every page with the reference's."""
    viewer = _viewer(session, trip["id"], user)
    seen: set[tuple[str, str]] = set()
    while True:
        response = client.get(
            f"/trips/{trip['id']}/changes",
            headers=support.auth(user),
            params={"since": since, "limit": limit},
        )
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "application/json"
        page = response.json()
        changes = reference_changes(session, viewer, _between(since, page["version"]))
        expected = ChangesPublic(
            since=since, version=page["version"], has_more=page["has_more"], changes=changes
        )
        _same(response.content, expected.model_dump_json().encode())
        seen |= {(change.entity, change.op) for change in changes}
        if not page["has_more"]:
            return seen
        since = page["version"]


def _between(since: int, upto: int) -> Where:
    return lambda version: (version > since) & (version <= upto)


@pytest.mark.parametrize("reader", ["owner", "viewer"])
def test_changes_are_what_the_models_write(
    client: TestClient, session: Session, trip: dict[str, Any], reader: str
) -> None:
    seen = _pages(client, session, trip, trip[reader], since=0, limit=1000)
    assert {entity for entity, op in seen if op == "upsert"} == {
        e.name for e in registry.entities()
    }
    deleted = {"item", "member", "expense", "settlement"}
    hidden = {"checklist_item"} if reader == "viewer" else set()
    assert {entity for entity, op in seen if op == "delete"} == deleted | hidden


@pytest.mark.parametrize("reader", ["owner", "viewer"])
def test_small_pages_are_what_the_models_write(
    client: TestClient, session: Session, trip: dict[str, Any], reader: str
) -> None:
    # From the version that hid amounts: a viewer's older cursor must reset.
    since = _viewer(session, trip["id"], trip[reader]).trip.access_version
    assert len(_pages(client, session, trip, trip[reader], since=since, limit=2)) > 4


def test_the_feed_is_written_in_utc_whatever_the_session_time_zone(
    client: TestClient, session: Session, trip: dict[str, Any]
) -> None:
    url, headers = f"/trips/{trip['id']}/changes", support.auth(trip["owner"])
    in_utc = client.get(url, headers=headers, params={"since": 0}).content
    assert b'"2027-01-02T03:04:05Z"' in in_utc
    session.execute(text("SET TIME ZONE 'America/New_York'"))
    assert client.get(url, headers=headers, params={"since": 0}).content == in_utc
