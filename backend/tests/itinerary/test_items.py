"""Itinerary items: create, read, edit, delete, validation, times and places, cross-trip refs."""

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, func, select

from app.activity.models import Activity
from app.itinerary.models import ItemKind, ItemParticipant, ItineraryItem
from app.trips.models import Role, TripMember
from tests import factories, support


def _stored_items(session: Session, trip_id: str) -> int:
    return session.exec(
        select(func.count())
        .select_from(ItineraryItem)
        .where(ItineraryItem.trip_id == uuid.UUID(trip_id))
    ).one()


def _actions(session: Session, trip_id: str) -> list[str]:
    rows = session.exec(
        select(Activity.action)
        .where(Activity.trip_id == uuid.UUID(trip_id))
        .order_by(Activity.created_at)  # type: ignore[arg-type]
    ).all()
    return list(rows)


def test_create_read_update_delete(client: TestClient, session: Session) -> None:
    owner = factories.make_user(session)
    trip = factories.create_trip(client, owner)
    me = support.participant_ids(client, owner, trip["id"])[0]
    guest = factories.add_guest(client, owner, trip["id"])
    headers = support.auth(owner)

    item = factories.add_item(
        client,
        owner,
        trip["id"],
        kind="lodging",
        title="Hotel Avenida",
        notes="Late check-in\nAsk for a quiet room",
        day="2027-05-01",
        start_local="2027-05-01T15:00:00",
        end_local="2027-05-04T11:00:00",
        place={
            "name": "Hotel Avenida",
            "address": "Av. da Liberdade 1, Lisboa",
            "latitude": 38.7223,
            "longitude": -9.1393,
            "external_id": "osm:node/123",
        },
        booking_reference="ABC123",
        participant_ids=[me, guest, me],
    )
    assert item["kind"] == "lodging"
    assert item["day"] == "2027-05-01"
    assert item["start_timezone"] == item["end_timezone"] == "Europe/Lisbon"
    assert item["place"]["latitude"] == 38.7223
    assert sorted(item["participant_ids"]) == sorted([me, guest])
    assert item["created_by"] == str(owner.id)
    assert "trip_id" not in item

    url = f"/trips/{trip['id']}/items/{item['id']}"
    assert client.get(url, headers=headers).json() == item
    assert support.list_items(client, owner, trip["id"]) == [item]

    updated = client.patch(
        url,
        headers=support.auth(owner, if_match=item["version"]),
        json={"title": "Hotel Lisboa", "place": None, "participant_ids": [guest]},
    )
    assert updated.status_code == 200, updated.text
    body = updated.json()
    assert (body["title"], body["place"]) == ("Hotel Lisboa", None)
    assert body["participant_ids"] == [guest]
    assert body["notes"] == item["notes"]
    assert body["start_utc"] == item["start_utc"]
    assert body["updated_at"] > item["updated_at"]

    deleted = client.delete(url, headers=support.auth(owner, if_match=body["version"]))
    assert deleted.status_code == 204
    support.assert_problem(client.get(url, headers=headers), 404, "item_not_found")
    support.assert_problem(
        client.delete(url, headers=support.auth(owner, if_match="*")), 404, "item_not_found"
    )
    links = session.exec(
        select(ItemParticipant).where(ItemParticipant.item_id == uuid.UUID(item["id"]))
    ).all()
    assert links == []
    assert _actions(session, trip["id"])[-3:] == [
        "itinerary_item.created",
        "itinerary_item.updated",
        "itinerary_item.deleted",
    ]


def test_an_editor_writes_and_a_viewer_reads(client: TestClient, session: Session) -> None:
    owner, editor, viewer = (factories.make_user(session) for _ in range(3))
    trip = factories.create_trip(client, owner)
    for user, role in ((editor, Role.EDITOR), (viewer, Role.VIEWER)):
        session.add(TripMember(trip_id=uuid.UUID(trip["id"]), user_id=user.id, role=role))
    session.commit()
    item = factories.add_item(client, editor, trip["id"], title="By the editor")
    assert support.list_items(client, viewer, trip["id"]) == [item]
    path = f"/trips/{trip['id']}/items/{item['id']}"
    assert client.get(path, headers=support.auth(viewer)).status_code == 200
    support.assert_problem(
        client.patch(path, headers=support.auth(viewer, if_match="*"), json={"title": "x"}),
        403,
        "read_only_member",
    )


