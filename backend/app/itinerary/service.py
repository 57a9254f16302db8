"""The itinerary: items on the trip's days, their order, their people, and the days themselves.

Concurrency: every write that places an item reads the trip's dates `FOR SHARE` (so a date
change waits for it, or it sees the new dates), then takes a transaction-scoped advisory lock
on (trip, day) before reading neighbours and writing an order key. Writers into the same day
therefore queue; the unique (trip_id, day, order_key) constraint is the backstop.
"""

import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import cache
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import (
    ColumnElement,
    String,
    any_,
    bindparam,
    column,
    delete,
    false,
    func,
    literal_column,
    or_,
    tuple_,
    union_all,
    update,
    values,
)
from sqlalchemy.dialects.postgresql import ARRAY, UUID
from sqlmodel import Session, col, select

from app.activity.service import record_activity
from app.core.columns import utcnow
from app.core.errors import BadRequest, Conflict, NotFound, Unprocessable
from app.core.json_sql import PAGE_LIMIT, PageRead, Prepared, page_statement, read_page
from app.core.pagination import PageRequest, Position, split_page
from app.core.preconditions import ExpectedVersion, ensure_version
from app.itinerary.calendar import trip_calendar
from app.itinerary.models import (
    DayPublic,
    ItemCreate,
    ItemExported,
    ItemMove,
    ItemParticipant,
    ItemPublic,
    ItemUpdate,
    ItineraryItem,
    Place,
)
from app.itinerary.order_keys import REBALANCE_LENGTH, is_order_key, key_between, spread_keys
from app.itinerary.synced import item_document
from app.participants.service import require_participants_in_trip
from app.sync.client_ids import Created, find_existing, replay
from app.sync.versions import claim_version, holds_trip_lock
from app.trips import hooks as trip_hooks
from app.trips import service as trip_service
from app.trips.models import Trip
from app.users import calendar as calendar_tokens
from app.users import export
from app.users.models import User


def _item_not_found() -> NotFound:
    return NotFound("Itinerary item not found.", code="item_not_found")


# --- locks and order keys ------------------------------------------------------------------


@dataclass(frozen=True)
class TripDates:
    start_date: date
    end_date: date
    timezone: str

    def contain(self, day: date | None) -> bool:
        return day is None or self.start_date <= day <= self.end_date


def _lock_trip_dates(session: Session, trip_id: uuid.UUID) -> TripDates:
    """The trip's current dates, locked until commit so they cannot change under us.

    Every write route has already locked the trip row (claiming its version, see
    app.core.deps) and read the trip afresh after the lock: the dates come from that object,
    with no round trip. Otherwise the row is share-locked here.
    """
    trip = session.get(Trip, trip_id) if holds_trip_lock(session, trip_id) else None
    if trip is not None:
        return TripDates(trip.start_date, trip.end_date, trip.timezone)
    row = session.exec(
        select(col(Trip.start_date), col(Trip.end_date), col(Trip.timezone))
        .where(Trip.id == trip_id)
        .with_for_update(read=True)
    ).one()
    return TripDates(*row)


def _require_day_in_trip(dates: TripDates, day: date | None) -> None:
    if not dates.contain(day):
        raise Unprocessable(
            f"The day must lie within the trip ({dates.start_date} to {dates.end_date}).",
            code="day_outside_trip",
        )


def _lock_item_order(session: Session, trip_id: uuid.UUID) -> None:
    """Queue writers that order items within a day: they all hold the trip's row lock.

    Claiming the trip's version locks its row until commit (free when this transaction
    already holds it, as every write route does): two writers can never both read a day's
    last key and pick the same next one. The unique (trip_id, day, order_key) stays the
    backstop. A per-day advisory lock used to do this; under the trip lock it only cost a
    round trip.
    """
    claim_version(session, trip_id)


def _in_day(day: date | None) -> Any:
    return col(ItineraryItem.day).is_(None) if day is None else col(ItineraryItem.day) == day


