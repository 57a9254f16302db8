"""The outbox: each message to send, written in the transaction of the action that causes it."""

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import CheckConstraint, DateTime, Index, String, Text, text
from sqlmodel import Field, SQLModel

from app.core.columns import timestamp_column, uuid_primary_key


class OutboxStatus(StrEnum):
    PENDING = "pending"  # waiting to be sent (or claimed by a worker that is sending it)
    SENT = "sent"  # the server accepted it
    DEAD = "dead"  # a dead letter: refused for good, or out of attempts; re-queue by hand


class OutboxMessage(SQLModel, table=True):
    """One email: rendered when queued, so the worker needs to know nothing of features."""

    __tablename__ = "outbox_messages"
    __table_args__ = (
        CheckConstraint("status IN ('pending', 'sent', 'dead')", name="status"),
        CheckConstraint("attempts >= 0", name="attempts_not_negative"),
        # What the workers claim: the due pending messages, oldest first.
        Index(
            "ix_outbox_messages_due",
            "next_attempt_at",
            postgresql_where=text("status = 'pending'"),
        ),
        # One security notice per address and hour (app.users.service).
        Index("ix_outbox_messages_recipient_kind_created_at", "recipient", "kind", "created_at"),
        # What `make cleanup` deletes: finished messages past the retention.
        Index(
            "ix_outbox_messages_finished",
            "updated_at",
            postgresql_where=text("status <> 'pending'"),
        ),
    )

    id: uuid.UUID = uuid_primary_key()
    # Which template made it ("email_verification", "invitation", ...): for operators and
    # for rules such as one notice an hour.
    kind: str = Field(sa_type=String(64))
    recipient: str = Field(sa_type=String(320))
    subject: str = Field(sa_type=String(300))
    text_body: str = Field(sa_type=Text)
    html_body: str = Field(sa_type=Text)
    status: OutboxStatus = Field(default=OutboxStatus.PENDING, sa_type=String(16))
    # Attempts started, counted when a worker claims the message (a crash counts too).
    attempts: int = Field(default=0)
    # When it is due; while a worker holds it, when that worker's claim runs out.
    next_attempt_at: datetime = timestamp_column()
    # The claim of the worker sending it; its writes about the message must carry it.
    claim_token: uuid.UUID | None = Field(default=None)
    last_error: str | None = Field(default=None, sa_type=String(500))
    created_at: datetime = timestamp_column()
    updated_at: datetime = timestamp_column()
    sent_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))


class OutboxMessageExported(SQLModel):
    """A mail sent (or to be sent) to the account's address, in its export: which kind and
    when, never its subject or text (they carry single-use links, and others' names)."""

    id: uuid.UUID
    kind: str
    status: OutboxStatus
    created_at: datetime
    sent_at: datetime | None
