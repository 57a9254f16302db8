"""The outbox worker: claims due messages, sends them at the configured rate, settles each.

Run by `python -m app.worker` (one process; run several for more throughput or redundancy:
claims never overlap) and by `make dev` beside the API. Requests never send mail themselves,
so an SMTP outage only delays it: while the server cannot be reached the worker hands its
claims back uncounted and waits, doubling from OUTBOX_POLL_SECONDS to
OUTBOX_OUTAGE_MAX_WAIT_SECONDS, then tries again.
"""

import logging
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from email.utils import formatdate, parseaddr

from sqlalchemy.exc import SQLAlchemyError

from app.core.columns import utcnow
from app.core.config import Settings, get_settings
from app.core.db import get_sessionmaker
from app.outbox import service
from app.outbox.delivery import DeliveryFailed, Transport, TransportUnavailable, open_transport
from app.outbox.models import OutboxMessage, OutboxStatus

logger = logging.getLogger(__name__)


@dataclass
class PassResult:
    """What one pass (one claimed batch) did."""

    claimed: int = 0
    sent: int = 0
    retried: int = 0
    dead: int = 0
    released: int = 0
    outage: bool = False  # the server could not be reached: nothing was counted against mail


def build_email(message: OutboxMessage, settings: Settings) -> EmailMessage:
    """The MIME message: a text part and an HTML alternative, with a Message-ID of its own."""
    email = EmailMessage()
    email["From"] = settings.EMAIL_FROM
    email["To"] = message.recipient
    email["Subject"] = message.subject
    email["Date"] = formatdate(usegmt=True)
    domain = parseaddr(settings.EMAIL_FROM)[1].rpartition("@")[2] or "tripsync.invalid"
    email["Message-ID"] = f"<{message.id}@{domain}>"
    email.set_content(message.text_body)
    email.add_alternative(message.html_body, subtype="html")
    return email


def _email_or_refusal(message: OutboxMessage, settings: Settings) -> EmailMessage:
    """The MIME message, or DeliveryFailed for good when the row cannot make one."""
    try:
        return build_email(message, settings)
    except (ValueError, TypeError) as error:  # e.g. a header the email package refuses
        raise DeliveryFailed(f"cannot build the message: {error}"[:400], permanent=True) from error


class Pacer:
    """At most `rate` sends a second: each waits for its turn (or for the worker to stop)."""

    def __init__(self, rate: float) -> None:
        self.interval = 1 / rate
        self.next_turn = time.monotonic()

    def wait_turn(self, stop: threading.Event) -> bool:
        delay = self.next_turn - time.monotonic()
        if delay > 0 and stop.wait(delay):
            return False
        self.next_turn = max(self.next_turn, time.monotonic()) + self.interval
        return True