def _last_key(session: Session, trip_id: uuid.UUID, day: date | None) -> str | None:
    return session.exec(
        select(func.max(ItineraryItem.order_key)).where(
            ItineraryItem.trip_id == trip_id, _in_day(day)
        )
    ).one()


def _checked(key: str) -> str:
    if not is_order_key(key):
        raise Conflict(
            "This spot has been reordered too often; move the item elsewhere and back.",
            code="order_key_exhausted",
        )
    return key


def _place(
    session: Session,
    trip_id: uuid.UUID,
    day: date | None,
    item_id: uuid.UUID,
    low: str | None,
    high: str | None,
) -> str:
    """The key of an item placed in `day` between the neighbouring keys `low` and `high`.

    Usually a key between the two, and no other row changes. When that key would be longer
    than REBALANCE_LENGTH, the day is rebalanced: every other item of the day gets a fresh,
    evenly spread key in one UPDATE, and the item its spot among them. Call it under the
    trip's lock (`_lock_item_order`), before the item's own day or key are changed.
    """
    key = _checked(key_between(low, high))
    if len(key) <= REBALANCE_LENGTH:
        return key
    return _rebalance(session, trip_id, day, item_id, low)


def _rebalance(
    session: Session, trip_id: uuid.UUID, day: date | None, item_id: uuid.UUID, low: str | None
) -> str:
    """Spread the day's keys evenly, keeping their order, with a spot for `item_id` right
    after the key `low` (first when None); returns the item's key.

    The rewritten rows take this transaction's trip version like any write, so the sync feed
    sends them as ordinary changes: a device applies them with the move and has the same
    order. Their ETags change too.
    """
    rows = session.exec(
        select(col(ItineraryItem.id), col(ItineraryItem.order_key))
        .where(ItineraryItem.trip_id == trip_id, _in_day(day))
        .order_by(col(ItineraryItem.order_key))
    ).all()
    others = [row_id for row_id, key in rows if row_id != item_id]
    spot = 0 if low is None else sum(1 for row_id, key in rows if row_id != item_id and key <= low)
    ordered = [*others[:spot], item_id, *others[spot:]]
    keys = dict(zip(ordered, spread_keys(len(ordered), {key for _, key in rows}), strict=True))
    if others:
        spread = values(
            column("id", UUID(as_uuid=True)), column("order_key", String), name="spread"
        ).data([(row_id, keys[row_id]) for row_id in others])
        session.execute(
            update(ItineraryItem)
            .where(col(ItineraryItem.trip_id) == trip_id, col(ItineraryItem.id) == spread.c.id)
            .values(
                order_key=spread.c.order_key,
                version=claim_version(session, trip_id),
                updated_at=utcnow(),
            )
            .execution_options(synchronize_session=False)
        )
        # Items this session has loaded read their new keys afresh when next used.
        for loaded in session.identity_map.values():
            if isinstance(loaded, ItineraryItem) and loaded.id in keys and loaded.id != item_id:
                session.expire(loaded, ["order_key", "version", "updated_at"])
    return keys[item_id]


def _neighbour_key(
    session: Session,
    trip_id: uuid.UUID,
    day: date | None,
    key: str,
    *,
    after: bool,
    excluding: uuid.UUID,
) -> str | None:
    """The key right after (or before) `key` in the day, ignoring the item being moved."""
    order_key = col(ItineraryItem.order_key)
    statement = select(ItineraryItem.order_key).where(
        ItineraryItem.trip_id == trip_id, _in_day(day), ItineraryItem.id != excluding
    )
    if after:
        statement = statement.where(order_key > key).order_by(order_key)
    else:
        statement = statement.where(order_key < key).order_by(order_key.desc())
    return session.exec(statement.limit(1)).first()


# --- times and shapes ----------------------------------------------------------------------


