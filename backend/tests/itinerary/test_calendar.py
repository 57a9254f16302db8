"""Calendar feeds: the feed token (issue, replace, revoke) and the trip's iCalendar document,
parsed back with icalendar and checked against RFC 5545's essentials."""

import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import icalendar
from fastapi.testclient import TestClient
from sqlmodel import Session

from app.trips.models import Role
from app.users.models import User
from tests import factories, support

# A week in Paris across the end of summer time (Sunday 2027-10-31, 03:00 CEST → 02:00 CET).
PARIS_TRIP = {"start_date": "2027-10-28", "end_date": "2027-11-03", "timezone": "Europe/Paris"}


def _feed_token(client: TestClient, user: User) -> str:
    response = client.post("/users/me/calendar-token", headers=support.auth(user))
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["feed_path"] == f"/trips/{{trip_id}}/calendar.ics?token={body['token']}"
    assert response.headers["cache-control"] == "no-store"
    return str(body["token"])


def _feed(client: TestClient, trip_id: str, token: str) -> Any:
    return client.get(f"/trips/{trip_id}/calendar.ics", params={"token": token})


def _calendar(client: TestClient, trip_id: str, token: str) -> icalendar.Calendar:
    response = _feed(client, trip_id, token)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "text/calendar; charset=utf-8"
    return icalendar.Calendar.from_ical(response.content)


def _events(calendar: icalendar.Calendar) -> dict[str, icalendar.Component]:
    return {str(event["SUMMARY"]): event for event in calendar.walk("VEVENT")}


def test_the_document_keeps_rfc_5545s_essentials(client: TestClient, session: Session) -> None:
    owner = factories.make_user(session)
    trip = factories.create_trip(client, owner, **PARIS_TRIP)
    long_notes = "Bring the tickets. " * 20 + "Ça coûte 12 €."  # folded, with multi-byte text
    timed = factories.add_item(
        client,
        owner,
        trip["id"],
        title="Louvre",
        day="2027-10-29",
        start_local="2027-10-29T10:00:00",
        end_local="2027-10-29T13:30:00",
        place={"name": "Musée du Louvre", "address": "Rue de Rivoli, Paris"},
        booking_reference="LOUVRE-42",
        notes=long_notes,
    )
    all_day = factories.add_item(client, owner, trip["id"], title="Versailles", day="2027-10-30")
    factories.add_item(client, owner, trip["id"], kind="note", title="Someday")  # no day, no time
    token = _feed_token(client, owner)

    raw = _feed(client, trip["id"], token).content
    lines = raw.split(b"\r\n")
    assert raw.endswith(b"\r\n")
    assert b"\n" not in raw.replace(b"\r\n", b"")  # every line ends in CRLF
    assert all(len(line) <= 75 for line in lines), max(lines, key=len)
    assert any(line.startswith(b" ") for line in lines)  # the long description was folded

    calendar = icalendar.Calendar.from_ical(raw)
    assert calendar["VERSION"] == "2.0"
    assert calendar["PRODID"] == "-//TripSync//TripSync API//EN"
    events = _events(calendar)
    assert set(events) == {"Louvre", "Versailles"}  # the unscheduled note has no place here
    for event in events.values():
        for required in ("UID", "DTSTAMP", "DTSTART"):
            assert required in event
    louvre = events["Louvre"]
    assert louvre["UID"] == f"{timed['id']}@tripsync"
    assert louvre["LOCATION"] == "Musée du Louvre, Rue de Rivoli, Paris"
    description = str(louvre["DESCRIPTION"])
    assert "Booking reference: LOUVRE-42" in description
    assert long_notes in description
    assert louvre["DTSTART"].params["TZID"] == "Europe/Paris"
    paris = ZoneInfo("Europe/Paris")
    assert louvre.decoded("DTEND") == datetime(2027, 10, 29, 13, 30, tzinfo=paris)
    zones = [str(zone["TZID"]) for zone in calendar.walk("VTIMEZONE")]
    assert zones == ["Europe/Paris"]

    versailles = events["Versailles"]
    assert versailles["UID"] == f"{all_day['id']}@tripsync"
    assert versailles["DTSTART"].params["VALUE"] == "DATE"
    assert versailles.decoded("DTSTART") == date(2027, 10, 30)
    assert versailles.decoded("DTEND") == date(2027, 10, 31)
    assert b"DTSTART;VALUE=DATE:20271030\r\n" in raw


