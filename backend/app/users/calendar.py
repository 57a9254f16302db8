"""Calendar feed tokens: one per user, shown once, stored as a hash, revocable.

Calendar apps fetch a feed by its address alone (they cannot send a bearer header), so the
token in the address stands for the user: it lets its holder read the calendar of the trips
that user is a member of, and nothing else.
"""

import uuid
from collections.abc import Iterator

from sqlalchemy import delete
from sqlalchemy.dialects.postgresql import insert
from sqlmodel import Session, col, select

from app.core.columns import utcnow
from app.core.security import OPAQUE_TOKEN_MAX_LENGTH, issue_opaque_token, opaque_token_hash
from app.users import export
from app.users.models import (
    CalendarFeedToken,
    CalendarFeedTokenCreated,
    CalendarFeedTokenExported,
    User,
)

FEED_PATH = "/trips/{trip_id}/calendar.ics?token="


def issue_token(*, session: Session, user: User) -> CalendarFeedTokenCreated:
    """A new token for the user; the one it replaces (if any) stops working at once."""
    token, token_hash = issue_opaque_token()
    now = utcnow()
    # One statement, so two devices asking at once leave exactly one token (the later one).
    statement = insert(CalendarFeedToken).values(
        user_id=user.id, token_hash=token_hash, created_at=now
    )
    session.execute(
        statement.on_conflict_do_update(
            index_elements=["user_id"],
            set_={"token_hash": token_hash, "created_at": now},
        )
    )
    return CalendarFeedTokenCreated(token=token, created_at=now, feed_path=FEED_PATH + token)


def revoke_token(*, session: Session, user: User) -> None:
    """Forget the user's token (if any): feed addresses holding it answer 404 from now on."""
    session.execute(delete(CalendarFeedToken).where(col(CalendarFeedToken.user_id) == user.id))


def user_for_token(*, session: Session, token: str) -> uuid.UUID | None:
    """The active user a feed token stands for; None for any other string."""
    if len(token) > OPAQUE_TOKEN_MAX_LENGTH:
        return None
    return session.exec(
        select(CalendarFeedToken.user_id)
        .join(User, col(User.id) == CalendarFeedToken.user_id)
        .where(CalendarFeedToken.token_hash == opaque_token_hash(token), col(User.is_active))
    ).first()


def exported_tokens(session: Session, user: User) -> Iterator[CalendarFeedTokenExported]:
    """The account's calendar feed token (none or one), for its export."""
    row = session.get(CalendarFeedToken, user.id)
    if row is not None:
        yield CalendarFeedTokenExported(created_at=row.created_at)


export.register(
    export.ExportSection(
        "calendar_feed_tokens",
        CalendarFeedTokenExported,
        exported_tokens,
        "The calendar feed token, if there is one: since when (never the token or its hash).",
    )
)