def _utc_instant(local: datetime, zone: str, which: str) -> datetime:
    """The instant a wall-clock time names in a zone; times skipped by a DST jump are refused.

    A time that occurs twice (clocks going back) is read as its first occurrence.
    """
    tz = ZoneInfo(zone)
    try:
        instant = local.replace(tzinfo=tz).astimezone(UTC)
        round_trip = instant.astimezone(tz).replace(tzinfo=None)
    except (OverflowError, ValueError):  # within hours of year 1 or 9999
        raise Unprocessable(
            f"{which}_local {local.isoformat()} is out of the supported range.",
            code="invalid_local_time",
        ) from None
    if round_trip != local:
        raise Unprocessable(
            f"{which}_local {local.isoformat()} does not exist in {zone} (clocks skip it).",
            code="nonexistent_local_time",
        )
    return instant


def _apply_times(
    item: ItineraryItem,
    *,
    start_local: datetime | None,
    start_timezone: str | None,
    end_local: datetime | None,
    end_timezone: str | None,
    default_timezone: str,
) -> None:
    """Set the local times, their zones and UTC instants together, and check their order."""
    for which, local, zone in (
        ("start", start_local, start_timezone),
        ("end", end_local, end_timezone),
    ):
        if local is None and zone is not None:
            raise Unprocessable(
                f"{which}_timezone needs a {which}_local time.", code="timezone_without_time"
            )
    if start_local is None and end_local is not None:
        raise Unprocessable("An item with an end needs a start.", code="end_without_start")
    if start_local is None:
        item.start_local = item.start_timezone = item.start_utc = None
    else:
        start_timezone = start_timezone or default_timezone
        item.start_local, item.start_timezone = start_local, start_timezone
        item.start_utc = _utc_instant(start_local, start_timezone, "start")
    if end_local is None:
        item.end_local = item.end_timezone = item.end_utc = None
    else:
        end_timezone = end_timezone or start_timezone or default_timezone
        item.end_local, item.end_timezone = end_local, end_timezone
        item.end_utc = _utc_instant(end_local, end_timezone, "end")
    if item.start_utc and item.end_utc and item.end_utc < item.start_utc:
        raise Unprocessable("The item cannot end before it starts.", code="end_before_start")


def _apply_place(item: ItineraryItem, place: Place | None) -> None:
    item.place_name = place.name if place else None
    item.place_address = place.address if place else None
    item.latitude = place.latitude if place else None
    item.longitude = place.longitude if place else None
    item.place_external_id = place.external_id if place else None


# Copied as they are from the row; _public computes the rest.
_COPIED_FIELDS = tuple(
    name
    for name in ItemPublic.model_fields
    if name not in {"start_utc", "end_utc", "place", "participant_ids"}
)


def _public(item: ItineraryItem, participant_ids: Sequence[uuid.UUID]) -> ItemPublic:
    # Validated from a plain dict: pydantic's core does it in a third of the time SQLModel's
    # from-attributes path takes (~20 against ~50 us an item), which adds up on a list page.
    data: dict[str, Any] = {name: getattr(item, name) for name in _COPIED_FIELDS}
    data["start_utc"] = item.start_utc.astimezone(UTC) if item.start_utc else None
    data["end_utc"] = item.end_utc.astimezone(UTC) if item.end_utc else None
    data["place"] = (
        None
        if item.place_name is None
        else {
            "name": item.place_name,
            "address": item.place_address or "",
            "latitude": item.latitude,
            "longitude": item.longitude,
            "external_id": item.place_external_id,
        }
    )
    data["participant_ids"] = sorted(participant_ids)
    return ItemPublic.model_validate(data)