def test_times_keep_wall_clock_zone_and_instant(client: TestClient, session: Session) -> None:
    owner = factories.make_user(session)
    trip = factories.create_trip(client, owner)
    flight = factories.add_item(
        client,
        owner,
        trip["id"],
        kind="transport",
        title="LIS to NRT",
        day="2027-05-03",
        start_local="2027-05-03T10:00:00",
        end_local="2027-05-04T06:00:00",
        end_timezone="Asia/Tokyo",
    )
    # Lisbon is UTC+1 in May, Tokyo UTC+9.
    assert flight["start_local"] == "2027-05-03T10:00:00"
    assert flight["start_timezone"] == "Europe/Lisbon"  # the trip's zone by default
    assert flight["end_local"] == "2027-05-04T06:00:00"
    assert flight["end_timezone"] == "Asia/Tokyo"
    assert datetime.fromisoformat(flight["start_utc"]) == datetime(2027, 5, 3, 9, tzinfo=UTC)
    assert datetime.fromisoformat(flight["end_utc"]) == datetime(2027, 5, 3, 21, tzinfo=UTC)

    # Changing only a zone re-reads the same wall-clock time in it.
    moved = client.patch(
        f"/trips/{trip['id']}/items/{flight['id']}",
        headers=support.auth(owner, if_match="*"),
        json={"start_timezone": "UTC"},
    ).json()
    assert moved["start_local"] == "2027-05-03T10:00:00"
    assert datetime.fromisoformat(moved["start_utc"]) == datetime(2027, 5, 3, 10, tzinfo=UTC)

    # Clearing the start while an end remains is refused; clearing both is fine.
    url = f"/trips/{trip['id']}/items/{flight['id']}"
    support.assert_problem(
        client.patch(url, headers=support.auth(owner, if_match="*"), json={"start_local": None}),
        422,
        "end_without_start",
    )
    support.assert_problem(
        client.patch(
            url,
            headers=support.auth(owner, if_match="*"),
            json={"start_local": None, "end_local": None, "start_timezone": "UTC"},
        ),
        422,
        "timezone_without_time",
    )
    cleared = client.patch(
        url,
        headers=support.auth(owner, if_match="*"),
        json={"start_local": None, "end_local": None},
    ).json()
    assert [cleared[k] for k in ("start_local", "start_timezone", "end_utc")] == [None] * 3


def test_an_end_before_the_start_in_utc_is_refused(client: TestClient, session: Session) -> None:
    owner = factories.make_user(session)
    trip = factories.create_trip(client, owner)
    # 12:00 in Tokyo comes before 10:00 in Lisbon on the same date.
    response = client.post(
        f"/trips/{trip['id']}/items",
        headers=support.auth(owner),
        json={
            "kind": "transport",
            "title": "Impossible",
            "start_local": "2027-05-03T10:00:00",
            "end_local": "2027-05-03T12:00:00",
            "end_timezone": "Asia/Tokyo",
        },
    )
    support.assert_problem(response, 422, "end_before_start")
    item = factories.add_item(client, owner, trip["id"], start_local="2027-05-03T10:00:00")
    support.assert_problem(
        client.patch(
            f"/trips/{trip['id']}/items/{item['id']}",
            headers=support.auth(owner, if_match="*"),
            json={"end_local": "2027-05-03T09:59:59"},
        ),
        422,
        "end_before_start",
    )
    assert _stored_items(session, trip["id"]) == 1


