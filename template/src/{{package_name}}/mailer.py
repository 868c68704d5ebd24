"""Outgoing mail: printed to the log in development, sent over SMTP when `SMTP_HOST` is set."""

from __future__ import annotations

import smtplib
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Protocol

import anyio
import structlog

from .config import Environment, Settings

logger = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Message:
    to: str
    subject: str
    body: str


class Mailer(Protocol):
    async def send(self, message: Message) -> None: ...


class ConsoleMailer:
    """Development backend: the whole message goes to the log, where a developer can copy links."""

    async def send(self, message: Message) -> None:
        logger.info("email", to=message.to, subject=message.subject, body=message.body)


class SmtpMailer:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    def _send_blocking(self, message: Message) -> None:
        settings = self._settings
        email = EmailMessage()
        email["From"] = settings.mail_from
        email["To"] = message.to
        email["Subject"] = message.subject
        email.set_content(message.body)
        assert settings.smtp_host is not None
        with smtplib.SMTP(
            settings.smtp_host, settings.smtp_port, timeout=settings.smtp_timeout_seconds
        ) as client:
            if settings.smtp_starttls:
                client.starttls(context=ssl.create_default_context())
            if settings.smtp_username and settings.smtp_password:
                client.login(settings.smtp_username, settings.smtp_password.get_secret_value())
            client.send_message(email)

    async def send(self, message: Message) -> None:
        try:
            await anyio.to_thread.run_sync(self._send_blocking, message)
        except (OSError, smtplib.SMTPException) as error:
            logger.error("email_failed", to=message.to, error=type(error).__name__)


class UnconfiguredMailer:
    """Production without SMTP: say that mail was dropped, never what it said (it holds tokens)."""

    async def send(self, message: Message) -> None:
        logger.warning("email_not_sent", reason="SMTP_HOST is not set", subject=message.subject)


def create_mailer(settings: Settings) -> Mailer:
    if settings.smtp_host:
        return SmtpMailer(settings)
    if settings.environment is Environment.PRODUCTION:
        return UnconfiguredMailer()
    return ConsoleMailer()
