"""The outbox's rules, in the test's transaction: the backoff schedule, dead letters, leases
and crashed workers, outages that count no attempt, re-queuing, retention, the send rate, and
file delivery named by message id."""

import email
import email.policy
import time
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session, select

from app import cli
from app.core.columns import utcnow
from app.core.config import EmailDelivery, Settings, get_settings
from app.outbox import service
from app.outbox.delivery import DeliveryFailed, FileTransport, TransportUnavailable
from app.outbox.models import OutboxMessage, OutboxStatus
from app.outbox.worker import OutboxWorker, drain
from tests import support


def _settings(**changes: Any) -> Settings:
    return get_settings().model_copy(update=changes)


def _queue(session: Session, to: str = "someone@example.com", **values: Any) -> OutboxMessage:
    message = OutboxMessage(
        kind="test", recipient=to, subject="Hi", text_body="Hello", html_body="<p>Hello</p>"
    )
    for name, value in values.items():
        setattr(message, name, value)
    session.add(message)
    session.commit()
    return message


class Scripted:
    """A transport that answers each send with the next outcome: None (sent) or an error."""

    def __init__(self, *outcomes: Exception | None) -> None:
        self.outcomes = list(outcomes)
        self.sent: list[uuid.UUID] = []

    def __call__(self, settings: Settings) -> "Scripted":
        return self

    def send(self, message_id: uuid.UUID, message: Any) -> None:
        outcome = self.outcomes.pop(0) if self.outcomes else None
        if outcome is not None:
            raise outcome
        self.sent.append(message_id)

    def close(self) -> None:
        pass


def _reload(session: Session, message: OutboxMessage) -> OutboxMessage:
    session.expire_all()
    found = session.get(OutboxMessage, message.id)
    assert found is not None
    return found


def test_the_backoff_doubles_up_to_its_maximum() -> None:
    settings = _settings(OUTBOX_RETRY_BASE_SECONDS=30, OUTBOX_RETRY_MAX_SECONDS=3600)
    delays = [service.retry_delay(n, settings).total_seconds() for n in range(1, 11)]
    assert delays == [30, 60, 120, 240, 480, 960, 1920, 3600, 3600, 3600]
    assert service.retry_delay(500, settings).total_seconds() == 3600


def test_a_failing_message_follows_the_schedule_then_becomes_a_dead_letter(
    session: Session,
) -> None:
    settings = _settings(
        OUTBOX_MAX_ATTEMPTS=4, OUTBOX_RETRY_BASE_SECONDS=10, OUTBOX_RETRY_MAX_SECONDS=25
    )
    message = _queue(session)
    transport = Scripted(*[DeliveryFailed("451 later")] * 4)
    worker = OutboxWorker(settings, transport_factory=transport)
    now = utcnow()
    schedule = []
    for _ in range(4):
        result = worker.run_once(now=now)
        assert result.claimed == 1
        # Not due before its time: a pass just before it claims nothing.
        stored = _reload(session, message)
        assert worker.run_once(now=stored.next_attempt_at - timedelta(seconds=1)).claimed == 0
        schedule.append((stored.status, stored.attempts, stored.next_attempt_at - now))
        now = stored.next_attempt_at
    assert schedule == [
        (OutboxStatus.PENDING, 1, timedelta(seconds=10)),
        (OutboxStatus.PENDING, 2, timedelta(seconds=20)),
        (OutboxStatus.PENDING, 3, timedelta(seconds=25)),
        (OutboxStatus.DEAD, 4, timedelta(seconds=25)),
    ]
    assert _reload(session, message).last_error == "451 later"
    assert worker.run_once(now=now + timedelta(days=1)).claimed == 0  # dead stays dead
    assert transport.sent == []


def test_a_permanent_refusal_is_a_dead_letter_at_once(session: Session) -> None:
    message = _queue(session)
    worker = OutboxWorker(
        transport_factory=Scripted(DeliveryFailed("550 no such user", permanent=True))
    )
    assert worker.run_once().dead == 1
    stored = _reload(session, message)
    assert (stored.status, stored.attempts) == (OutboxStatus.DEAD, 1)


