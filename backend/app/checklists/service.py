"""Checklists and their items. A private item is visible only to its creator: every query
that reads items filters on the caller, so for anyone else it does not exist (404, unlisted,
uncounted)."""

import uuid
from collections.abc import Iterator
from typing import Any

from sqlalchemy import func
from sqlmodel import Session, col, select

from app.activity.service import record_activity
from app.checklists.models import (
    Checklist,
    ChecklistCreate,
    ChecklistExported,
    ChecklistItem,
    ChecklistItemCreate,
    ChecklistItemExported,
    ChecklistItemPublic,
    ChecklistItemUpdate,
    ChecklistKind,
    ChecklistPublic,
    ChecklistUpdate,
    visible_to,
)
from app.core.columns import utcnow
from app.core.errors import Forbidden, NotFound
from app.core.pagination import PageRequest, Position, keyset_page, split_page
from app.core.preconditions import ExpectedVersion, ensure_version
from app.participants.service import require_participants_in_trip
from app.sync.client_ids import Created, find_existing, id_taken, replay
from app.sync.versions import claim_version
from app.users import export
from app.users import hooks as user_hooks
from app.users.models import User


def _checklist_not_found() -> NotFound:
    return NotFound("Checklist not found.", code="checklist_not_found")


def _item_not_found() -> NotFound:
    return NotFound("Checklist item not found.", code="checklist_item_not_found")


# --- checklists ----------------------------------------------------------------------------


def _with_counts(trip_id: uuid.UUID, user_id: uuid.UUID) -> Any:
    """Checklists with the number of their items, and of done ones, that the user can see."""
    counts = (
        select(
            col(ChecklistItem.checklist_id).label("checklist_id"),
            func.count().label("items"),
            func.count().filter(col(ChecklistItem.done)).label("done"),
        )
        .where(ChecklistItem.trip_id == trip_id, visible_to(user_id))
        .group_by(col(ChecklistItem.checklist_id))
        .subquery()
    )
    return (
        select(Checklist, func.coalesce(counts.c["items"], 0), func.coalesce(counts.c.done, 0))
        .outerjoin(counts, counts.c.checklist_id == Checklist.id)
        .where(Checklist.trip_id == trip_id)
    )


def _checklist_public(checklist: Checklist, items: int, done: int) -> ChecklistPublic:
    return ChecklistPublic.model_validate(
        checklist, update={"item_count": items, "done_count": done}
    )


def _get_checklist(
    session: Session, trip_id: uuid.UUID, checklist_id: uuid.UUID, *, for_update: bool = False
) -> Checklist:
    checklist = session.get(Checklist, (trip_id, checklist_id), with_for_update=for_update)
    if checklist is None:
        raise _checklist_not_found()
    return checklist


def _locked_checklist(
    session: Session,
    trip_id: uuid.UUID,
    checklist_id: uuid.UUID,
    user_id: uuid.UUID,
    expected: ExpectedVersion,
) -> Checklist:
    """The checklist, locked, if it is still at the version the caller expects."""
    checklist = _get_checklist(session, trip_id, checklist_id, for_update=True)
    ensure_version(
        checklist,
        expected,
        lambda: get_checklist(
            session=session, trip_id=trip_id, checklist_id=checklist_id, user_id=user_id
        ),
    )
    return checklist


def get_checklist(
    *, session: Session, trip_id: uuid.UUID, checklist_id: uuid.UUID, user_id: uuid.UUID
) -> ChecklistPublic:
    row = session.exec(_with_counts(trip_id, user_id).where(Checklist.id == checklist_id)).first()
    if row is None:
        raise _checklist_not_found()
    return _checklist_public(*row)


def list_checklists(
    *,
    session: Session,
    trip_id: uuid.UUID,
    user_id: uuid.UUID,
    page: PageRequest,
    kind: ChecklistKind | None = None,
) -> tuple[list[ChecklistPublic], Position | None]:
    """Oldest first, by keyset on (created_at, id)."""
    statement = _with_counts(trip_id, user_id)
    if kind is not None:
        statement = statement.where(Checklist.kind == kind)
    statement = keyset_page(statement, page, Checklist.created_at, Checklist.id)
    rows = session.exec(statement).all()
    checklists = [_checklist_public(*row) for row in rows]
    return split_page(checklists, page.limit, lambda row: Position(row.created_at, row.id))