def _participants_of(
    session: Session, trip_id: uuid.UUID, item_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, list[uuid.UUID]]:
    """Participant ids of many items in one query (never one per item)."""
    found: dict[uuid.UUID, list[uuid.UUID]] = {item_id: [] for item_id in item_ids}
    if not item_ids:
        return found
    # `= ANY(array)`: one bound value, where IN (...) renders one parameter per id each time.
    wanted = bindparam("item_ids", value=list(item_ids), type_=ARRAY(UUID(as_uuid=True)))
    rows = session.exec(
        select(ItemParticipant.item_id, ItemParticipant.participant_id).where(
            ItemParticipant.trip_id == trip_id, col(ItemParticipant.item_id) == any_(wanted)
        )
    ).all()
    for item_id, participant_id in rows:
        found[item_id].append(participant_id)
    return found


def items_public(
    *, session: Session, trip_id: uuid.UUID, items: Sequence[ItineraryItem]
) -> list[ItemPublic]:
    """Public shapes of many items, their participants loaded in one query."""
    participants = _participants_of(session, trip_id, [item.id for item in items])
    return [_public(item, participants[item.id]) for item in items]


def _set_participants(
    session: Session,
    item: ItineraryItem,
    participant_ids: Sequence[uuid.UUID],
    *,
    new: bool = False,
) -> list[uuid.UUID]:
    wanted = list(dict.fromkeys(participant_ids))
    require_participants_in_trip(session=session, trip_id=item.trip_id, participant_ids=wanted)
    if not new:  # a new item has nobody yet: no round trip to delete nothing
        session.execute(
            delete(ItemParticipant).where(
                col(ItemParticipant.trip_id) == item.trip_id,
                col(ItemParticipant.item_id) == item.id,
            )
        )
    session.add_all(
        ItemParticipant(trip_id=item.trip_id, item_id=item.id, participant_id=participant_id)
        for participant_id in wanted
    )
    return wanted


# --- items ---------------------------------------------------------------------------------


def _get_item(
    session: Session, trip_id: uuid.UUID, item_id: uuid.UUID, *, for_update: bool = False
) -> ItineraryItem:
    statement = select(ItineraryItem).where(
        ItineraryItem.trip_id == trip_id, ItineraryItem.id == item_id
    )
    item = session.exec(statement.with_for_update() if for_update else statement).first()
    if item is None:
        raise _item_not_found()
    return item


def _item_public(session: Session, item: ItineraryItem) -> ItemPublic:
    return _public(item, _participants_of(session, item.trip_id, [item.id])[item.id])


def get_item(*, session: Session, trip_id: uuid.UUID, item_id: uuid.UUID) -> ItemPublic:
    return _item_public(session, _get_item(session, trip_id, item_id))


def _locked_item(
    session: Session, trip_id: uuid.UUID, item_id: uuid.UUID, expected: ExpectedVersion
) -> ItineraryItem:
    """The item, locked, if it is still at the version the caller expects."""
    item = _get_item(session, trip_id, item_id, for_update=True)
    ensure_version(item, expected, lambda: _item_public(session, item))
    return item


# What a create sets, compared to tell a replay from another item with the same id.
_CREATED_FIELDS = (
    "kind",
    "title",
    "notes",
    "day",
    "start_local",
    "start_timezone",
    "end_local",
    "end_timezone",
    "place_name",
    "place_address",
    "latitude",
    "longitude",
    "place_external_id",
    "booking_reference",
)


def _replay_item(
    session: Session, existing: ItineraryItem, draft: ItineraryItem, data: ItemCreate
) -> Created[ItemPublic]:
    public = _item_public(session, existing)
    same = all(getattr(existing, name) == getattr(draft, name) for name in _CREATED_FIELDS) and set(
        public.participant_ids
    ) == set(data.participant_ids)
    return replay(public, version=existing.version, same_content=same, current=lambda: public)


