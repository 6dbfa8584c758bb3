"""E-mail over real SMTP to a local aiosmtpd server: multipart, Japanese, one-click
unsubscribe headers, and failures mapped to retry or give up."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from services.notification.providers.ports import OutgoingEmail, ProviderUnavailable
from services.notification.providers.smtp import SmtpSender
from tenpo.devtools.mailcatcher import MailCatcher
from tenpo.devtools.stack.net import free_port


@pytest.fixture
def catcher() -> Iterator[MailCatcher]:
    server = MailCatcher(port=free_port())
    server.start()
    try:
        yield server
    finally:
        server.stop()


async def test_japanese_multipart_mail_with_one_click_unsubscribe(catcher: MailCatcher) -> None:
    sender = SmtpSender(host="127.0.0.1", port=catcher.port, sender="Tenpo <shop@tenpo.test>")
    provider_id = await sender.send(
        OutgoingEmail(
            to="hanako@example.jp",
            subject="ご注文ありがとうございます — 山田花子様",
            text="ご注文を承りました。\n合計: ¥12,800",
            html="<p>ご注文を承りました。</p>",
            headers={
                "List-Unsubscribe": "<https://t.example/v1/t/u/abc>",
                "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
            },
        )
    )
    assert provider_id
    [mail] = catcher.to("hanako@example.jp")
    raw_headers = mail.raw.split(b"\r\n\r\n", 1)[0]
    # On the wire every header is 7-bit: the subject is RFC 2047 encoded.
    assert raw_headers.isascii()
    assert b"=?utf-8?" in raw_headers.lower()
    message = mail.parsed()
    assert message["Subject"] == "ご注文ありがとうございます — 山田花子様"
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert message["List-Unsubscribe"] == "<https://t.example/v1/t/u/abc>"
    assert message.get_content_type() == "multipart/alternative"
    text = message.get_body(("plain",))
    html = message.get_body(("html",))
    assert text is not None and html is not None
    # CRLF on the wire (SMTP line endings)
    assert text.get_content().replace("\r\n", "\n").strip() == "ご注文を承りました。\n合計: ¥12,800"
    assert html.get_content().strip() == "<p>ご注文を承りました。</p>"


async def test_no_server_is_retryable() -> None:
    sender = SmtpSender(
        host="127.0.0.1", port=free_port(), sender="shop@tenpo.test", timeout_seconds=2
    )
    with pytest.raises(ProviderUnavailable):
        await sender.send(OutgoingEmail(to="a@example.jp", subject="s", text="t", html=""))
