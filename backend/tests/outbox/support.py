"""The outbox tests' helpers: a real SMTP server (aiosmtpd) on 127.0.0.1 that can be stopped
and started again, and outbox workers running their loop in threads."""

import email
import email.policy
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from devtools.local_postgres import free_port


@dataclass
class SmtpServer:
    """An aiosmtpd server that records what it accepted; it can be stopped and started again
    on the same port, and told to refuse some recipients with a given answer."""

    port: int = field(default_factory=free_port)
    received: list[EmailMessage] = field(default_factory=list)
    refusals: dict[str, str] = field(default_factory=dict)  # address -> "451 try later"
    controller: Controller | None = None

    def start(self) -> None:
        self.controller = Controller(_Recorder(self), hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None

    def to(self, address: str) -> list[EmailMessage]:
        return [message for message in list(self.received) if message["To"] == address]

    def wait_for(self, count: Callable[[], int], expected: int, timeout: float = 30) -> float:
        """Seconds until `count()` reached `expected` (fails after `timeout`)."""
        started = time.monotonic()
        while count() < expected:
            assert time.monotonic() - started < timeout, f"{count()} of {expected} after {timeout}s"
            time.sleep(0.01)
        return time.monotonic() - started


class _Recorder:
    def __init__(self, server: SmtpServer) -> None:
        self.server = server

    async def handle_RCPT(  # noqa: N802 (aiosmtpd's hook names)
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: Any
    ) -> str:
        refusal = self.server.refusals.get(address)
        if refusal is not None:
            return refusal
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(  # noqa: N802
        self, server: SMTP, session: Session, envelope: Envelope
    ) -> str:
        content = envelope.original_content or b""
        message = email.message_from_bytes(content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        self.server.received.append(message)
        return "250 Message accepted for delivery"


@dataclass
class WorkerThreads:
    """Outbox workers running their loop in threads, stopped at the end of the test."""

    stop: threading.Event = field(default_factory=threading.Event)
    threads: list[threading.Thread] = field(default_factory=list)

    def start(self, count: int = 1, **kwargs: Any) -> list[Any]:
        from app.outbox.worker import OutboxWorker

        workers = [OutboxWorker(stop=self.stop, **kwargs) for _ in range(count)]
        for worker in workers:
            thread = threading.Thread(target=worker.run, daemon=True)
            thread.start()
            self.threads.append(thread)
        return workers


def wait_until(condition: Callable[[], bool], timeout: float = 10) -> None:
    """Poll `condition` until it holds (fails after `timeout` seconds)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"still not true after {timeout}s"
        time.sleep(0.01)