@pytest.mark.parametrize(
    ("changes", "code"),
    [
        ({"kind": "party"}, "validation_error"),
        ({"title": "   "}, "validation_error"),
        ({"title": "x" * 201}, "validation_error"),
        ({"title": "nul\x00byte"}, "validation_error"),
        ({"day": "2027-04-30"}, "day_outside_trip"),
        ({"day": "2027-05-08"}, "day_outside_trip"),
        ({"day": "2027-02-30"}, "validation_error"),
        ({"place": {"name": "North", "latitude": 90.5, "longitude": 0}}, "validation_error"),
        ({"place": {"name": "West", "latitude": 0, "longitude": -180.01}}, "validation_error"),
        ({"place": {"name": "Half", "latitude": 10}}, "validation_error"),
        ({"place": {"address": "no name"}}, "validation_error"),
        ({"place": {"name": "P", "color": "red"}}, "validation_error"),
        ({"start_local": "2027-05-01T10:00:00+02:00"}, "validation_error"),
        ({"start_local": "2027-05-01T10:00", "start_timezone": "Mars/Olympus"}, "validation_error"),
        ({"end_local": "2027-05-01T10:00:00"}, "end_without_start"),
        ({"start_timezone": "Asia/Tokyo"}, "timezone_without_time"),
        (
            {"start_local": "2027-05-01T10:00", "end_timezone": "Asia/Tokyo"},
            "timezone_without_time",
        ),
        # Lisbon's clocks jump from 01:00 to 02:00 on 28 March 2027.
        ({"start_local": "2027-03-28T01:30:00"}, "nonexistent_local_time"),
        # Within hours of the calendar's ends, converting to UTC overflows.
        (
            {"start_local": "9999-12-31T23:00:00", "start_timezone": "America/Los_Angeles"},
            "invalid_local_time",
        ),
        (
            {"start_local": "0001-01-01T00:00:00", "start_timezone": "Asia/Tokyo"},
            "invalid_local_time",
        ),
        ({"start_local": "2027-05-01T10:00", "start_timezone": "localtime"}, "validation_error"),
        ({"participant_ids": ["not-a-uuid"]}, "validation_error"),
        ({"participant_ids": [str(uuid.uuid4())]}, "participant_not_in_trip"),
        ({"order_key": "V"}, "validation_error"),
        ({"id": "not-a-uuid"}, "validation_error"),
        ({"trip_id": str(uuid.uuid4())}, "validation_error"),
        ({"version": 3}, "validation_error"),
        ({"created_at": "2027-05-01T10:00:00Z"}, "validation_error"),
    ],
)
def test_invalid_items_are_422_and_store_nothing(
    client: TestClient, session: Session, changes: dict[str, object], code: str
) -> None:
    owner = factories.make_user(session)
    trip = factories.create_trip(client, owner)
    body = {"kind": "meal", "title": "Dinner", **changes}
    response = client.post(f"/trips/{trip['id']}/items", headers=support.auth(owner), json=body)
    support.assert_problem(response, 422, code)
    assert _stored_items(session, trip["id"]) == 0
    assert "itinerary_item.created" not in _actions(session, trip["id"])


def test_not_a_number_coordinates_are_refused(client: TestClient, session: Session) -> None:
    owner = factories.make_user(session)
    trip = factories.create_trip(client, owner)
    body = {"kind": "meal", "title": "x", "place": {"name": "p", "latitude": float("nan")}}
    body["place"]["longitude"] = float("inf")  # type: ignore[index]
    response = client.post(
        f"/trips/{trip['id']}/items",
        headers={**support.auth(owner), "Content-Type": "application/json"},
        content=json.dumps(body).encode(),
    )
    support.assert_problem(response, 422)
    assert _stored_items(session, trip["id"]) == 0


@pytest.mark.parametrize(
    "patch",
    [
        {"title": None},
        {"kind": None},
        {"participant_ids": None},
        {"start_timezone": None},
        {"day": "2027-05-02"},
        {"order_key": "a"},
        {"booking_reference": "x" * 201},
    ],
)
def test_invalid_edits_change_nothing(
    client: TestClient, session: Session, patch: dict[str, object]
) -> None:
    owner = factories.make_user(session)
    trip = factories.create_trip(client, owner)
    item = factories.add_item(
        client, owner, trip["id"], day="2027-05-01", start_local="2027-05-01T09:00"
    )
    url = f"/trips/{trip['id']}/items/{item['id']}"
    support.assert_problem(
        client.patch(url, headers=support.auth(owner, if_match="*"), json=patch), 422
    )
    assert client.get(url, headers=support.auth(owner)).json() == item


def test_sql_looking_text_is_just_text(client: TestClient, session: Session) -> None:
    owner = factories.make_user(session)
    trip = factories.create_trip(client, owner)
    title = "Robert'); DROP TABLE itinerary_items;--"
    assert factories.add_item(client, owner, trip["id"], title=title)["title"] == title