def test_items_either_side_of_a_dst_change_keep_their_wall_times(
    client: TestClient, session: Session
) -> None:
    owner = factories.make_user(session)
    trip = factories.create_trip(client, owner, **PARIS_TRIP)
    for title, day in (("Before", "2027-10-30"), ("After", "2027-11-01")):
        factories.add_item(
            client, owner, trip["id"], title=title, day=day, start_local=f"{day}T09:00:00"
        )
    # A flight leaving Paris and landing in New York: each end in its own zone.
    factories.add_item(
        client,
        owner,
        trip["id"],
        kind="transport",
        title="Flight",
        day="2027-11-03",
        start_local="2027-11-03T10:00:00",
        end_local="2027-11-03T12:30:00",
        end_timezone="America/New_York",
    )
    token = _feed_token(client, owner)

    calendar = _calendar(client, trip["id"], token)
    events = _events(calendar)
    before, after = events["Before"].decoded("DTSTART"), events["After"].decoded("DTSTART")
    assert (before.hour, after.hour) == (9, 9)
    assert before.utcoffset() == timedelta(hours=2)  # CEST
    assert after.utcoffset() == timedelta(hours=1)  # CET
    assert before.astimezone(UTC) == datetime(2027, 10, 30, 7, tzinfo=UTC)
    assert after.astimezone(UTC) == datetime(2027, 11, 1, 8, tzinfo=UTC)
    flight = events["Flight"]
    assert flight["DTSTART"].params["TZID"] == "Europe/Paris"
    assert flight["DTEND"].params["TZID"] == "America/New_York"
    landing = datetime(2027, 11, 3, 16, 30, tzinfo=UTC)  # New York is still on EDT
    assert flight.decoded("DTEND").astimezone(UTC) == landing

    # The VTIMEZONE states both offsets and the change between them.
    paris = next(z for z in calendar.walk("VTIMEZONE") if z["TZID"] == "Europe/Paris")
    transitions = {
        (c.name, c.decoded("TZOFFSETFROM"), c.decoded("TZOFFSETTO")) for c in paris.subcomponents
    }
    assert ("STANDARD", timedelta(hours=2), timedelta(hours=1)) in transitions
    assert ("DAYLIGHT", timedelta(hours=1), timedelta(hours=2)) in transitions
    assert {str(z["TZID"]) for z in calendar.walk("VTIMEZONE")} == {
        "Europe/Paris",
        "America/New_York",
    }
    # The zone's own definition agrees with the offset the event was read with.
    standard = next(c for c in paris.subcomponents if c.name == "STANDARD")
    assert standard.decoded("TZOFFSETTO") == after.utcoffset()


def test_an_edit_raises_the_sequence_and_keeps_the_uid_a_delete_removes_the_event(
    client: TestClient, session: Session
) -> None:
    owner = factories.make_user(session)
    trip = factories.create_trip(client, owner, **PARIS_TRIP)
    item = factories.add_item(
        client, owner, trip["id"], title="Dinner", day="2027-10-29", start_local="2027-10-29T20:00"
    )
    token = _feed_token(client, owner)
    first = _events(_calendar(client, trip["id"], token))["Dinner"]

    url = f"/trips/{trip['id']}/items/{item['id']}"
    edited = client.patch(
        url,
        headers=support.auth(owner, if_match=item["version"]),
        json={"start_local": "2027-10-29T20:30:00"},
    )
    assert edited.status_code == 200, edited.text
    second = _events(_calendar(client, trip["id"], token))["Dinner"]
    assert second["UID"] == first["UID"]
    assert second.decoded("SEQUENCE") > first.decoded("SEQUENCE")
    assert second.decoded("SEQUENCE") == edited.json()["version"]
    assert second.decoded("DTSTAMP") >= first.decoded("DTSTAMP")
    assert second.decoded("DTSTART").minute == 30

    deleted = client.delete(url, headers=support.auth(owner, if_match=edited.json()["version"]))
    assert deleted.status_code == 204, deleted.text
    assert _events(_calendar(client, trip["id"], token)) == {}


def test_a_token_serves_only_its_users_trips(client: TestClient, session: Session) -> None:
    owner, viewer, outsider = (factories.make_user(session) for _ in range(3))
    trip = factories.create_trip(client, owner)
    factories.add_member(session, trip["id"], viewer, Role.VIEWER)
    other_trip = factories.create_trip(client, outsider)

    viewer_token = _feed_token(client, viewer)
    outsider_token = _feed_token(client, outsider)
    assert _feed(client, trip["id"], viewer_token).status_code == 200  # a viewer reads it too
    support.assert_problem(_feed(client, trip["id"], outsider_token), 404, "trip_not_found")
    support.assert_problem(_feed(client, other_trip["id"], viewer_token), 404, "trip_not_found")
    missing = _feed(client, str(uuid.uuid4()), viewer_token)
    assert missing.json() == _feed(client, other_trip["id"], viewer_token).json()
    # A member who leaves (here: is removed) loses the feed at once.
    removed = client.delete(
        f"/trips/{trip['id']}/members/{viewer.id}", headers=support.auth(owner, if_match="*")
    )
    assert removed.status_code == 204, removed.text
    support.assert_problem(_feed(client, trip["id"], viewer_token), 404, "trip_not_found")


def test_replacing_or_revoking_the_token_stops_the_old_address(
    client: TestClient, session: Session
) -> None:
    owner = factories.make_user(session)
    trip = factories.create_trip(client, owner)
    first = _feed_token(client, owner)
    second = _feed_token(client, owner)
    assert first != second
    support.assert_problem(_feed(client, trip["id"], first), 404, "calendar_feed_not_found")
    assert _feed(client, trip["id"], second).status_code == 200

    revoked = client.delete("/users/me/calendar-token", headers=support.auth(owner))
    assert revoked.status_code == 204, revoked.text
    support.assert_problem(_feed(client, trip["id"], second), 404, "calendar_feed_not_found")
    again = client.delete("/users/me/calendar-token", headers=support.auth(owner))
    assert again.status_code == 204  # nothing left to revoke is not an error
    for made_up in ("x", "a" * 128, second[:-1]):
        support.assert_problem(_feed(client, trip["id"], made_up), 404, "calendar_feed_not_found")
    support.assert_problem(_feed(client, trip["id"], "a" * 129), 422)


def test_the_account_export_says_since_when_never_the_token(
    client: TestClient, session: Session
) -> None:
    owner = factories.make_user(session)
    exported = client.get("/users/me/export", headers=support.auth(owner))
    assert exported.json()["calendar_feed_tokens"] == []
    token = _feed_token(client, owner)
    exported = client.get("/users/me/export", headers=support.auth(owner))
    assert exported.status_code == 200, exported.text
    (row,) = exported.json()["calendar_feed_tokens"]
    assert set(row) == {"created_at"}
    assert token not in exported.text
