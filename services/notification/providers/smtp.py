"""E-mail over SMTP (aiosmtplib): implicit TLS or STARTTLS, optional auth, multipart
text + HTML, UTF-8 headers and bodies encoded for any mail system (RFC 2047 subjects)."""

from __future__ import annotations

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
    ) -> None:
        self.host = host
        self.port = port
        self.sender = sender
        self.username = username
        self.password = password
        self.use_tls = use_tls
        self.start_tls = start_tls
        self.timeout_seconds = timeout_seconds

    async def send(self, mail: OutgoingEmail) -> str:
        message = build_message(mail, self.sender)
        try:
            await aiosmtplib.send(
                message,
                hostname=self.host,
                port=self.port,
                username=self.username or None,
                password=self.password or None,
                use_tls=self.use_tls,
                start_tls=self.start_tls,
                timeout=self.timeout_seconds,
            )
        except aiosmtplib.SMTPRecipientsRefused as error:
            raise ProviderRejected("recipient refused") from error
        except aiosmtplib.SMTPResponseException as error:
            if 500 <= error.code < 600:
                raise ProviderRejected(f"SMTP {error.code}") from error
            raise ProviderUnavailable(f"SMTP {error.code}") from error
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as error:
            raise ProviderUnavailable(type(error).__name__) from error
        return str(message["Message-ID"] or uuid.uuid4())