def test_an_outage_hands_the_batch_back_without_counting_an_attempt(session: Session) -> None:
    first, second = _queue(session), _queue(session)
    down = Scripted(TransportUnavailable("connection refused"))
    result = OutboxWorker(transport_factory=down).run_once()
    assert (result.claimed, result.released, result.outage) == (2, 2, True)
    for message in (first, second):
        stored = _reload(session, message)
        assert (stored.status, stored.attempts, stored.claim_token) == (
            OutboxStatus.PENDING,
            0,
            None,
        )
    back = Scripted()
    assert drain(OutboxWorker(transport_factory=back)).sent == 2
    assert back.sent == [first.id, second.id]  # oldest first


def test_a_crashed_workers_claim_runs_out_and_the_message_is_sent_once(
    session: Session,
) -> None:
    settings = _settings(OUTBOX_LEASE_SECONDS=120)
    message = _queue(session)
    now = utcnow()
    crashed_token = uuid.uuid4()
    # A worker claims the message and dies before settling it.
    [claimed] = service.claim_due(
        session=session, now=now, claim_token=crashed_token, settings=settings
    )
    session.commit()
    assert claimed.id == message.id

    transport = Scripted()
    worker = OutboxWorker(settings, transport_factory=transport)
    assert worker.run_once(now=now + timedelta(seconds=119)).claimed == 0  # still held
    assert worker.run_once(now=now + timedelta(seconds=120)).sent == 1
    assert transport.sent == [message.id]
    stored = _reload(session, message)
    assert (stored.status, stored.attempts) == (OutboxStatus.SENT, 2)
    # The dead worker's claim is gone: had it come back, it could settle nothing.
    assert not service.mark_sent(
        session=session, message_id=message.id, claim_token=crashed_token, now=now
    )


def test_a_message_whose_last_attempt_never_finished_is_a_dead_letter(session: Session) -> None:
    settings = _settings(OUTBOX_MAX_ATTEMPTS=2, OUTBOX_LEASE_SECONDS=60)
    message = _queue(session, attempts=2, next_attempt_at=utcnow() - timedelta(seconds=1))
    transport = Scripted()
    assert OutboxWorker(settings, transport_factory=transport).run_once().claimed == 0
    stored = _reload(session, message)
    assert stored.status == OutboxStatus.DEAD
    assert "stopped during its last attempt" in (stored.last_error or "")
    assert transport.sent == []


def test_dead_letters_are_requeued_with_fresh_attempts(session: Session) -> None:
    dead = _queue(session, status=OutboxStatus.DEAD, attempts=10, last_error="550")
    other = _queue(session, status=OutboxStatus.DEAD, attempts=10)
    assert cli.main(["outbox", "--requeue", str(dead.id)]) == 0
    assert (_reload(session, dead).status, _reload(session, dead).attempts) == (
        OutboxStatus.PENDING,
        0,
    )
    assert _reload(session, other).status == OutboxStatus.DEAD
    assert service.requeue(session=session, now=utcnow()) >= 1  # every dead letter
    assert _reload(session, other).status == OutboxStatus.PENDING
    with pytest.raises(SystemExit):
        cli.main(["outbox", "--requeue", "not-a-uuid"])


def test_the_summary_counts_each_state(
    session: Session, capsys: pytest.CaptureFixture[str]
) -> None:
    now = utcnow()
    before = service.summary(session=session, now=now)
    _queue(session, next_attempt_at=now - timedelta(seconds=1))
    _queue(session, next_attempt_at=now + timedelta(minutes=5))
    _queue(session, status=OutboxStatus.SENT)
    _queue(session, status=OutboxStatus.DEAD)
    after = service.summary(session=session, now=now)
    assert {name: after[name] - before[name] for name in after} == {
        "due": 1,
        "waiting": 1,
        "sent": 1,
        "dead": 1,
    }
    assert cli.main(["outbox"]) == 0
    assert "due: " in capsys.readouterr().out