def create_item(
    *, session: Session, trip_id: uuid.UUID, data: ItemCreate, actor_id: uuid.UUID
) -> Created[ItemPublic]:
    """Add an item at the end of its day (or of the unscheduled items).

    With a client-chosen id seen before: a replay if the content is the same, else 409.
    """
    dates = _lock_trip_dates(session, trip_id)
    item = ItineraryItem(
        trip_id=trip_id,
        kind=data.kind,
        title=data.title,
        notes=data.notes,
        day=data.day,
        order_key="",
        booking_reference=data.booking_reference,
        created_by=actor_id,
    )
    _apply_times(
        item,
        start_local=data.start_local,
        start_timezone=data.start_timezone,
        end_local=data.end_local,
        end_timezone=data.end_timezone,
        default_timezone=dates.timezone,
    )
    _apply_place(item, data.place)
    if data.id is not None:
        existing = find_existing(session, ItineraryItem, trip_id=trip_id, row_id=data.id)
        if existing is not None:
            return _replay_item(session, existing, item, data)
        item.id = data.id
    _require_day_in_trip(dates, data.day)
    _lock_item_order(session, trip_id)
    item.order_key = _place(
        session, trip_id, data.day, item.id, _last_key(session, trip_id, data.day), None
    )
    session.add(item)
    session.flush()  # the participant links refer to the item
    participant_ids = _set_participants(session, item, data.participant_ids, new=True)
    record_activity(
        session=session,
        trip_id=trip_id,
        actor_id=actor_id,
        action="itinerary_item.created",
        object_type="itinerary_item",
        object_id=item.id,
        summary=item.title,
    )
    session.flush()
    return Created(_public(item, participant_ids))


def update_item(
    *,
    session: Session,
    trip_id: uuid.UUID,
    item_id: uuid.UUID,
    data: ItemUpdate,
    actor_id: uuid.UUID,
    expected: ExpectedVersion,
) -> ItemPublic:
    dates = _lock_trip_dates(session, trip_id)
    item = _locked_item(session, trip_id, item_id, expected)
    # Before any query below flushes the item: one UPDATE carries every change.
    item.updated_at = utcnow()
    changes = data.model_dump(exclude_unset=True)
    for field in ("kind", "title", "notes", "booking_reference"):
        if field in changes:
            setattr(item, field, changes[field])
    time_fields = {"start_local", "start_timezone", "end_local", "end_timezone"}
    if time_fields & changes.keys():
        # A zone given on its own re-reads the item's wall-clock time in that zone.
        start_local = changes.get("start_local", item.start_local)
        end_local = changes.get("end_local", item.end_local)
        _apply_times(
            item,
            start_local=start_local,
            # A cleared time takes its zone with it, unless the client sent a zone too.
            start_timezone=changes.get(
                "start_timezone", item.start_timezone if start_local else None
            ),
            end_local=end_local,
            end_timezone=changes.get("end_timezone", item.end_timezone if end_local else None),
            default_timezone=dates.timezone,
        )
    if "place" in changes:
        _apply_place(item, data.place)
    if data.participant_ids is not None:
        participant_ids = _set_participants(session, item, data.participant_ids)
    else:
        participant_ids = _participants_of(session, trip_id, [item.id])[item.id]
    session.add(item)
    record_activity(
        session=session,
        trip_id=trip_id,
        actor_id=actor_id,
        action="itinerary_item.updated",
        object_type="itinerary_item",
        object_id=item.id,
        summary=f"{item.title} ({', '.join(sorted(changes))})",
    )
    session.flush()
    return _public(item, participant_ids)


def delete_item(
    *,
    session: Session,
    trip_id: uuid.UUID,
    item_id: uuid.UUID,
    actor_id: uuid.UUID,
    expected: ExpectedVersion,
) -> None:
    item = _locked_item(session, trip_id, item_id, expected)
    session.delete(item)  # participant links go with it (ON DELETE CASCADE)
    record_activity(
        session=session,
        trip_id=trip_id,
        actor_id=actor_id,
        action="itinerary_item.deleted",
        object_type="itinerary_item",
        object_id=item_id,
        summary=item.title,
    )
    session.flush()


