"""The outbox against a real SMTP server (aiosmtpd on 127.0.0.1), with committed data: mail
arrives with its links, an outage fails no request and loses no mail, two workers never send
one message twice, and a refused message ends as a dead letter."""

import threading
import time
import uuid
from collections import Counter
from typing import Any

from fastapi.testclient import TestClient
from sqlmodel import Session, select

from app.core.config import get_settings
from app.core.db import get_engine
from app.main import create_app
from app.outbox.models import OutboxMessage, OutboxStatus
from app.outbox.worker import OutboxWorker, drain
from app.users.models import User
from tests import factories, support
from tests.outbox.support import SmtpServer, WorkerThreads, wait_until


def _register(client: TestClient, address: str) -> Any:
    return client.post(
        "/auth/register",
        json={"email": address, "password": support.PASSWORD, "full_name": "Sam"},
    )


def _owner_and_trip(client: TestClient, domain: str) -> tuple[User, str]:
    with Session(get_engine(), expire_on_commit=False) as session:
        owner = factories.make_user(session, email=f"owner@{domain}", full_name="Olive")
    return owner, factories.create_trip(client, owner, name="Lisbon")["id"]


def _messages(domain: str) -> list[OutboxMessage]:
    with Session(get_engine()) as session:
        return list(
            session.exec(
                select(OutboxMessage).where(OutboxMessage.recipient.endswith(f"@{domain}"))  # type: ignore[attr-defined]
            ).all()
        )


def test_mail_arrives_with_its_links(committed_smtp: tuple[SmtpServer, str]) -> None:
    smtp, domain = committed_smtp
    client = TestClient(create_app())
    owner, trip_id = _owner_and_trip(client, domain)
    assert _register(client, f"new@{domain}").status_code == 202
    invited = client.post(
        f"/trips/{trip_id}/invitations",
        headers=support.auth(owner),
        json={"email": f"friend@{domain}", "role": "editor"},
    )
    assert invited.status_code == 201, invited.text
    assert smtp.received == []  # nothing is sent inside a request

    result = drain(OutboxWorker())
    assert (result.sent, result.retried, result.dead) == (2, 0, 0)

    public_url = str(get_settings().PUBLIC_URL)
    [verification] = smtp.to(f"new@{domain}")
    token = next(
        line[len("token: ") :]
        for line in support.text_of(verification).splitlines()
        if line.startswith("token: ")
    )
    assert f"{public_url}#/verify-email/{token}" in support.text_of(verification)
    assert client.post("/auth/verify-email", json={"token": token}).status_code == 200

    [invitation] = smtp.to(f"friend@{domain}")
    link = f"{public_url}#/invitations/{invited.json()['id']}"
    assert link in support.text_of(invitation)
    html = invitation.get_body(("html",))
    assert html is not None
    assert f'href="{link}"' in html.get_content()  # type: ignore[attr-defined]
    assert invitation["Subject"] == "Olive invites you to Lisbon on TripSync"
    assert invitation["Message-ID"].endswith("@tripsync.invalid>")
    assert [m.status for m in _messages(domain)] == [OutboxStatus.SENT] * 2


def test_a_password_reset_mail_arrives_with_a_working_link(
    committed_smtp: tuple[SmtpServer, str],
) -> None:
    smtp, domain = committed_smtp
    client = TestClient(create_app())
    with Session(get_engine(), expire_on_commit=False) as session:
        user = factories.make_user(session, email=f"forgetful@{domain}", full_name="Fay")
    unknown = f"nobody@{domain}"
    for address in (user.email, unknown):
        asked = client.post("/auth/password-reset", json={"email": address})
        assert asked.status_code == 202, asked.text
    assert smtp.received == []  # nothing is sent inside a request

    assert drain(OutboxWorker()).sent == 1  # none for the address without an account
    [mail] = smtp.to(user.email)
    assert mail["Subject"] == "Reset your TripSync password"
    prefix = f"{get_settings().PUBLIC_URL}#/reset-password/"
    link = next(line for line in support.text_of(mail).splitlines() if line.startswith(prefix))
    html = mail.get_body(("html",))
    assert html is not None
    assert f'href="{link}"' in html.get_content()  # type: ignore[attr-defined]

    token = link.removeprefix(prefix)
    body = {"token": token, "new_password": "a new passphrase"}
    assert client.post("/auth/password-reset/confirm", json=body).status_code == 204
    login = {"username": user.email, "password": "a new passphrase"}
    assert client.post("/auth/login", data=login).status_code == 200
    assert drain(OutboxWorker()).sent == 1
    assert [m["Subject"] for m in smtp.to(user.email)] == [
        "Reset your TripSync password",
        "Your TripSync password was changed",
    ]
    assert smtp.to(unknown) == []