def test_a_participant_of_another_trip_is_refused(client: TestClient, session: Session) -> None:
    owner = factories.make_user(session)
    trip, other = (
        factories.create_trip(client, owner),
        factories.create_trip(client, owner, name="Other"),
    )
    stranger = factories.add_guest(client, owner, other["id"], name="Elsewhere")
    response = client.post(
        f"/trips/{trip['id']}/items",
        headers=support.auth(owner),
        json={"kind": "meal", "title": "Dinner", "participant_ids": [stranger]},
    )
    body = support.assert_problem(response, 422, "participant_not_in_trip")
    assert stranger in body["detail"]
    assert _stored_items(session, trip["id"]) == 0

    item = factories.add_item(client, owner, trip["id"])
    support.assert_problem(
        client.patch(
            f"/trips/{trip['id']}/items/{item['id']}",
            headers=support.auth(owner, if_match="*"),
            json={"participant_ids": [stranger]},
        ),
        422,
        "participant_not_in_trip",
    )
    # An item of another trip is not found through this trip, even for a member of both.
    foreign = factories.add_item(client, owner, other["id"])
    support.assert_problem(
        client.get(f"/trips/{trip['id']}/items/{foreign['id']}", headers=support.auth(owner)),
        404,
        "item_not_found",
    )


def test_the_database_refuses_cross_trip_links(client: TestClient, session: Session) -> None:
    """The composite foreign key is the backstop should a service ever skip its check."""
    owner = factories.make_user(session)
    trip, other = (
        factories.create_trip(client, owner),
        factories.create_trip(client, owner, name="Other"),
    )
    item = factories.add_item(client, owner, trip["id"])
    stranger = factories.add_guest(client, owner, other["id"])
    session.add(
        ItemParticipant(
            trip_id=uuid.UUID(trip["id"]),
            item_id=uuid.UUID(item["id"]),
            participant_id=uuid.UUID(stranger),
        )
    )
    with pytest.raises(IntegrityError, match="fk_itinerary_item_participants_trip_id_trip_partic"):
        session.flush()
    session.rollback()


@pytest.mark.parametrize(
    ("fields", "constraint"),
    [
        ({"latitude": 91.0, "longitude": 0.0, "place_name": "x"}, "latitude_range"),
        ({"latitude": 0.0, "longitude": 181.0, "place_name": "x"}, "longitude_range"),
        ({"latitude": 1.0, "place_name": "x"}, "coordinates_paired"),
        ({"place_address": "somewhere"}, "place_named"),
        ({"order_key": "V0"}, "order_key_format"),
        ({"order_key": "a-b"}, "order_key_format"),
        ({"start_local": datetime(2027, 5, 1, 9)}, "start_complete"),
        (
            {
                "start_local": datetime(2027, 5, 1, 9),
                "start_timezone": "UTC",
                "start_utc": datetime(2027, 5, 1, 9, tzinfo=UTC),
                "end_local": datetime(2027, 5, 1, 8),
                "end_timezone": "UTC",
                "end_utc": datetime(2027, 5, 1, 8, tzinfo=UTC),
            },
            "end_not_before_start",
        ),
        ({"kind": "party"}, "kind"),
    ],
)
def test_the_database_checks_what_must_always_hold(
    client: TestClient, session: Session, fields: dict[str, object], constraint: str
) -> None:
    owner = factories.make_user(session)
    trip = factories.create_trip(client, owner)
    values: dict[str, Any] = {"kind": ItemKind.NOTE, "title": "t", "order_key": "V", **fields}
    session.add(ItineraryItem(trip_id=uuid.UUID(trip["id"]), **values))
    with pytest.raises(IntegrityError, match=f"ck_itinerary_items_{constraint}"):
        session.flush()
    session.rollback()


def test_order_keys_are_unique_per_day_including_unscheduled(
    client: TestClient, session: Session
) -> None:
    owner = factories.make_user(session)
    trip = factories.create_trip(client, owner)
    trip_id = uuid.UUID(trip["id"])
    session.add(ItineraryItem(trip_id=trip_id, kind=ItemKind.NOTE, title="a", order_key="V"))
    session.flush()
    # NULLS NOT DISTINCT: two unscheduled items cannot share a key either.
    session.add(ItineraryItem(trip_id=trip_id, kind=ItemKind.NOTE, title="b", order_key="V"))
    with pytest.raises(IntegrityError, match="uq_itinerary_items_trip_id_day_order_key"):
        session.flush()
    session.rollback()


