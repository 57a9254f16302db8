"""Routes for a trip's checklists and their items. Members read; editors and owners write."""

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Response, status

from app.checklists import service
from app.checklists.models import (
    ChecklistCreate,
    ChecklistItemCreate,
    ChecklistItemPublic,
    ChecklistItemUpdate,
    ChecklistKind,
    ChecklistPublic,
    ChecklistUpdate,
)
from app.core.deps import IfMatch, SessionDep
from app.core.errors import error_responses
from app.core.pagination import Page, PageParams
from app.core.preconditions import (
    conditional_write_responses,
    create_responses,
    etag_responses,
    set_etag,
)
from app.trips.deps import TripEditor, TripMember

router = APIRouter(
    prefix="/trips/{trip_id}/checklists",
    tags=["checklists"],
    responses=error_responses(401, 404, 422),
)
_writes = error_responses(403, 409)


@router.get("", response_model=Page[ChecklistPublic], responses=error_responses(400))
def list_checklists(
    session: SessionDep,
    access: TripMember,
    page: PageParams,
    kind: Annotated[ChecklistKind | None, Query(description="Only lists of this kind")] = None,
) -> Page[ChecklistPublic]:
    checklists, last = service.list_checklists(
        session=session, trip_id=access.trip.id, user_id=access.user.id, page=page, kind=kind
    )
    return Page(items=checklists, next_cursor=page.cursor_for(last))


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=ChecklistPublic,
    responses={**_writes, **create_responses(ChecklistPublic)},
)
def create_checklist(
    session: SessionDep, access: TripEditor, data: ChecklistCreate, response: Response
) -> ChecklistPublic:
    created = service.create_checklist(
        session=session, trip_id=access.trip.id, data=data, actor_id=access.user.id
    )
    if created.replayed:
        response.status_code = status.HTTP_200_OK
    set_etag(response, created.value.version)
    return created.value


@router.get("/{checklist_id}", response_model=ChecklistPublic, responses=etag_responses())
def get_checklist(
    session: SessionDep, access: TripMember, checklist_id: uuid.UUID, response: Response
) -> ChecklistPublic:
    """The list with the number of its items (and done ones) the caller can see.

    Its ETag is the list's own version: adding or ticking items does not change it.
    """
    checklist = service.get_checklist(
        session=session, trip_id=access.trip.id, checklist_id=checklist_id, user_id=access.user.id
    )
    set_etag(response, checklist.version)
    return checklist


@router.patch(
    "/{checklist_id}",
    response_model=ChecklistPublic,
    responses={**_writes, **conditional_write_responses()},
)
def update_checklist(
    session: SessionDep,
    access: TripEditor,
    checklist_id: uuid.UUID,
    expected: IfMatch,
    data: ChecklistUpdate,
    response: Response,
) -> ChecklistPublic:
    checklist = service.update_checklist(
        session=session,
        trip_id=access.trip.id,
        checklist_id=checklist_id,
        data=data,
        actor_id=access.user.id,
        expected=expected,
    )
    set_etag(response, checklist.version)
    return checklist


@router.delete(
    "/{checklist_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={**_writes, **conditional_write_responses(None)},
)
def delete_checklist(
    session: SessionDep, access: TripEditor, checklist_id: uuid.UUID, expected: IfMatch
) -> None:
    service.delete_checklist(
        session=session,
        trip_id=access.trip.id,
        checklist_id=checklist_id,
        actor_id=access.user.id,
        expected=expected,
    )


@router.get(
    "/{checklist_id}/items",
    response_model=Page[ChecklistItemPublic],
    responses=error_responses(400),
)
def list_checklist_items(
    session: SessionDep, access: TripMember, checklist_id: uuid.UUID, page: PageParams
) -> Page[ChecklistItemPublic]:
    """The list's items, without other members' private ones."""
    items, last = service.list_items(
        session=session,
        trip_id=access.trip.id,
        checklist_id=checklist_id,
        user_id=access.user.id,
        page=page,
    )
    return Page(items=items, next_cursor=page.cursor_for(last))


@router.post(
    "/{checklist_id}/items",
    status_code=status.HTTP_201_CREATED,
    response_model=ChecklistItemPublic,
    responses={**_writes, **create_responses(ChecklistItemPublic)},
)
def create_checklist_item(
    session: SessionDep,
    access: TripEditor,
    checklist_id: uuid.UUID,
    data: ChecklistItemCreate,
    response: Response,
) -> ChecklistItemPublic:
    """Add an item; a private one is seen by no one but its creator."""
    created = service.create_item(
        session=session,
        trip_id=access.trip.id,
        checklist_id=checklist_id,
        data=data,
        actor_id=access.user.id,
    )
    if created.replayed:
        response.status_code = status.HTTP_200_OK
    set_etag(response, created.value.version)
    return created.value


@router.patch(
    "/{checklist_id}/items/{item_id}",
    response_model=ChecklistItemPublic,
    responses={**_writes, **conditional_write_responses()},
)
def update_checklist_item(
    session: SessionDep,
    access: TripEditor,
    checklist_id: uuid.UUID,
    item_id: uuid.UUID,
    expected: IfMatch,
    data: ChecklistItemUpdate,
    response: Response,
) -> ChecklistItemPublic:
    item = service.update_item(
        session=session,
        trip_id=access.trip.id,
        checklist_id=checklist_id,
        item_id=item_id,
        data=data,
        actor_id=access.user.id,
        expected=expected,
    )
    set_etag(response, item.version)
    return item


@router.delete(
    "/{checklist_id}/items/{item_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={**_writes, **conditional_write_responses(None)},
)
def delete_checklist_item(
    session: SessionDep,
    access: TripEditor,
    checklist_id: uuid.UUID,
    item_id: uuid.UUID,
    expected: IfMatch,
) -> None:
    service.delete_item(
        session=session,
        trip_id=access.trip.id,
        checklist_id=checklist_id,
        item_id=item_id,
        actor_id=access.user.id,
        expected=expected,
    )