def _anchor_key(
    session: Session, trip_id: uuid.UUID, day: date | None, anchor_id: uuid.UUID
) -> str:
    """The order key of a neighbour named by the client, which must be in the target day."""
    key = session.exec(
        select(ItineraryItem.order_key).where(
            ItineraryItem.trip_id == trip_id, ItineraryItem.id == anchor_id, _in_day(day)
        )
    ).first()
    if key is None:
        raise Conflict(
            "The neighbour is not (or no longer) in that day; reload and try again.",
            code="anchor_not_in_day",
        )
    return key


def move_item(
    *,
    session: Session,
    trip_id: uuid.UUID,
    item_id: uuid.UUID,
    data: ItemMove,
    actor_id: uuid.UUID,
    expected: ExpectedVersion,
) -> ItemPublic:
    """Place the item in a day, next to a neighbour: one row changes, nothing is renumbered."""
    if item_id in (data.after_id, data.before_id) or (
        data.after_id is not None and data.after_id == data.before_id
    ):
        raise Unprocessable("An item cannot be placed next to itself.", code="invalid_anchor")
    dates = _lock_trip_dates(session, trip_id)
    _require_day_in_trip(dates, data.day)
    item = _locked_item(session, trip_id, item_id, expected)
    _lock_item_order(session, trip_id)
    low: str | None
    high: str | None
    if data.after_id is not None:
        after_key = _anchor_key(session, trip_id, data.day, data.after_id)
        if data.before_id is not None:
            before_key = _anchor_key(session, trip_id, data.day, data.before_id)
            if before_key <= after_key:
                raise Conflict(
                    "after_id no longer sorts before before_id; reload and try again.",
                    code="anchors_out_of_order",
                )
        # Right after `after_id`, even if another item arrived between the two meanwhile.
        low = after_key
        high = _neighbour_key(session, trip_id, data.day, after_key, after=True, excluding=item.id)
    elif data.before_id is not None:
        high = _anchor_key(session, trip_id, data.day, data.before_id)
        low = _neighbour_key(session, trip_id, data.day, high, after=False, excluding=item.id)
    else:
        low = session.exec(
            select(func.max(ItineraryItem.order_key)).where(
                ItineraryItem.trip_id == trip_id, _in_day(data.day), ItineraryItem.id != item.id
            )
        ).one()
        high = None
    item.order_key = _place(session, trip_id, data.day, item.id, low, high)
    item.day = data.day
    item.updated_at = utcnow()
    session.add(item)
    record_activity(
        session=session,
        trip_id=trip_id,
        actor_id=actor_id,
        action="itinerary_item.moved",
        object_type="itinerary_item",
        object_id=item.id,
        summary=f"{item.title} to {data.day.isoformat() if data.day else 'unscheduled'}",
    )
    session.flush()
    return _public(item, _participants_of(session, trip_id, [item.id])[item.id])


# Items sort by day (unscheduled last, as NULLs sort in PostgreSQL), then order key; a page
# ends at "<day>/<order key>" ("/<order key>" for the unscheduled items).
def _parse_item_position(position: Position) -> tuple[date | None, str]:
    invalid = BadRequest("The cursor does not belong to this list.", code="invalid_cursor")
    if not isinstance(position.sort_key, str) or "/" not in position.sort_key:
        raise invalid
    day_text, key = position.sort_key.split("/", 1)
    try:
        return (date.fromisoformat(day_text) if day_text else None), key
    except ValueError:
        raise invalid from None


# The ranges of the (trip_id, day, order_key) index a page of items reads, by name; each is
# read in the list's order from its start, so a page reads about `limit` index entries.
def _range(name: str) -> list[ColumnElement[bool]]:
    item_day, order_key = col(ItineraryItem.day), col(ItineraryItem.order_key)
    after_key = order_key > bindparam("after_key")
    match name:
        case "all":
            return []
        case "day":
            return [item_day == bindparam("day")]
        case "rest of the day":
            return [item_day == bindparam("day"), after_key]
        case "unscheduled":
            return [item_day.is_(None)]
        case "rest of the unscheduled":
            return [item_day.is_(None), after_key]
        case "later days":
            return [
                tuple_(item_day, order_key) > tuple_(bindparam("after_day"), bindparam("after_key"))
            ]
    raise ValueError(name)


