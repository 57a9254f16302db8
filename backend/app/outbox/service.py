"""The outbox: queue a message in the caller's transaction; claim, settle and re-queue them.

Features call `enqueue` with the session of the action that causes the mail, so the message
commits with it or not at all. The worker (app.outbox.worker) claims due messages with
`FOR UPDATE SKIP LOCKED`, sends them outside any transaction, and settles each under its claim.
"""

import re
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from functools import cache

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from sqlalchemy import ColumnElement, and_, delete, func, update
from sqlmodel import Session, col, select
from sqlmodel.sql.expression import SelectOfScalar

from app.core.config import Settings, get_settings
from app.core.retention import delete_batch
from app.outbox.models import OutboxMessage, OutboxStatus

SUBJECT_MAX = 300


@cache
def _templates() -> Environment:
    """`<kind>.txt` and `<kind>.html` under app/outbox/templates; HTML is autoescaped."""
    return Environment(
        loader=PackageLoader("app.outbox", "templates"),
        autoescape=select_autoescape(enabled_extensions=("html",), default=False),
        undefined=StrictUndefined,  # a missing value is a bug, not an empty string in a mail
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def public_link(path: str) -> str:
    """A link into the web client (PUBLIC_URL), to the screen `path` names (`/verify-email/…`)."""
    return f"{get_settings().PUBLIC_URL}#{path}"


def enqueue(
    *, session: Session, kind: str, to: str, subject: str, context: Mapping[str, object]
) -> OutboxMessage:
    """Render the `kind` templates with `context` and queue the mail in `session`'s transaction."""
    subject = re.sub(r"\s+", " ", subject).strip()
    if len(subject) > SUBJECT_MAX:
        subject = subject[: SUBJECT_MAX - 1] + "…"
    values = {**context, "subject": subject}
    message = OutboxMessage(
        kind=kind,
        recipient=to,
        subject=subject,
        text_body=_templates().get_template(f"{kind}.txt").render(values),
        html_body=_templates().get_template(f"{kind}.html").render(values),
    )
    session.add(message)
    return message


def queued_since(*, session: Session, kind: str, to: str, since: datetime) -> bool:
    """Whether a `kind` message to `to` was queued at or after `since`."""
    found = session.exec(
        select(OutboxMessage.id)
        .where(
            OutboxMessage.recipient == to,
            OutboxMessage.kind == kind,
            col(OutboxMessage.created_at) >= since,
        )
        .limit(1)
    ).first()
    return found is not None


def messages_to(address: str) -> SelectOfScalar[OutboxMessage]:
    """Every message to `address`, whatever its state, oldest first (for the account export)."""
    return (
        select(OutboxMessage)
        .where(OutboxMessage.recipient == address)
        .order_by(col(OutboxMessage.created_at), col(OutboxMessage.id))
    )


def forget_recipient(*, session: Session, address: str) -> int:
    """Delete every message to `address`: waiting, sent or dead (an account's deletion).

    Mail not yet sent is not sent; copies of mail sent are not kept until the retention. A
    worker that is sending one at this moment finishes, and finds its claim gone.
    """
    result = session.execute(delete(OutboxMessage).where(col(OutboxMessage.recipient) == address))
    return int(result.rowcount)  # type: ignore[attr-defined]


def retry_delay(attempts: int, settings: Settings) -> timedelta:
    """The wait after the `attempts`-th failed attempt: the base, doubling, up to the maximum."""
    seconds = settings.OUTBOX_RETRY_BASE_SECONDS * 2 ** min(attempts - 1, 62)
    return timedelta(seconds=min(seconds, settings.OUTBOX_RETRY_MAX_SECONDS))


def claim_due(
    *, session: Session, now: datetime, claim_token: uuid.UUID, settings: Settings
) -> list[OutboxMessage]:
    """Claim up to OUTBOX_BATCH_SIZE due messages for one worker until its lease runs out.

    Rows another worker holds locked are skipped, not waited for, so two workers never claim
    one message; a claim whose worker died runs out and the message is due again. Counting
    the attempt here means a message that kills its worker still ends as a dead letter.
    """
    _bury_abandoned(session, now=now, settings=settings)
    due = (
        select(OutboxMessage.id)
        .where(
            col(OutboxMessage.status) == OutboxStatus.PENDING,
            col(OutboxMessage.next_attempt_at) <= now,
            col(OutboxMessage.attempts) < settings.OUTBOX_MAX_ATTEMPTS,
        )
        .order_by(col(OutboxMessage.next_attempt_at))
        .limit(settings.OUTBOX_BATCH_SIZE)
        .with_for_update(skip_locked=True)
    )
    claimed = session.scalars(
        update(OutboxMessage)
        .where(col(OutboxMessage.id).in_(due.scalar_subquery()))
        .values(
            attempts=OutboxMessage.attempts + 1,
            next_attempt_at=now + timedelta(seconds=settings.OUTBOX_LEASE_SECONDS),
            claim_token=claim_token,
            updated_at=now,
        )
        .returning(OutboxMessage),
        execution_options={"synchronize_session": False},
    ).all()
    return sorted(claimed, key=lambda message: (message.created_at, message.id))


def _bury_abandoned(session: Session, *, now: datetime, settings: Settings) -> None:
    """Messages whose last attempt never finished (its worker died) become dead letters."""
    session.execute(
        update(OutboxMessage)
        .where(
            col(OutboxMessage.status) == OutboxStatus.PENDING,
            col(OutboxMessage.next_attempt_at) <= now,
            col(OutboxMessage.attempts) >= settings.OUTBOX_MAX_ATTEMPTS,
        )
        .values(
            status=OutboxStatus.DEAD,
            claim_token=None,
            last_error="the worker sending it stopped during its last attempt",
            updated_at=now,
        )
    )


def _held(message_id: uuid.UUID, claim_token: uuid.UUID) -> list[ColumnElement[bool]]:
    return [
        col(OutboxMessage.id) == message_id,
        col(OutboxMessage.claim_token) == claim_token,
        col(OutboxMessage.status) == OutboxStatus.PENDING,
    ]


def mark_sent(
    *, session: Session, message_id: uuid.UUID, claim_token: uuid.UUID, now: datetime
) -> bool:
    """Record the send; False when the claim was lost meanwhile (it may then go twice)."""
    result = session.execute(
        update(OutboxMessage)
        .where(*_held(message_id, claim_token))
        .values(
            status=OutboxStatus.SENT, sent_at=now, claim_token=None, last_error=None, updated_at=now
        )
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def mark_failed(
    *,
    session: Session,
    message_id: uuid.UUID,
    claim_token: uuid.UUID,
    now: datetime,
    error: str,
    permanent: bool,
    settings: Settings,
) -> OutboxStatus | None:
    """Schedule the next attempt, or make it a dead letter when refused for good or out of
    attempts; returns the new status (None when the claim was lost meanwhile)."""
    message = session.exec(
        select(OutboxMessage).where(*_held(message_id, claim_token)).with_for_update()
    ).first()
    if message is None:
        return None
    dead = permanent or message.attempts >= settings.OUTBOX_MAX_ATTEMPTS
    message.status = OutboxStatus.DEAD if dead else OutboxStatus.PENDING
    message.next_attempt_at = now + retry_delay(message.attempts, settings)
    message.claim_token = None
    message.last_error = error[:500]
    message.updated_at = now
    session.add(message)
    return message.status


def release(
    *,
    session: Session,
    message_ids: Sequence[uuid.UUID],
    claim_token: uuid.UUID,
    now: datetime,
) -> int:
    """Hand back claimed messages that were not tried (the server was down, or the worker is
    stopping): due again at once, and the claim's attempt is not counted."""
    result = session.execute(
        update(OutboxMessage)
        .where(
            col(OutboxMessage.id).in_(message_ids),
            col(OutboxMessage.claim_token) == claim_token,
            col(OutboxMessage.status) == OutboxStatus.PENDING,
        )
        .values(
            attempts=OutboxMessage.attempts - 1,
            next_attempt_at=now,
            claim_token=None,
            updated_at=now,
        )
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


def requeue(
    *, session: Session, now: datetime, message_ids: Sequence[uuid.UUID] | None = None
) -> int:
    """Give dead letters (all of them, or those listed) a fresh set of attempts, due now."""
    statement = update(OutboxMessage).where(col(OutboxMessage.status) == OutboxStatus.DEAD)
    if message_ids is not None:
        statement = statement.where(col(OutboxMessage.id).in_(message_ids))
    result = session.execute(
        statement.values(
            status=OutboxStatus.PENDING,
            attempts=0,
            next_attempt_at=now,
            claim_token=None,
            updated_at=now,
        )
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


def delete_finished(*, session: Session, now: datetime, limit: int) -> int:
    """Delete up to `limit` sent or dead messages older than OUTBOX_RETENTION_DAYS."""
    cutoff = now - timedelta(days=get_settings().OUTBOX_RETENTION_DAYS)
    finished = (col(OutboxMessage.status) != OutboxStatus.PENDING) & (
        col(OutboxMessage.updated_at) < cutoff
    )
    return delete_batch(session, OutboxMessage, finished, limit=limit)


def count_unsent(*, session: Session, limit: int) -> int:
    """Messages not sent yet (due or waiting for a retry), counting at most `limit`: cheap
    enough to ask on every metrics scrape, read from the partial index of pending mail."""
    pending = (
        select(OutboxMessage.id).where(OutboxMessage.status == OutboxStatus.PENDING).limit(limit)
    ).subquery()
    return int(session.exec(select(func.count()).select_from(pending)).one())


def summary(*, session: Session, now: datetime) -> dict[str, int]:
    """How many messages are due, waiting for a retry or a claim, sent and dead."""
    pending = col(OutboxMessage.status) == OutboxStatus.PENDING
    due = and_(pending, col(OutboxMessage.next_attempt_at) <= now)
    row = session.exec(
        select(
            func.count().filter(due),
            func.count().filter(and_(pending, col(OutboxMessage.next_attempt_at) > now)),
            func.count().filter(col(OutboxMessage.status) == OutboxStatus.SENT),
            func.count().filter(col(OutboxMessage.status) == OutboxStatus.DEAD),
        )
    ).one()
    return dict(zip(("due", "waiting", "sent", "dead"), (int(n) for n in row), strict=True))
