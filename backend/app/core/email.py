"""Sending email: to an SMTP server in production, to files in development, to memory in tests."""

import logging
import smtplib
from email.message import EmailMessage
from pathlib import Path

from app.core.columns import utcnow
from app.core.config import EmailDelivery, get_settings
from app.core.db import REPO_DIR

logger = logging.getLogger(__name__)

# Messages sent with EMAIL_DELIVERY=memory, newest last (read by the tests).
sent_in_memory: list[EmailMessage] = []


def send_email(*, to: str, subject: str, body: str) -> None:
    settings = get_settings()
    message = EmailMessage()
    message["From"] = settings.EMAIL_FROM
    message["To"] = to
    message["Subject"] = subject
    message.set_content(body)
    if settings.EMAIL_DELIVERY is EmailDelivery.MEMORY:
        sent_in_memory.append(message)
    elif settings.EMAIL_DELIVERY is EmailDelivery.FILE:
        outbox = REPO_DIR / settings.EMAIL_OUTBOX_DIR
        outbox.mkdir(parents=True, exist_ok=True)
        name = f"{utcnow():%Y%m%dT%H%M%S%f}-{to}.eml"
        Path(outbox, name).write_bytes(bytes(message))
        logger.info("email to %s written to %s", to, outbox / name)
    else:
        with smtplib.SMTP(settings.SMTP_HOST, settings.SMTP_PORT, timeout=10) as smtp:
            if settings.SMTP_STARTTLS:
                smtp.starttls()
            if settings.SMTP_USERNAME:
                smtp.login(settings.SMTP_USERNAME, settings.SMTP_PASSWORD.get_secret_value())
            smtp.send_message(message)