def _ranges_after(
    page: PageRequest, day: date | None, unscheduled: bool
) -> tuple[tuple[str, ...], dict[str, Any]]:
    """The ranges (`_range`) of what follows the page's position, and their parameters.

    (day, order_key) is unique in a trip, so it alone orders the list: no id tie-break.
    After a position on a day, the row comparison (day, order_key) > (its day, its key) is
    where the index scan starts; it is never true of unscheduled items (NULL day), which
    follow as a second range. Written as one OR, it was a filter over the whole trip.
    """
    if page.after is None:
        if day is not None:
            return ("day",), {"day": day}
        return ("unscheduled",) if unscheduled else ("all",), {}
    after_day, after_key = _parse_item_position(page.after)
    if day is not None:  # one day's items: the position is before them, in them or past them
        if after_day is None or after_day > day:
            return (), {}
        if after_day == day:
            return ("rest of the day",), {"day": day, "after_key": after_key}
        return ("day",), {"day": day}
    if after_day is None:  # among the unscheduled items, which only unscheduled ones follow
        return ("rest of the unscheduled",), {"after_key": after_key}
    if unscheduled:
        return ("unscheduled",), {}
    return ("later days", "unscheduled"), {"after_day": after_day, "after_key": after_key}


def _item_rows(ranges: tuple[str, ...]) -> Any:
    """The items of `ranges` as (doc, sort_key, id, item_day, order_key), in plan order."""
    item = ItineraryItem
    day_text = func.coalesce(func.to_char(item.day, literal_column("'YYYY-MM-DD'")), "")
    columns: tuple[Any, ...] = (
        item_document().label("doc"),
        func.concat(day_text, "/", col(item.order_key)).label("sort_key"),  # _item_position
        col(item.id).label("id"),
        col(item.day).label("item_day"),
        col(item.order_key).label("order_key"),
    )

    def first_rows(statement: Any, day: Any, order_key: Any) -> Any:
        return statement.order_by(day.asc().nulls_last(), order_key).limit(bindparam("rows"))

    statements = [
        first_rows(
            select(*columns).where(col(item.trip_id) == bindparam("trip_id"), *_range(name)),
            col(item.day),
            col(item.order_key),
        )
        for name in ranges or ("all",)
    ]
    if not ranges:  # past the end of the list: nothing, but the caller is still checked
        return statements[0].where(false())
    if len(statements) == 1:
        return statements[0]
    # Each range in index order, merged (a Merge Append): nothing sorts the trip's items.
    merged = union_all(*statements).subquery()
    return first_rows(select(merged), merged.c.item_day, merged.c.order_key)


@cache
def items_page(ranges: tuple[str, ...]) -> Prepared:
    access = trip_service.with_member_access(
        select(col(User.is_active).label("allowed")), *trip_service.caller_parameters()
    )
    order = ["item_day ASC NULLS LAST", "order_key"]
    return page_statement(_item_rows(ranges), access, order)


def read_items_page(
    *,
    session: Session,
    caller: Mapping[str, str],
    page: PageRequest,
    day: date | None = None,
    unscheduled: bool = False,
) -> PageRead:
    """A page of the trip's items in plan order, optionally of one day or only the
    unscheduled ones, as its JSON, in the statement that checks the caller's access.

    A page reads about `limit` index entries wherever it starts: page 5,000 costs what
    page 1 does (tests/test_query_plans.py checks the plans).
    """
    if day is not None and unscheduled:
        raise Unprocessable(
            "Filter by day or by unscheduled, not both.", code="conflicting_filters"
        )
    ranges, values = _ranges_after(page, day, unscheduled)
    statement = items_page(ranges)
    return read_page(
        statement, session, {**caller, **values, "rows": page.limit + 1, PAGE_LIMIT: page.limit}
    )