class OutboxWorker:
    def __init__(
        self,
        settings: Settings | None = None,
        *,
        transport_factory: Callable[[Settings], Transport] = open_transport,
        stop: threading.Event | None = None,
    ) -> None:
        self.settings = settings or get_settings()
        self.transport_factory = transport_factory
        self.stop = stop or threading.Event()
        self.pacer = Pacer(self.settings.OUTBOX_SEND_RATE)

    def run(self) -> None:
        """Send mail until `stop` is set."""
        settings = self.settings
        wait = settings.OUTBOX_POLL_SECONDS
        logger.info("outbox worker started (%s delivery)", settings.EMAIL_DELIVERY)
        while not self.stop.is_set():
            try:
                result = self.run_once()
            except SQLAlchemyError as error:
                logger.warning("outbox worker: database unavailable (%s)", type(error).__name__)
                result = PassResult(outage=True)
            except Exception:
                # A bug must not stop the mail: log it, wait as for an outage, go on. The
                # batch's claims run out, and a message that keeps failing ends as a dead letter.
                logger.exception("outbox worker: unexpected error")
                result = PassResult(outage=True)
            if result.outage:
                self.stop.wait(wait)
                wait = min(wait * 2, settings.OUTBOX_OUTAGE_MAX_WAIT_SECONDS)
                continue
            wait = settings.OUTBOX_POLL_SECONDS
            if result.claimed < settings.OUTBOX_BATCH_SIZE:
                self.stop.wait(settings.OUTBOX_POLL_SECONDS)  # nothing more is due yet
        logger.info("outbox worker stopped")

    def run_once(self, *, now: datetime | None = None) -> PassResult:
        """Claim one batch of due messages and try each; `now` is for tests of the schedule."""
        settings = self.settings
        claim_token = uuid.uuid4()
        lease_ends = time.monotonic() + settings.OUTBOX_LEASE_SECONDS
        with get_sessionmaker()() as session:
            messages = service.claim_due(
                session=session, now=now or utcnow(), claim_token=claim_token, settings=settings
            )
            session.commit()
        result = PassResult(claimed=len(messages))
        if not messages:
            return result
        transport = self.transport_factory(settings)
        try:
            for index, message in enumerate(messages):
                # Wait for the rate's turn, then send only with time to spare on the claim,
                # else another worker could send it too.
                if (
                    not self.pacer.wait_turn(self.stop)
                    or lease_ends - time.monotonic() < settings.outbox_send_budget_seconds
                ):
                    result.released = self._release(messages[index:], claim_token)
                    break
                try:
                    transport.send(message.id, _email_or_refusal(message, settings))
                except TransportUnavailable as error:
                    logger.warning("outbox: mail server unavailable, will retry: %s", error)
                    result.outage = True
                    result.released = self._release(messages[index:], claim_token)
                    break
                except DeliveryFailed as error:
                    status = self._settle_failure(message, claim_token, error, now)
                    if status == OutboxStatus.DEAD:
                        result.dead += 1
                    else:
                        result.retried += 1
                else:
                    self._settle_sent(message, claim_token, now)
                    result.sent += 1
        finally:
            transport.close()
        return result

    def _settle_sent(
        self, message: OutboxMessage, claim_token: uuid.UUID, now: datetime | None
    ) -> None:
        with get_sessionmaker()() as session:
            held = service.mark_sent(
                session=session, message_id=message.id, claim_token=claim_token, now=now or utcnow()
            )
            session.commit()
        if not held:
            logger.warning("outbox: message %s was sent after its claim ran out", message.id)

    def _settle_failure(
        self,
        message: OutboxMessage,
        claim_token: uuid.UUID,
        error: DeliveryFailed,
        now: datetime | None,
    ) -> OutboxStatus | None:
        with get_sessionmaker()() as session:
            status = service.mark_failed(
                session=session,
                message_id=message.id,
                claim_token=claim_token,
                now=now or utcnow(),
                error=str(error),
                permanent=error.permanent,
                settings=self.settings,
            )
            session.commit()
        if status == OutboxStatus.DEAD:
            logger.error("outbox: message %s is a dead letter: %s", message.id, error)
        else:
            logger.warning("outbox: message %s failed, will retry: %s", message.id, error)
        return status

    def _release(self, messages: Sequence[OutboxMessage], claim_token: uuid.UUID) -> int:
        with get_sessionmaker()() as session:
            released = service.release(
                session=session,
                message_ids=[message.id for message in messages],
                claim_token=claim_token,
                now=utcnow(),
            )
            session.commit()
        return released


def drain(worker: OutboxWorker, *, now: datetime | None = None) -> PassResult:
    """Run passes until nothing due is left or the server is down; the totals (tests, CLI)."""
    total = PassResult()
    while True:
        result = worker.run_once(now=now)
        for field in ("claimed", "sent", "retried", "dead", "released"):
            setattr(total, field, getattr(total, field) + getattr(result, field))
        total.outage = result.outage
        if result.outage or result.claimed < worker.settings.OUTBOX_BATCH_SIZE:
            return total
