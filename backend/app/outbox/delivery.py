"""Delivery backends: an SMTP server in production, `.eml` files in development, memory in tests.

The worker opens one transport per batch and sends each message through it. A backend tells
three outcomes apart: sent; this message failed (`DeliveryFailed`, for good or for now); and
the server cannot be reached at all (`TransportUnavailable`), in which case nothing was sent
and no message is to blame.
"""

import logging
import os
import smtplib
import ssl
import uuid
from email.message import EmailMessage
from pathlib import Path
from typing import Protocol

from app.core.config import EmailDelivery, Settings
from app.core.db import REPO_DIR

logger = logging.getLogger(__name__)

# Messages delivered with EMAIL_DELIVERY=memory, oldest first (read by the tests).
sent_in_memory: list[EmailMessage] = []


class DeliveryFailed(Exception):
    """This message was not accepted; `permanent` when retrying cannot help (a 5xx answer)."""

    def __init__(self, reason: str, *, permanent: bool = False) -> None:
        super().__init__(reason)
        self.permanent = permanent


class TransportUnavailable(Exception):
    """The server cannot be reached or refuses the connection: nothing was sent."""


class Transport(Protocol):
    def send(self, message_id: uuid.UUID, message: EmailMessage) -> None:
        """Deliver one message, or raise DeliveryFailed or TransportUnavailable."""
        ...

    def close(self) -> None: ...


class MemoryTransport:
    def send(self, message_id: uuid.UUID, message: EmailMessage) -> None:
        sent_in_memory.append(message)

    def close(self) -> None:
        pass


class FileTransport:
    """One `<message id>.eml` file per message: never named after the address, which may hold
    characters a file name cannot (`/`) or be longer than a file name may be."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def send(self, message_id: uuid.UUID, message: EmailMessage) -> None:
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise TransportUnavailable(f"cannot create {self.folder}: {error}") from error
        path = self.folder / f"{message_id}.eml"
        partial = self.folder / f".{message_id}.eml.partial"
        try:
            partial.write_bytes(bytes(message))
            os.replace(partial, path)  # a reader never sees half a message
        except OSError as error:
            raise DeliveryFailed(f"cannot write {path.name}: {error}") from error
        logger.info("mail %s written to %s", message_id, path)

    def close(self) -> None:
        pass


class SmtpTransport:
    """One connection per batch, opened on the first message."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._smtp: smtplib.SMTP | None = None

    def _connect(self) -> smtplib.SMTP:
        settings = self.settings
        try:
            smtp = smtplib.SMTP(
                settings.SMTP_HOST, settings.SMTP_PORT, timeout=settings.SMTP_TIMEOUT_SECONDS
            )
        except OSError as error:  # smtplib's errors are OSErrors too
            raise TransportUnavailable(_describe(error)) from error
        try:
            if settings.SMTP_STARTTLS:
                smtp.starttls(context=ssl.create_default_context())
            if settings.SMTP_USERNAME:
                smtp.login(settings.SMTP_USERNAME, settings.SMTP_PASSWORD.get_secret_value())
        except OSError as error:
            smtp.close()
            raise TransportUnavailable(_describe(error)) from error
        return smtp

    def send(self, message_id: uuid.UUID, message: EmailMessage) -> None:
        if self._smtp is None:
            self._smtp = self._connect()
        try:
            self._smtp.send_message(message)
        except smtplib.SMTPRecipientsRefused as error:
            codes = [code for code, _ in error.recipients.values()]
            raise DeliveryFailed(_describe(error), permanent=min(codes) >= 500) from error
        except smtplib.SMTPNotSupportedError as error:  # e.g. a UTF-8 address, no SMTPUTF8
            raise DeliveryFailed(_describe(error), permanent=True) from error
        except smtplib.SMTPResponseException as error:
            self.close()
            raise DeliveryFailed(_describe(error), permanent=error.smtp_code >= 500) from error
        except OSError as error:  # the connection broke: whether it arrived is unknown
            self.close()
            raise DeliveryFailed(_describe(error)) from error

    def close(self) -> None:
        smtp, self._smtp = self._smtp, None
        if smtp is None:
            return
        try:
            smtp.quit()
        except OSError:
            smtp.close()


def _describe(error: OSError) -> str:
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        answers = [f"{code} {_text(text)}" for code, text in error.recipients.values()]
        return "; ".join(answers)[:400]
    if isinstance(error, smtplib.SMTPResponseException):
        return f"{error.smtp_code} {_text(error.smtp_error)}"[:400]
    return f"{type(error).__name__}: {error}"[:400]


def _text(answer: bytes | str) -> str:
    return answer.decode(errors="replace") if isinstance(answer, bytes) else answer


def open_transport(settings: Settings) -> Transport:
    """The transport EMAIL_DELIVERY names."""
    if settings.EMAIL_DELIVERY == EmailDelivery.MEMORY:
        return MemoryTransport()
    if settings.EMAIL_DELIVERY == EmailDelivery.FILE:
        return FileTransport(REPO_DIR / settings.EMAIL_OUTBOX_DIR)
    return SmtpTransport(settings)