def create_checklist(
    *, session: Session, trip_id: uuid.UUID, data: ChecklistCreate, actor_id: uuid.UUID
) -> Created[ChecklistPublic]:
    """A new checklist; with a client-chosen id seen before, a replay (or a conflict)."""
    if data.id is not None:
        existing = find_existing(session, Checklist, trip_id=trip_id, row_id=data.id)
        if existing is not None:
            public = get_checklist(
                session=session, trip_id=trip_id, checklist_id=existing.id, user_id=actor_id
            )
            same = (existing.kind, existing.title) == (data.kind, data.title)
            return replay(
                public, version=existing.version, same_content=same, current=lambda: public
            )
    checklist = Checklist(trip_id=trip_id, kind=data.kind, title=data.title, created_by=actor_id)
    if data.id is not None:
        checklist.id = data.id
    session.add(checklist)
    record_activity(
        session=session,
        trip_id=trip_id,
        actor_id=actor_id,
        action="checklist.created",
        object_type="checklist",
        object_id=checklist.id,
        summary=checklist.title,
    )
    session.flush()
    return Created(_checklist_public(checklist, 0, 0))


def update_checklist(
    *,
    session: Session,
    trip_id: uuid.UUID,
    checklist_id: uuid.UUID,
    data: ChecklistUpdate,
    actor_id: uuid.UUID,
    expected: ExpectedVersion,
) -> ChecklistPublic:
    checklist = _locked_checklist(session, trip_id, checklist_id, actor_id, expected)
    changes = data.model_dump(exclude_unset=True)
    for field, value in changes.items():
        setattr(checklist, field, value)
    checklist.updated_at = utcnow()
    session.add(checklist)
    record_activity(
        session=session,
        trip_id=trip_id,
        actor_id=actor_id,
        action="checklist.updated",
        object_type="checklist",
        object_id=checklist.id,
        summary=f"{checklist.title} ({', '.join(sorted(changes))})",
    )
    session.flush()
    return get_checklist(
        session=session, trip_id=trip_id, checklist_id=checklist_id, user_id=actor_id
    )


def delete_checklist(
    *,
    session: Session,
    trip_id: uuid.UUID,
    checklist_id: uuid.UUID,
    actor_id: uuid.UUID,
    expected: ExpectedVersion,
) -> None:
    """Delete the list with all its items, including private ones of other members."""
    checklist = _locked_checklist(session, trip_id, checklist_id, actor_id, expected)
    session.delete(checklist)  # items go with it (ON DELETE CASCADE)
    record_activity(
        session=session,
        trip_id=trip_id,
        actor_id=actor_id,
        action="checklist.deleted",
        object_type="checklist",
        object_id=checklist_id,
        summary=checklist.title,
    )
    session.flush()


# --- items ---------------------------------------------------------------------------------


def item_public(item: ChecklistItem) -> ChecklistItemPublic:
    return ChecklistItemPublic.model_validate(item, from_attributes=True)


def _summary(item: ChecklistItem, detail: str = "") -> str:
    return f"{item.text} ({detail})" if detail else item.text


def _log_readers(item: ChecklistItem) -> uuid.UUID | None:
    """Entries about a private item are for its creator only."""
    return item.created_by if item.private else None


def _get_item(
    session: Session,
    trip_id: uuid.UUID,
    checklist_id: uuid.UUID,
    item_id: uuid.UUID,
    user_id: uuid.UUID,
    expected: ExpectedVersion,
) -> ChecklistItem:
    """The item (locked) if the user may see it and it is still at the version they expect."""
    item = session.exec(
        select(ChecklistItem)
        .where(
            ChecklistItem.trip_id == trip_id,
            ChecklistItem.checklist_id == checklist_id,
            ChecklistItem.id == item_id,
            visible_to(user_id),
        )
        .with_for_update()
    ).first()
    if item is None:
        raise _item_not_found()
    ensure_version(item, expected, lambda: item_public(item))
    return item


def list_items(
    *,
    session: Session,
    trip_id: uuid.UUID,
    checklist_id: uuid.UUID,
    user_id: uuid.UUID,
    page: PageRequest,
) -> tuple[list[ChecklistItemPublic], Position | None]:
    """The items the user can see, oldest first, by keyset on (created_at, id)."""
    _get_checklist(session, trip_id, checklist_id)
    statement = select(ChecklistItem).where(
        ChecklistItem.trip_id == trip_id,
        ChecklistItem.checklist_id == checklist_id,
        visible_to(user_id),
    )
    statement = keyset_page(statement, page, ChecklistItem.created_at, ChecklistItem.id)
    rows = session.exec(statement).all()
    items, last = split_page(rows, page.limit, lambda row: Position(row.created_at, row.id))
    return [item_public(item) for item in items], last


def create_item(
    *,
    session: Session,
    trip_id: uuid.UUID,
    checklist_id: uuid.UUID,
    data: ChecklistItemCreate,
    actor_id: uuid.UUID,
) -> Created[ChecklistItemPublic]:
    """A new item; with a client-chosen id seen before, a replay (or a conflict)."""
    _get_checklist(session, trip_id, checklist_id)  # a list deleted meanwhile: the FK refuses
    if data.id is not None:
        existing = find_existing(session, ChecklistItem, trip_id=trip_id, row_id=data.id)
        if existing is not None:
            return _replay_item(existing, checklist_id, data, actor_id)
    if data.assignee_id is not None:
        require_participants_in_trip(
            session=session, trip_id=trip_id, participant_ids=[data.assignee_id]
        )
    item = ChecklistItem.model_validate(
        data.model_dump(exclude={"id"}),
        update={"trip_id": trip_id, "checklist_id": checklist_id, "created_by": actor_id},
    )
    if data.id is not None:
        item.id = data.id
    session.add(item)
    record_activity(
        session=session,
        trip_id=trip_id,
        actor_id=actor_id,
        action="checklist_item.created",
        object_type="checklist_item",
        object_id=item.id,
        summary=_summary(item),
        visible_to=_log_readers(item),
    )
    session.flush()
    return Created(item_public(item))