def test_deleting_the_trip_removes_its_items(client: TestClient, session: Session) -> None:
    owner = factories.make_user(session)
    trip = factories.create_trip(client, owner)
    me = support.participant_ids(client, owner, trip["id"])[0]
    factories.add_item(client, owner, trip["id"], day="2027-05-02", participant_ids=[me])
    assert (
        client.delete(f"/trips/{trip['id']}", headers=support.auth(owner, if_match="*")).status_code
        == 204
    )
    assert _stored_items(session, trip["id"]) == 0
    links = session.exec(
        select(ItemParticipant).where(ItemParticipant.trip_id == uuid.UUID(trip["id"]))
    ).all()
    assert links == []


def test_a_guest_who_takes_part_in_an_item_is_kept(client: TestClient, session: Session) -> None:
    """Taking part is part of the trip's record: the participants rule refuses the delete."""
    owner = factories.make_user(session)
    trip = factories.create_trip(client, owner)
    guest = factories.add_guest(client, owner, trip["id"])
    factories.add_item(client, owner, trip["id"], participant_ids=[guest])
    support.assert_problem(
        client.delete(
            f"/trips/{trip['id']}/guests/{guest}", headers=support.auth(owner, if_match="*")
        ),
        409,
        "participant_has_history",
    )


def test_filters_and_plan_order(client: TestClient, session: Session) -> None:
    owner = factories.make_user(session)
    trip = factories.create_trip(client, owner)
    anywhere = factories.add_item(client, owner, trip["id"], title="Trip-wide")
    second = factories.add_item(client, owner, trip["id"], title="Day 2", day="2027-05-02")
    first_b = factories.add_item(client, owner, trip["id"], title="Day 1 b", day="2027-05-01")
    first_a = factories.add_item(client, owner, trip["id"], title="Day 1 a")
    client.post(
        f"/trips/{trip['id']}/items/{first_a['id']}/move",
        headers=support.auth(owner),
        json={"day": "2027-05-01", "before_id": first_b["id"]},
    )
    everything = support.list_items(client, owner, trip["id"])
    assert [i["id"] for i in everything] == [
        first_a["id"],
        first_b["id"],
        second["id"],
        anywhere["id"],
    ]
    assert [
        i["title"] for i in support.list_items(client, owner, trip["id"], day="2027-05-01")
    ] == [
        "Day 1 a",
        "Day 1 b",
    ]
    assert [
        i["title"] for i in support.list_items(client, owner, trip["id"], unscheduled="true")
    ] == ["Trip-wide"]
    assert support.list_items(client, owner, trip["id"], day="2027-05-05") == []
    headers = support.auth(owner)
    support.assert_problem(
        client.get(
            f"/trips/{trip['id']}/items",
            headers=headers,
            params={"day": "2027-05-01", "unscheduled": "true"},
        ),
        422,
        "conflicting_filters",
    )
    support.assert_problem(
        client.get(f"/trips/{trip['id']}/items", headers=headers, params={"day": "soon"}), 422
    )


def test_pages_cover_every_item_once_in_plan_order(client: TestClient, session: Session) -> None:
    owner = factories.make_user(session)
    trip = factories.create_trip(client, owner)
    for index, day in enumerate(
        ["2027-05-03", None, "2027-05-01", None, "2027-05-03", "2027-05-07"]
    ):
        factories.add_item(client, owner, trip["id"], title=f"#{index}", day=day)
    expected = [item["id"] for item in support.list_items(client, owner, trip["id"])]
    assert len(expected) == 6
    for params in ({}, {"unscheduled": "true"}, {"day": "2027-05-03"}):
        seen: list[str] = []
        cursor = None
        while True:
            query: dict[str, Any] = {"limit": 2, **params}
            if cursor:
                query["cursor"] = cursor
            page = client.get(
                f"/trips/{trip['id']}/items", headers=support.auth(owner), params=query
            ).json()
            seen += [item["id"] for item in page["items"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert seen == [i["id"] for i in support.list_items(client, owner, trip["id"], **params)]
    # A cursor from another list is refused, not misread.
    factories.create_trip(client, owner, name="Second")
    trips_cursor = client.get("/trips", headers=support.auth(owner), params={"limit": 1})
    support.assert_problem(
        client.get(
            f"/trips/{trip['id']}/items",
            headers=support.auth(owner),
            params={"cursor": trips_cursor.json()["next_cursor"]},
        ),
        400,
        "invalid_cursor",
    )
