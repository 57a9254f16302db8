"""Recording and reading a trip's activity log. Every service that changes a trip records here."""

import uuid

from sqlmodel import Session, col, or_, select

from app.activity.models import Activity, ActivityPublic
from app.core.pagination import PageRequest, Position, keyset_page, split_page
from app.trips import hooks as trip_hooks
from app.users.models import User


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


def list_activity(
    *, session: Session, trip_id: uuid.UUID, user_id: uuid.UUID, page: PageRequest
) -> tuple[list[ActivityPublic], Position | None]:
    """What this user may see, newest first, by keyset on (created_at, id)."""
    statement = (
        select(Activity, User.full_name)
        .outerjoin(User, col(User.id) == Activity.actor_id)
        .where(
            Activity.trip_id == trip_id,
            or_(col(Activity.visible_to).is_(None), Activity.visible_to == user_id),
        )
    )
    statement = keyset_page(statement, page, Activity.created_at, Activity.id, descending=True)
    rows = session.exec(statement).all()
    entries = [
        ActivityPublic.model_validate({**activity.model_dump(), "actor_name": actor_name})
        for activity, actor_name in rows
    ]
    return split_page(entries, page.limit, lambda entry: Position(entry.created_at, entry.id))


trip_hooks.happened.subscribe(record_activity)