def _replay_item(
    existing: ChecklistItem,
    checklist_id: uuid.UUID,
    data: ChecklistItemCreate,
    actor_id: uuid.UUID,
) -> Created[ChecklistItemPublic]:
    if existing.private and existing.created_by != actor_id:
        raise id_taken()  # another member's private item does not exist for the caller
    public = item_public(existing)
    content = (checklist_id, data.text, data.assignee_id, data.done, data.private)
    same = content == (
        existing.checklist_id,
        existing.text,
        existing.assignee_id,
        existing.done,
        existing.private,
    )
    return replay(public, version=existing.version, same_content=same, current=lambda: public)


def update_item(
    *,
    session: Session,
    trip_id: uuid.UUID,
    checklist_id: uuid.UUID,
    item_id: uuid.UUID,
    data: ChecklistItemUpdate,
    actor_id: uuid.UUID,
    expected: ExpectedVersion,
) -> ChecklistItemPublic:
    item = _get_item(session, trip_id, checklist_id, item_id, actor_id, expected)
    changes = data.model_dump(exclude_unset=True)
    if "private" in changes and changes["private"] != item.private and item.created_by != actor_id:
        raise Forbidden(
            "Only the member who added an item can make it private.", code="not_item_creator"
        )
    if changes.get("assignee_id") is not None:
        require_participants_in_trip(
            session=session, trip_id=trip_id, participant_ids=[changes["assignee_id"]]
        )
    for field, value in changes.items():
        setattr(item, field, value)
    item.updated_at = utcnow()
    session.add(item)
    record_activity(
        session=session,
        trip_id=trip_id,
        actor_id=actor_id,
        action="checklist_item.updated",
        object_type="checklist_item",
        object_id=item.id,
        summary=_summary(item, ", ".join(sorted(changes))),
        visible_to=_log_readers(item),
    )
    session.flush()
    return item_public(item)


def delete_item(
    *,
    session: Session,
    trip_id: uuid.UUID,
    checklist_id: uuid.UUID,
    item_id: uuid.UUID,
    actor_id: uuid.UUID,
    expected: ExpectedVersion,
) -> None:
    item = _get_item(session, trip_id, checklist_id, item_id, actor_id, expected)
    session.delete(item)
    record_activity(
        session=session,
        trip_id=trip_id,
        actor_id=actor_id,
        action="checklist_item.deleted",
        object_type="checklist_item",
        object_id=item_id,
        summary=_summary(item),
        visible_to=_log_readers(item),
    )
    session.flush()


# --- the account: its export and its deletion ------------------------------------------------


def exported_checklists(session: Session, user: User) -> Iterator[ChecklistExported]:
    """The checklists the account created, for its export."""
    return export.exported_rows(
        session,
        ChecklistExported,
        select(Checklist)
        .where(Checklist.created_by == user.id)
        .order_by(col(Checklist.created_at), col(Checklist.id)),
    )


def exported_checklist_items(session: Session, user: User) -> Iterator[ChecklistItemExported]:
    """The checklist items the account created (its private ones too), for its export."""
    return export.exported_rows(
        session,
        ChecklistItemExported,
        select(ChecklistItem)
        .where(ChecklistItem.created_by == user.id)
        .order_by(col(ChecklistItem.created_at), col(ChecklistItem.id)),
    )


def delete_private_items_of_deleted_account(*, session: Session, user: User) -> None:
    """A private item exists only for its creator: with the account, it goes (each deletion
    leaves its tombstone, as any other does)."""
    items = session.exec(
        select(ChecklistItem)
        .where(ChecklistItem.created_by == user.id, col(ChecklistItem.private))
        .order_by(col(ChecklistItem.trip_id), col(ChecklistItem.id))
    ).all()
    for item in items:
        claim_version(session, item.trip_id)  # the trip's lock first, in trip order
        session.delete(item)
    session.flush()


export.register(
    export.ExportSection(
        "checklists", ChecklistExported, exported_checklists, "The checklists the account created."
    )
)
export.register(
    export.ExportSection(
        "checklist_items",
        ChecklistItemExported,
        exported_checklist_items,
        "The checklist items the account created, its private ones included.",
    )
)
user_hooks.account_deleting.subscribe(delete_private_items_of_deleted_account)
