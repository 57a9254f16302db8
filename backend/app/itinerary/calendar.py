"""A trip's itinerary as an iCalendar document (RFC 5545), for calendar apps to subscribe to.

One VEVENT per item with a time or a day: timed items at their local wall-clock time in
their own zone (with that zone's VTIMEZONE), items with only a day as all-day DATE events.
Unscheduled items without a time have no place in a calendar and are left out; deleted
items are gone from the table, so from the feed too.
"""

from collections.abc import Iterable
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from icalendar import Calendar, Event

from app.itinerary.models import ItineraryItem
from app.trips.models import Trip

PRODID = "-//TripSync//TripSync API//EN"
UID_DOMAIN = "tripsync"
# The VTIMEZONE components describe the zones' rules from a year before the trip to a year
# after it: enough for every item on it, without decades of history in each download.
_ZONE_MARGIN = timedelta(days=366)


def item_uid(item: ItineraryItem) -> str:
    """The item's UID, the same in every download: calendar apps update the event by it."""
    return f"{item.id}@{UID_DOMAIN}"


def _local(instant: datetime, zone: str) -> datetime:
    # From the stored UTC instant, so the wall time keeps the offset (and fold) it was saved with.
    return instant.astimezone(ZoneInfo(zone))


def _location(item: ItineraryItem) -> str | None:
    parts = [part for part in (item.place_name, item.place_address) if part]
    return ", ".join(parts) or None


def _description(item: ItineraryItem) -> str | None:
    parts = []
    if item.booking_reference:
        parts.append(f"Booking reference: {item.booking_reference}")
    if item.notes:
        parts.append(item.notes)
    return "\n\n".join(parts) or None


def _event(item: ItineraryItem) -> Event | None:
    event = Event()
    event.add("uid", item_uid(item))
    event.add("dtstamp", item.updated_at)
    event.add("created", item.created_at)
    event.add("last-modified", item.updated_at)
    # The item's version only grows, as SEQUENCE must with each revision.
    event.add("sequence", item.version)
    event.add("summary", item.title)
    event.add("categories", [str(item.kind)])
    if item.start_utc is not None and item.start_timezone is not None:
        event.add("dtstart", _local(item.start_utc, item.start_timezone))
        if item.end_utc is not None and item.end_timezone is not None:
            event.add("dtend", _local(item.end_utc, item.end_timezone))
    elif item.day is not None:
        event.add("dtstart", item.day)
        event.add("dtend", item.day + timedelta(days=1))
    else:
        return None
    location = _location(item)
    if location is not None:
        event.add("location", location)
    if item.latitude is not None and item.longitude is not None:
        event.add("geo", (item.latitude, item.longitude))
    description = _description(item)
    if description is not None:
        event.add("description", description)
    return event


def trip_calendar(trip: Trip, items: Iterable[ItineraryItem]) -> bytes:
    """The trip's calendar: UTF-8, CRLF line endings, lines folded at 75 octets."""
    calendar = Calendar()
    calendar.add("prodid", PRODID)
    calendar.add("version", "2.0")
    calendar.add("calscale", "GREGORIAN")
    calendar.add("x-wr-calname", trip.name)
    calendar.add("x-wr-timezone", trip.timezone)
    first, last = trip.start_date, trip.end_date
    for item in items:
        event = _event(item)
        if event is not None:
            calendar.add_component(event)
            for instant in (item.start_utc, item.end_utc):
                if instant is not None:  # an item's times may lie outside the trip's dates
                    first, last = min(first, instant.date()), max(last, instant.date())
    calendar.add_missing_timezones(
        first_date=_year_start(first - _ZONE_MARGIN), last_date=_year_start(last + _ZONE_MARGIN)
    )
    document: bytes = calendar.to_ical()
    return document


def _year_start(day: date) -> date:
    return date(day.year, 1, 1)
