"""E-mail over SMTP (aiosmtplib): implicit TLS or STARTTLS, optional auth, multipart
text + HTML, UTF-8 headers and bodies encoded for any mail system (RFC 2047 subjects)."""

from __future__ import annotations

import asyncio
import contextlib
import email.policy
import uuid
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

import aiosmtplib

from services.notification.providers.ports import (
    OutgoingEmail,
    ProviderRejected,
    ProviderUnavailable,
)


def build_message(mail: OutgoingEmail, sender: str) -> EmailMessage:
    message = EmailMessage(policy=email.policy.SMTP)
    message["From"] = sender
    message["To"] = mail.to
    message["Subject"] = mail.subject  # encoded as RFC 2047 by the policy when not ASCII
    message["Date"] = formatdate(localtime=False)
    message["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2].strip(">") or None)
    for name, value in mail.headers.items():
        message[name] = value
    message.set_content(mail.text, charset="utf-8")
    if mail.html:
        message.add_alternative(mail.html, subtype="html", charset="utf-8")
    return message


class SmtpSender:
    """Sends over a few kept-open SMTP connections (a relay prefers reuse to a new TLS
    handshake per mail); a connection the server closed is opened again."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        sender: str,
        username: str = "",
        password: str = "",
        use_tls: bool = False,
        start_tls: bool | None = None,
        timeout_seconds: float = 10.0,
        connections: int = 4,
    ) -> None:
        self.host = host
        self.port = port
        self.sender = sender
        self.username = username
        self.password = password
        self.use_tls = use_tls
        self.start_tls = start_tls
        self.timeout_seconds = timeout_seconds
        self._idle: list[aiosmtplib.SMTP] = []
        self._slots = asyncio.Semaphore(connections)

    def _client(self) -> aiosmtplib.SMTP:
        return aiosmtplib.SMTP(
            hostname=self.host,
            port=self.port,
            username=self.username or None,
            password=self.password or None,
            use_tls=self.use_tls,
            start_tls=self.start_tls,
            timeout=self.timeout_seconds,
        )

    async def send(self, mail: OutgoingEmail) -> str:
        message = build_message(mail, self.sender)
        async with self._slots:
            client = self._idle.pop() if self._idle else self._client()
            try:
                async with asyncio.timeout(self.timeout_seconds * 2):
                    await self._send_on(client, message)
            except aiosmtplib.SMTPRecipientsRefused as error:
                self._idle.append(client)
                raise ProviderRejected("recipient refused") from error
            except aiosmtplib.SMTPResponseException as error:
                await _close(client)
                if 500 <= error.code < 600:
                    raise ProviderRejected(f"SMTP {error.code}") from error
                raise ProviderUnavailable(f"SMTP {error.code}") from error
            except (aiosmtplib.SMTPException, OSError, TimeoutError) as error:
                await _close(client)
                raise ProviderUnavailable(type(error).__name__) from error
            self._idle.append(client)
        return str(message["Message-ID"] or uuid.uuid4())

    async def _send_on(self, client: aiosmtplib.SMTP, message: EmailMessage) -> None:
        if client.is_connected:
            try:
                await client.send_message(message)
                return
            except aiosmtplib.SMTPServerDisconnected:
                pass  # closed by the server while idle: open it again, once
        if client.is_connected:
            await _close(client)
        await client.connect()
        await client.send_message(message)

    async def close(self) -> None:
        while self._idle:
            await _close(self._idle.pop())


async def _close(client: aiosmtplib.SMTP) -> None:
    with contextlib.suppress(Exception):
        if client.is_connected:
            await client.quit()
    with contextlib.suppress(Exception):
        client.close()
