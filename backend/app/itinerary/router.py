"""Routes for the itinerary: the trip's days, and items on them. Members read; editors write."""

import uuid
from typing import Annotated

from fastapi import APIRouter, Path, Query, Response, status

from app.core.db import read_session
from app.core.deps import IfMatch, OptionalIfMatch, SessionDep
from app.core.errors import error_responses
from app.core.fields import Day
from app.core.json_sql import json_response
from app.core.pagination import Page, PageParams
from app.core.preconditions import (
    conditional_write_responses,
    create_responses,
    etag_responses,
    set_etag,
)
from app.core.security import OPAQUE_TOKEN_MAX_LENGTH
from app.itinerary import service
from app.itinerary.models import DayPublic, ItemCreate, ItemMove, ItemPublic, ItemUpdate
from app.trips.deps import TripEditor, TripMember, TripRead

router = APIRouter(
    prefix="/trips/{trip_id}", tags=["itinerary"], responses=error_responses(401, 404, 422)
)
_writes = error_responses(403, 409)


@router.get("/days", response_model=Page[DayPublic], responses=error_responses(400))
def list_days(session: SessionDep, access: TripMember, page: PageParams) -> Page[DayPublic]:
    """The trip's days, from its start to its end date, each with its number of items."""
    days, last = service.list_days(session=session, trip=access.trip, page=page)
    return Page(items=days, next_cursor=page.cursor_for(last))


_CALENDAR_MEDIA_TYPE = "text/calendar; charset=utf-8"
# The feed's own router: no bearer token, so no 401; the token in the address is the credential.
calendar_router = APIRouter(
    prefix="/trips/{trip_id}", tags=["itinerary"], responses=error_responses(404, 422)
)


@calendar_router.get(
    "/calendar.ics",
    response_class=Response,
    responses={
        200: {
            "description": "The trip's itinerary as an iCalendar (RFC 5545) document.",
            "content": {"text/calendar": {"schema": {"type": "string"}}},
        },
    },
)
def trip_calendar(
    session: SessionDep,
    trip_id: Annotated[uuid.UUID, Path(description="The trip's id")],
    token: Annotated[
        str,
        Query(
            min_length=1,
            max_length=OPAQUE_TOKEN_MAX_LENGTH,
            description="The caller's calendar feed token (POST /users/me/calendar-token)",
        ),
    ],
) -> Response:
    """The trip's itinerary for calendar apps, which cannot send a bearer header: the feed
    token in the address stands for its user. Timed items are events at their local time
    in their zone, items with only a day are all-day events. `404 calendar_feed_not_found`
    for a token replaced or revoked, `404 trip_not_found` for a trip its user is not in.
    """
    document = service.trip_calendar_for_token(session=session, trip_id=trip_id, token=token)
    return Response(
        document,
        media_type=_CALENDAR_MEDIA_TYPE,
        headers={"Cache-Control": "private, no-cache", "X-Robots-Tag": "noindex"},
    )


@router.get("/items", response_model=Page[ItemPublic], responses=error_responses(400))
def list_items(
    reader: TripRead,
    page: PageParams,
    day: Annotated[Day | None, Query(description="Only the items of this day")] = None,
    unscheduled: Annotated[bool, Query(description="Only the items without a day")] = False,
) -> Response:
    """Items in plan order: by day, then by their place in the day; unscheduled ones last."""
    with read_session() as session:
        read = service.read_items_page(
            session=session,
            caller=reader.parameters(),
            page=page,
            day=day,
            unscheduled=unscheduled,
        )
        if not read.allowed:
            raise reader.refused(session, read.allowed)
    return json_response(read.body(page))


@router.post(
    "/items",
    status_code=status.HTTP_201_CREATED,
    response_model=ItemPublic,
    responses={**_writes, **create_responses(ItemPublic)},
)
def create_item(
    session: SessionDep, access: TripEditor, data: ItemCreate, response: Response
) -> ItemPublic:
    """Add an item at the end of its day (or of the unscheduled items)."""
    created = service.create_item(
        session=session, trip_id=access.trip.id, data=data, actor_id=access.user.id
    )
    if created.replayed:
        response.status_code = status.HTTP_200_OK
    set_etag(response, created.value.version)
    return created.value


@router.get("/items/{item_id}", response_model=ItemPublic, responses=etag_responses())
def get_item(
    session: SessionDep, access: TripMember, item_id: uuid.UUID, response: Response
) -> ItemPublic:
    item = service.get_item(session=session, trip_id=access.trip.id, item_id=item_id)
    set_etag(response, item.version)
    return item


@router.patch(
    "/items/{item_id}",
    response_model=ItemPublic,
    responses={**_writes, **conditional_write_responses()},
)
def update_item(
    session: SessionDep,
    access: TripEditor,
    item_id: uuid.UUID,
    expected: IfMatch,
    data: ItemUpdate,
    response: Response,
) -> ItemPublic:
    item = service.update_item(
        session=session,
        trip_id=access.trip.id,
        item_id=item_id,
        data=data,
        actor_id=access.user.id,
        expected=expected,
    )
    set_etag(response, item.version)
    return item


@router.delete(
    "/items/{item_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={**_writes, **conditional_write_responses(None)},
)
def delete_item(
    session: SessionDep, access: TripEditor, item_id: uuid.UUID, expected: IfMatch
) -> None:
    service.delete_item(
        session=session,
        trip_id=access.trip.id,
        item_id=item_id,
        actor_id=access.user.id,
        expected=expected,
    )


@router.post(
    "/items/{item_id}/move",
    response_model=ItemPublic,
    responses={**_writes, **conditional_write_responses(required=False)},
)
def move_item(
    session: SessionDep,
    access: TripEditor,
    item_id: uuid.UUID,
    expected: OptionalIfMatch,
    data: ItemMove,
    response: Response,
) -> ItemPublic:
    """Put the item on a day (null: unscheduled) after or before a neighbour, or at the end.

    If-Match is optional here; when sent, the item must still be at that version.
    """
    item = service.move_item(
        session=session,
        trip_id=access.trip.id,
        item_id=item_id,
        data=data,
        actor_id=access.user.id,
        expected=expected,
    )
    set_etag(response, item.version)
    return item