def test_cleanup_deletes_finished_mail_past_the_retention(session: Session) -> None:
    retention = timedelta(days=get_settings().OUTBOX_RETENTION_DAYS)
    old: datetime = utcnow() - retention - timedelta(minutes=1)
    sent_long_ago = _queue(session, status=OutboxStatus.SENT, updated_at=old)
    dead_long_ago = _queue(session, status=OutboxStatus.DEAD, updated_at=old)
    pending_long_ago = _queue(session, updated_at=old)
    sent_lately = _queue(session, status=OutboxStatus.SENT)
    assert "sent and dead mail past the outbox retention" in cli.CLEANUP_TASKS
    service.delete_finished(session=session, now=utcnow(), limit=1000)
    session.commit()
    session.expire_all()
    left = set(session.exec(select(OutboxMessage.id)).all())
    assert {sent_long_ago.id, dead_long_ago.id} & left == set()
    assert {pending_long_ago.id, sent_lately.id} <= left


def test_sends_are_paced_at_the_configured_rate(session: Session) -> None:
    for _ in range(5):
        _queue(session)
    transport = Scripted()
    worker = OutboxWorker(_settings(OUTBOX_SEND_RATE=20), transport_factory=transport)
    started = time.monotonic()
    assert drain(worker).sent >= 5
    assert time.monotonic() - started >= 4 / 20  # five sends: four waits of 1/20 s
    assert len(transport.sent) >= 5


def test_a_short_lease_hands_back_what_it_cannot_send_in_time(session: Session) -> None:
    for _ in range(3):
        _queue(session)
    # Two messages' worth of lease: the third is handed back, uncounted, for the next pass.
    settings = _settings(OUTBOX_SEND_RATE=1, SMTP_TIMEOUT_SECONDS=0.001, OUTBOX_BATCH_SIZE=3)
    settings = settings.model_copy(
        update={"OUTBOX_LEASE_SECONDS": settings.outbox_send_budget_seconds * 2.5}
    )
    transport = Scripted()
    result = OutboxWorker(settings, transport_factory=transport).run_once()
    assert (result.claimed, result.sent, result.released) == (3, 2, 1)


@pytest.mark.parametrize(
    "address",
    [
        "x/y@example.com",
        "a" * 64 + "@" + ".".join(["b" * 60, "c" * 60, "d" * 56, "com"]),  # 247 characters
    ],
)
def test_file_delivery_names_files_by_message_id_whatever_the_address(
    client: TestClient, session: Session, tmp_path: Path, address: str
) -> None:
    if len(address) > 20:
        assert len(address) == 247
    response = client.post(
        "/auth/register",
        json={"email": address, "password": support.PASSWORD, "full_name": "Odd"},
    )
    assert response.status_code == 202, response.text
    message = session.exec(select(OutboxMessage).where(OutboxMessage.recipient == address)).one()
    settings = _settings(EMAIL_DELIVERY=EmailDelivery.FILE, EMAIL_OUTBOX_DIR=str(tmp_path))
    assert drain(OutboxWorker(settings)).sent == 1
    [written] = list(tmp_path.iterdir())
    assert written.name == f"{message.id}.eml"
    parsed = email.message_from_bytes(written.read_bytes(), policy=email.policy.default)
    assert parsed["To"] == address
    assert "token: " in support.text_of(parsed)  # type: ignore[arg-type]


def test_file_delivery_that_cannot_write_is_an_outage(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    transport = FileTransport(blocker / "outbox")
    with pytest.raises(TransportUnavailable):
        transport.send(uuid.uuid4(), email.message.EmailMessage())


def test_a_message_the_email_package_refuses_is_a_dead_letter(session: Session) -> None:
    broken = _queue(session, subject="Line one\nBcc: everyone@example.com")
    fine = _queue(session)
    transport = Scripted()
    result = OutboxWorker(transport_factory=transport).run_once()
    assert (result.dead, result.sent) == (1, 1)
    assert _reload(session, broken).status == OutboxStatus.DEAD
    assert "cannot build the message" in (_reload(session, broken).last_error or "")
    assert transport.sent == [fine.id]


def test_an_unexpected_error_does_not_stop_the_worker(
    session: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    worker = OutboxWorker(_settings(OUTBOX_POLL_SECONDS=0.01))
    passes = []

    def failing_pass(**_: Any) -> Any:
        passes.append(1)
        if len(passes) == 3:
            worker.stop.set()
        raise RuntimeError("a bug")

    monkeypatch.setattr(worker, "run_once", failing_pass)
    worker.run()  # returns once stopped, after three failed passes
    assert len(passes) == 3
