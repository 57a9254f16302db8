"""Fixtures of the outbox tests: a real SMTP server (aiosmtpd) on 127.0.0.1, and committed
test data for the tests where worker threads and requests use connections of their own."""

import uuid
from collections.abc import Callable, Iterator

import pytest
from sqlalchemy import text

from tests.outbox.support import SmtpServer, WorkerThreads


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    server = SmtpServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def committed_smtp(
    environment: Callable[..., None], smtp_server: SmtpServer
) -> Iterator[tuple[SmtpServer, str]]:
    """The app set to deliver to `smtp_server`, with quick outage retries; requests and workers
    commit for real. Yields the server and a mail domain of this test's own, whose accounts,
    trips and mail are deleted afterwards."""
    environment(
        EMAIL_DELIVERY="smtp",
        SMTP_HOST="127.0.0.1",
        SMTP_PORT=str(smtp_server.port),
        SMTP_STARTTLS="false",
        SMTP_TIMEOUT_SECONDS="2",
        OUTBOX_POLL_SECONDS="0.05",
        OUTBOX_OUTAGE_MAX_WAIT_SECONDS="0.5",
        OUTBOX_SEND_RATE="1000",
        OUTBOX_LEASE_SECONDS="60",
    )
    domain = f"{uuid.uuid4().hex[:12]}.example.com"
    yield smtp_server, domain
    from app.core.db import get_engine

    pattern = f"%@{domain}"
    with get_engine().begin() as connection:
        connection.execute(
            text(
                "DELETE FROM trips WHERE id IN (SELECT trip_id FROM trip_members m "
                "JOIN users u ON u.id = m.user_id WHERE u.email LIKE :p)"
            ),
            {"p": pattern},
        )
        connection.execute(text("DELETE FROM users WHERE email LIKE :p"), {"p": pattern})
        connection.execute(
            text("DELETE FROM outbox_messages WHERE recipient LIKE :p"), {"p": pattern}
        )


@pytest.fixture
def worker_threads() -> Iterator[WorkerThreads]:
    workers = WorkerThreads()
    yield workers
    workers.stop.set()
    for thread in workers.threads:
        thread.join(timeout=10)
        assert not thread.is_alive()
