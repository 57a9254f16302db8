"""Itinerary items in the sync feed; who takes part in an item is part of the item."""

from typing import Any

from sqlalchemy import Select, case
from sqlmodel import Session, col, func, select

from app.core.json_sql import json_array, json_object, json_value
from app.itinerary.models import ItemParticipant, ItemPublic, ItineraryItem, Place
from app.sync.feed_sql import feed_rows, trip_id_param, upsert
from app.sync.registry import SyncedEntity, Touch, Versions, register, register_touch


def item_document() -> Any:
    """An item as ItemPublic, as a JSON object built by PostgreSQL (the feed's and the raw
    benchmark ceiling's, which must answer the same bytes)."""
    item = ItineraryItem
    place = json_object(
        Place,
        name=item.place_name,
        address=func.coalesce(item.place_address, ""),
        latitude=item.latitude,
        longitude=item.longitude,
        external_id=item.place_external_id,
    )
    participant_ids = (
        select(
            json_array(
                json_value(ItemParticipant.participant_id),
                order_by=[ItemParticipant.participant_id],
            )
        )
        .where(
            # The trip parameter, not the outer row's: Citus routes the subquery by it.
            col(ItemParticipant.trip_id) == trip_id_param(),
            col(ItemParticipant.item_id) == item.id,
        )
        .scalar_subquery()
    )
    return json_object(
        ItemPublic,
        item,
        place=case((col(item.place_name).is_not(None), place)),
        participant_ids=participant_ids,
    )


def _items(versions: Versions, hidden: bool, deletions: bool) -> Select[Any]:
    item = ItineraryItem
    data = item_document()
    change = upsert("item", item.id, item.version, data)
    return feed_rows("item", item.id, item.version, change).where(
        col(item.trip_id) == trip_id_param(), versions(item.version)
    )


def _item_of(session: Session, link: ItemParticipant) -> ItineraryItem | None:
    return session.get(ItineraryItem, (link.trip_id, link.item_id))


register(SyncedEntity("item", ItineraryItem, position=3, reader=_items))
register_touch(Touch(ItemParticipant, parent=_item_of, on=frozenset({"new", "dirty", "deleted"})))
