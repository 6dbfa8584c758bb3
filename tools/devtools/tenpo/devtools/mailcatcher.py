"""A real local SMTP server (aiosmtpd) that accepts every mail: the mail catcher of
`make run` and of the tests. Each mail is kept in memory and, with a directory, written
there as an .eml file a mail program opens."""

from __future__ import annotations

import email
import email.policy
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller


@dataclass(frozen=True)
class CaughtMail:
    sender: str
    recipients: tuple[str, ...]
    raw: bytes
    #: time.monotonic() when the server accepted it (benchmarks measure up to here).
    received_at: float = 0.0

    def parsed(self) -> EmailMessage:
        message = email.message_from_bytes(self.raw, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        return message


class _Handler:
    def __init__(self, catcher: MailCatcher) -> None:
        self.catcher = catcher

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.catcher._keep(
            CaughtMail(
                envelope.mail_from,
                tuple(envelope.rcpt_tos),
                bytes(envelope.content),
                time.monotonic(),
            )
        )
        return "250 Message accepted for delivery"


class MailCatcher:
    def __init__(
        self, host: str = "127.0.0.1", port: int = 1025, directory: Path | None = None
    ) -> None:
        self.host = host
        self.port = port
        self.directory = directory
        self.mails: list[CaughtMail] = []
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        self._controller = Controller(_Handler(self), hostname=host, port=port)

    def _keep(self, mail: CaughtMail) -> None:
        with self._arrived:
            self.mails.append(mail)
            count = len(self.mails)
            self._arrived.notify_all()
        if self.directory is not None:
            self.directory.mkdir(parents=True, exist_ok=True)
            stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
            (self.directory / f"{stamp}-{count:05d}.eml").write_bytes(mail.raw)

    def start(self) -> None:
        self._controller.start()

    def stop(self) -> None:
        self._controller.stop()

    def to(self, address: str) -> list[CaughtMail]:
        with self._lock:
            return [m for m in self.mails if address in m.recipients]
