"""Routes for the itinerary: the trip's days, and items on them. Members read; editors write."""

import uuid
from datetime import date
from typing import Annotated

from fastapi import APIRouter, Query, status

from app.core.deps import SessionDep, TripEditor, TripMember
from app.core.errors import error_responses
from app.core.pagination import Page, PageParams
from app.core.routing import AppRoute
from app.itinerary import service
from app.itinerary.models import DayPublic, ItemCreate, ItemMove, ItemPublic, ItemUpdate

router = APIRouter(
    prefix="/trips/{trip_id}",
    tags=["itinerary"],
    responses=error_responses(401, 404, 422),
    route_class=AppRoute,
)
_writes = error_responses(403, 409)


@router.get("/days", response_model=Page[DayPublic], responses=error_responses(400))
def list_days(session: SessionDep, access: TripMember, page: PageParams) -> Page[DayPublic]:
    """The trip's days, from its start to its end date, each with its number of items."""
    days, last = service.list_days(session=session, trip=access.trip, page=page)
    return Page(items=days, next_cursor=page.cursor_for(last))


@router.get("/items", response_model=Page[ItemPublic], responses=error_responses(400))
def list_items(
    session: SessionDep,
    access: TripMember,
    page: PageParams,
    day: Annotated[date | None, Query(description="Only the items of this day")] = None,
    unscheduled: Annotated[bool, Query(description="Only the items without a day")] = False,
) -> Page[ItemPublic]:
    """Items in plan order: by day, then by their place in the day; unscheduled ones last."""
    items, last = service.list_items(
        session=session, trip_id=access.trip.id, page=page, day=day, unscheduled=unscheduled
    )
    return Page(items=items, next_cursor=page.cursor_for(last))


@router.post(
    "/items", status_code=status.HTTP_201_CREATED, response_model=ItemPublic, responses=_writes
)
def create_item(session: SessionDep, access: TripEditor, data: ItemCreate) -> ItemPublic:
    """Add an item at the end of its day (or of the unscheduled items)."""
    return service.create_item(
        session=session, trip_id=access.trip.id, data=data, actor_id=access.user.id
    )


@router.get("/items/{item_id}", response_model=ItemPublic)
def get_item(session: SessionDep, access: TripMember, item_id: uuid.UUID) -> ItemPublic:
    return service.get_item(session=session, trip_id=access.trip.id, item_id=item_id)


@router.patch("/items/{item_id}", response_model=ItemPublic, responses=_writes)
def update_item(
    session: SessionDep, access: TripEditor, item_id: uuid.UUID, data: ItemUpdate
) -> ItemPublic:
    return service.update_item(
        session=session,
        trip_id=access.trip.id,
        item_id=item_id,
        data=data,
        actor_id=access.user.id,
    )


@router.delete("/items/{item_id}", status_code=status.HTTP_204_NO_CONTENT, responses=_writes)
def delete_item(session: SessionDep, access: TripEditor, item_id: uuid.UUID) -> None:
    service.delete_item(
        session=session, trip_id=access.trip.id, item_id=item_id, actor_id=access.user.id
    )


@router.post("/items/{item_id}/move", response_model=ItemPublic, responses=_writes)
def move_item(
    session: SessionDep, access: TripEditor, item_id: uuid.UUID, data: ItemMove
) -> ItemPublic:
    """Put the item on a day (null: unscheduled) after or before a neighbour, or at the end."""
    return service.move_item(
        session=session,
        trip_id=access.trip.id,
        item_id=item_id,
        data=data,
        actor_id=access.user.id,
    )