def test_an_smtp_outage_fails_no_request_and_loses_no_mail(
    committed_smtp: tuple[SmtpServer, str], worker_threads: WorkerThreads
) -> None:
    smtp, domain = committed_smtp
    client = TestClient(create_app(), raise_server_exceptions=False)
    owner, trip_id = _owner_and_trip(client, domain)
    smtp.stop()
    outage_started = time.monotonic()
    worker_threads.start()

    # During the outage: registrations (new and taken addresses) and invitations.
    statuses: list[int] = []
    slowest = 0.0
    for n in range(10):
        started = time.monotonic()
        statuses.append(_register(client, f"user{n}@{domain}").status_code)
        slowest = max(slowest, time.monotonic() - started)
    statuses.append(_register(client, f"owner@{domain}").status_code)  # taken: a notice
    for n in range(5):
        started = time.monotonic()
        response = client.post(
            f"/trips/{trip_id}/invitations",
            headers=support.auth(owner),
            json={"email": f"guest{n}@{domain}", "role": "viewer"},
        )
        statuses.append(response.status_code)
        slowest = max(slowest, time.monotonic() - started)
    failures = sum(1 for status in statuses if not 200 <= status < 300)
    assert failures == 0, statuses

    time.sleep(1.5)  # the worker keeps probing the dead server meanwhile
    messages = _messages(domain)
    assert len(messages) == 16
    # An outage is nobody's fault: no attempt was counted, nothing is dead.
    assert {(m.status, m.attempts) for m in messages} == {(OutboxStatus.PENDING, 0)}

    smtp.start()
    outage = time.monotonic() - outage_started
    recovered = smtp.wait_for(lambda: len([m for m in smtp.received if domain in m["To"]]), 16)
    # The worker records the last send just after the server accepted it.
    wait_until(lambda: {m.status for m in _messages(domain)} == {OutboxStatus.SENT})
    assert len(smtp.to(f"owner@{domain}")) == 1
    print(
        f"\nSMTP outage of {outage:.1f} s: {len(statuses)} requests during it, {failures} failed, "
        f"slowest {slowest * 1000:.0f} ms; all 16 messages delivered {recovered:.2f} s after "
        f"the SMTP server came back (OUTBOX_OUTAGE_MAX_WAIT_SECONDS="
        f"{get_settings().OUTBOX_OUTAGE_MAX_WAIT_SECONDS:g})"
    )


def test_two_workers_never_send_a_message_twice(
    committed_smtp: tuple[SmtpServer, str],
    worker_threads: WorkerThreads,
    environment: Any,
) -> None:
    smtp, domain = committed_smtp
    environment(OUTBOX_BATCH_SIZE="3")
    total = 60
    with Session(get_engine()) as session:
        for n in range(total):
            session.add(
                OutboxMessage(
                    kind="test",
                    recipient=f"r{n}@{domain}",
                    subject=f"Message {n}",
                    text_body=f"Body {n}",
                    html_body=f"<p>Body {n}</p>",
                )
            )
        session.commit()

    sent_by: Counter[str] = Counter()
    lock = threading.Lock()

    def counting(name: str) -> Any:
        from app.outbox.delivery import open_transport

        def factory(settings: Any) -> Any:
            transport = open_transport(settings)
            send = transport.send

            def send_and_count(message_id: uuid.UUID, message: Any) -> None:
                send(message_id, message)
                with lock:
                    sent_by[name] += 1

            transport.send = send_and_count  # type: ignore[method-assign]
            return transport

        return factory

    worker_threads.start(transport_factory=counting("a"))
    worker_threads.start(transport_factory=counting("b"))
    smtp.wait_for(lambda: len([m for m in smtp.received if domain in m["To"]]), total)
    time.sleep(0.3)  # a second copy would arrive now

    ids = Counter(m["Message-ID"] for m in smtp.received if domain in m["To"])
    assert len(ids) == total
    assert set(ids.values()) == {1}, [i for i, n in ids.items() if n > 1]
    assert sum(sent_by.values()) == total
    wait_until(lambda: {m.status for m in _messages(domain)} == {OutboxStatus.SENT})
    print(f"\ntwo workers sent {dict(sent_by)} of {total} messages, each once")


def test_a_refused_message_is_retried_then_dead(
    committed_smtp: tuple[SmtpServer, str], environment: Any
) -> None:
    smtp, domain = committed_smtp
    environment(OUTBOX_MAX_ATTEMPTS="3", OUTBOX_RETRY_BASE_SECONDS="0.05")
    smtp.refusals[f"busy@{domain}"] = "451 4.3.0 try again later"
    smtp.refusals[f"nobody@{domain}"] = "550 5.1.1 no such mailbox"
    for address in ("busy", "nobody", "fine"):
        assert _register(TestClient(create_app()), f"{address}@{domain}").status_code == 202

    worker = OutboxWorker()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        worker.run_once()
        by_address = {m.recipient: m for m in _messages(domain)}
        if by_address[f"busy@{domain}"].status == OutboxStatus.DEAD:
            break
        time.sleep(0.02)

    by_address = {m.recipient: m for m in _messages(domain)}
    busy, nobody, fine = (by_address[f"{a}@{domain}"] for a in ("busy", "nobody", "fine"))
    assert (fine.status, fine.attempts) == (OutboxStatus.SENT, 1)
    # A permanent refusal is a dead letter at once; a temporary one after the last attempt.
    assert (nobody.status, nobody.attempts) == (OutboxStatus.DEAD, 1)
    assert (nobody.last_error or "").startswith("550")
    assert (busy.status, busy.attempts) == (OutboxStatus.DEAD, 3)
    assert (busy.last_error or "").startswith("451")
    assert [m["To"] for m in smtp.received if domain in m["To"]] == [f"fine@{domain}"]
