"""Recording and reading a trip's activity log. Every service that changes a trip records here."""

import uuid
from collections.abc import Iterator

from sqlalchemy import ColumnElement, delete, func, update
from sqlmodel import Session, col, or_, select

from app.activity.models import Activity, ActivityExported, ActivityPublic
from app.core.pagination import PageRequest, Position, keyset_page, split_page
from app.trips import hooks as trip_hooks
from app.users import export
from app.users import hooks as user_hooks
from app.users.models import FORMER_MEMBER_NAME, User


def record_activity(
    *,
    session: Session,
    trip_id: uuid.UUID,
    actor_id: uuid.UUID | None,
    action: str,
    object_type: str,
    object_id: uuid.UUID | None = None,
    summary: str = "",
    visible_to: uuid.UUID | None = None,
) -> None:
    """Add an entry in the caller's transaction: it commits, or vanishes, with the change."""
    session.add(
        Activity(
            trip_id=trip_id,
            actor_id=actor_id,
            action=action,
            object_type=object_type,
            object_id=object_id,
            summary=summary[:500],
            visible_to=visible_to,
        )
    )


def _visible_to(user_id: uuid.UUID) -> ColumnElement[bool]:
    return or_(col(Activity.visible_to).is_(None), Activity.visible_to == user_id)


def list_activity(
    *, session: Session, trip_id: uuid.UUID, user_id: uuid.UUID, page: PageRequest
) -> tuple[list[ActivityPublic], Position | None]:
    """What this user may see, newest first, by keyset on (created_at, id)."""
    statement = (
        select(Activity, User.full_name)
        .outerjoin(User, col(User.id) == Activity.actor_id)
        .where(
            Activity.trip_id == trip_id,
            _visible_to(user_id),
        )
    )
    statement = keyset_page(statement, page, Activity.created_at, Activity.id, descending=True)
    rows = session.exec(statement).all()
    entries = [
        ActivityPublic.model_validate({**activity.model_dump(), "actor_name": actor_name})
        for activity, actor_name in rows
    ]
    return split_page(entries, page.limit, lambda entry: Position(entry.created_at, entry.id))


def exported_activity(session: Session, user: User) -> Iterator[ActivityExported]:
    """The entries of what the account did (that it may see), for its export."""
    return export.exported_rows(
        session,
        ActivityExported,
        select(Activity)
        .where(Activity.actor_id == user.id, _visible_to(user.id))
        .order_by(col(Activity.created_at), col(Activity.id)),
    )


def forget_deleted_account(*, session: Session, user: User) -> None:
    """Entries only the account could read go; the entries that name it no longer do.

    Only `member.added` names an account (trips.join_trip writes "<name> as <role>"); its
    other entries refer to it by id, shown as the deleted account's new name.
    """
    session.execute(delete(Activity).where(col(Activity.visible_to) == user.id))
    session.execute(
        update(Activity)
        .where(
            col(Activity.action) == "member.added",
            col(Activity.object_type) == "user",
            col(Activity.object_id) == user.id,
        )
        .values(
            summary=func.regexp_replace(Activity.summary, "^.* as ", f"{FORMER_MEMBER_NAME} as ")
        )
    )


trip_hooks.happened.subscribe(record_activity)
user_hooks.account_deleting.subscribe(forget_deleted_account)
export.register(
    export.ExportSection(
        "activity",
        ActivityExported,
        exported_activity,
        "The activity log's entries of what the account did.",
    )
)