def unschedule_items_outside(
    *, session: Session, trip_id: uuid.UUID, start_date: date, end_date: date
) -> list[uuid.UUID]:
    """Move items on days outside [start_date, end_date] to the end of the unscheduled items.

    Called when a trip's dates change: nothing is deleted. Returns the moved items' ids, in
    the order they now have.
    """
    _lock_item_order(session, trip_id)
    outside = session.exec(
        select(ItineraryItem)
        .where(
            ItineraryItem.trip_id == trip_id,
            or_(col(ItineraryItem.day) < start_date, col(ItineraryItem.day) > end_date),
        )
        .order_by(col(ItineraryItem.day), col(ItineraryItem.order_key))
        .with_for_update()
    ).all()
    last = _last_key(session, trip_id, None)
    now = utcnow()
    for item in outside:
        last = _place(session, trip_id, None, item.id, last, None)
        item.day, item.order_key, item.updated_at = None, last, now
        session.add(item)
    session.flush()
    return [item.id for item in outside]


# --- days ----------------------------------------------------------------------------------


def list_days(
    *, session: Session, trip: Trip, page: PageRequest
) -> tuple[list[DayPublic], Position | None]:
    """The trip's days from its dates, each with its number of items; pages by day number."""
    first = 1
    if page.after is not None:
        if not isinstance(page.after.sort_key, int) or page.after.id != trip.id:
            raise BadRequest("The cursor does not belong to this list.", code="invalid_cursor")
        first = page.after.sort_key + 1
    length = (trip.end_date - trip.start_date).days + 1
    numbers = range(first, min(length, first + page.limit) + 1)  # one extra: is there more?
    if not numbers:
        return [], None
    days = [trip.start_date + timedelta(days=number - 1) for number in numbers]
    counts: dict[date | None, int] = dict(
        session.exec(
            select(col(ItineraryItem.day), func.count())
            .where(
                ItineraryItem.trip_id == trip.id,
                col(ItineraryItem.day).between(days[0], days[-1]),
            )
            .group_by(col(ItineraryItem.day))
        ).all()
    )
    rows = [
        DayPublic(day=day, day_number=number, item_count=counts.get(day, 0))
        for number, day in zip(numbers, days, strict=True)
    ]
    return split_page(rows, page.limit, lambda row: Position(row.day_number, trip.id))


def calendar_feed_not_found() -> NotFound:
    # One answer for a token never issued, replaced or revoked: it tells an outsider nothing.
    return NotFound(
        "This calendar feed address does not work (any more); create a new one.",
        code="calendar_feed_not_found",
    )


def trip_calendar_for_token(*, session: Session, trip_id: uuid.UUID, token: str) -> bytes:
    """The trip's calendar for whoever holds the feed token: only while the token's user is a
    member of the trip (the same rule, and the same 404, as the trip's routes)."""
    user_id = calendar_tokens.user_for_token(session=session, token=token)
    if user_id is None:
        raise calendar_feed_not_found()
    trip, _role = trip_service.get_trip_for_member(
        session=session, trip_id=trip_id, user_id=user_id
    )
    items = session.exec(
        select(ItineraryItem)
        .where(ItineraryItem.trip_id == trip.id)
        .order_by(
            col(ItineraryItem.start_utc), col(ItineraryItem.day), col(ItineraryItem.order_key)
        )
    ).all()
    return trip_calendar(trip, items)


def exported_items(session: Session, user: User) -> Iterator[ItemExported]:
    """The itinerary items the account created, for its export."""
    return export.exported_rows(
        session,
        ItemExported,
        select(ItineraryItem)
        .where(ItineraryItem.created_by == user.id)
        .order_by(col(ItineraryItem.created_at), col(ItineraryItem.id)),
    )


trip_hooks.dates_changed.subscribe(unschedule_items_outside)
export.register(
    export.ExportSection(
        "itinerary_items",
        ItemExported,
        exported_items,
        "The itinerary items the account created.",
    )
)
