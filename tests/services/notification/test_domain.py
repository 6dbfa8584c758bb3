"""Pure rules: SMS segments, template rendering, the sending rules, tracking tokens."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, time
from zoneinfo import ZoneInfo

import pytest

from services.notification.domain import rules, tracking
from services.notification.domain import templates as td
from services.notification.domain.sms import GSM7, UCS2, count_segments
from tenpo.kit.errors import InvalidArgument

TOKYO = ZoneInfo("Asia/Tokyo")


@pytest.mark.parametrize(
    ("text", "encoding", "segments"),
    [
        ("a" * 160, GSM7, 1),
        ("a" * 161, GSM7, 2),
        ("a" * 306, GSM7, 2),
        ("a" * 307, GSM7, 3),
        ("€" * 80, GSM7, 1),  # extension characters take two septets
        ("€" * 81, GSM7, 2),
        ("あ" * 70, UCS2, 1),
        ("あ" * 71, UCS2, 2),
        ("あ" * 134, UCS2, 2),
        ("a" * 159 + "あ", UCS2, 3),  # one Japanese character makes all of it UCS-2
    ],
)
def test_segments(text: str, encoding: str, segments: int) -> None:
    counted = count_segments(text)
    assert (counted.encoding, counted.segments) == (encoding, segments)


def sms(body: str, budget: int = 1) -> td.Template:
    return td.Template(
        "t", td.Channel.SMS, "ja", td.Category.TRANSACTIONAL, text_body=body, segment_budget=budget
    )


def test_japanese_sms_over_one_segment_is_refused() -> None:
    with pytest.raises(InvalidArgument) as raised:
        td.render(sms("{{ x }}"), {"x": "あ" * 71})
    assert raised.value.reason == "OVER_SEGMENT_BUDGET"
    assert td.render(sms("{{ x }}"), {"x": "あ" * 70}).segments == 1


def test_sms_budget_above_ten_is_invalid() -> None:
    with pytest.raises(InvalidArgument) as raised:
        td.validate(sms("x", budget=11))
    assert raised.value.field_violations[0].field == "template.segment_budget"


def mail(html: str, text: str = "hi") -> td.Template:
    return td.Template(
        "t",
        td.Channel.EMAIL,
        "ja",
        td.Category.TRANSACTIONAL,
        subject="s",
        text_body=text,
        html_body=html,
    )


def test_html_is_autoescaped_and_text_is_not() -> None:
    rendered = td.render(mail("<p>{{ n }}</p>", "{{ n }}"), {"n": "<b>&"})
    assert rendered.html_body == "<p>&lt;b&gt;&amp;</p>"
    assert rendered.text_body == "<b>&"


def test_missing_variable_is_refused() -> None:
    with pytest.raises(InvalidArgument) as raised:
        td.render(mail("{{ missing }}"), {})
    assert raised.value.reason == "TEMPLATE_VARIABLE_MISSING"


def test_sandbox_refuses_unsafe_access() -> None:
    with pytest.raises(InvalidArgument) as raised:
        td.render(mail("{{ ''.__class__.__mro__[1].__subclasses__() }}"), {})
    assert raised.value.reason == "TEMPLATE_UNSAFE"


def test_syntax_error_names_the_field() -> None:
    with pytest.raises(InvalidArgument) as raised:
        td.validate(mail("{% if %}"))
    assert raised.value.field_violations[0].field == "template.html_body"


def facts(**overrides: object) -> rules.Facts:
    values: dict[str, object] = {
        "address": "+819012345678",
        "time_zone": TOKYO,
        "consented": True,
        "suppressed": False,
        "suppressed_marketing_only": False,
        "marketing_sent_today": 0,
    }
    return rules.Facts(**(values | overrides))  # type: ignore[arg-type]


def decide(
    channel: td.Channel, category: td.Category, now: datetime, **fact: object
) -> rules.Decision:
    return rules.decide(
        category=category,
        channel=channel,
        cap_policy=td.CapPolicy(fact.pop("cap", td.CapPolicy.SKIP)),  # type: ignore[arg-type]
        facts=facts(**fact),
        now=now,
        quiet_hours=rules.QuietHours(time(21), time(9)),
        daily_cap=2,
    )


NIGHT = datetime(2026, 11, 30, 23, 30, tzinfo=TOKYO).astimezone(UTC)
NOON = datetime(2026, 11, 30, 12, 0, tzinfo=TOKYO).astimezone(UTC)


def test_marketing_sms_in_quiet_hours_is_deferred_to_their_local_end() -> None:
    decision = decide(td.Channel.SMS, td.Category.MARKETING, NIGHT)
    assert decision.outcome is rules.Outcome.DEFER
    assert decision.not_before == datetime(2026, 12, 1, 9, 0, tzinfo=TOKYO)


def test_transactional_sms_and_marketing_mail_ignore_quiet_hours() -> None:
    assert decide(td.Channel.SMS, td.Category.TRANSACTIONAL, NIGHT).outcome is rules.Outcome.SEND
    assert decide(td.Channel.EMAIL, td.Category.MARKETING, NIGHT).outcome is rules.Outcome.SEND


def test_marketing_needs_consent_transactional_does_not() -> None:
    assert (
        decide(td.Channel.EMAIL, td.Category.MARKETING, NOON, consented=False).reason
        == "NO_CONSENT"
    )
    assert (
        decide(td.Channel.EMAIL, td.Category.TRANSACTIONAL, NOON, consented=False).outcome
        is rules.Outcome.SEND
    )


def test_frequency_cap_skips_or_defers_to_the_next_local_day() -> None:
    skipped = decide(td.Channel.EMAIL, td.Category.MARKETING, NOON, marketing_sent_today=2)
    assert (skipped.outcome, skipped.reason) == (rules.Outcome.SKIP, "FREQUENCY_CAPPED")
    deferred = decide(
        td.Channel.EMAIL,
        td.Category.MARKETING,
        NOON,
        marketing_sent_today=2,
        cap=td.CapPolicy.DEFER,
    )
    assert deferred.outcome is rules.Outcome.DEFER
    assert deferred.not_before == datetime(2026, 12, 1, 0, 0, tzinfo=TOKYO)


def test_suppressions() -> None:
    hard = decide(td.Channel.EMAIL, td.Category.TRANSACTIONAL, NOON, suppressed=True)
    assert hard.reason == "SUPPRESSED"
    unsubscribed = decide(
        td.Channel.EMAIL,
        td.Category.TRANSACTIONAL,
        NOON,
        suppressed=True,
        suppressed_marketing_only=True,
    )
    assert unsubscribed.outcome is rules.Outcome.SEND
    assert (
        decide(td.Channel.SMS, td.Category.TRANSACTIONAL, NOON, address="").reason == "UNREACHABLE"
    )


def test_tracking_tokens_are_signed_and_typed() -> None:
    message_id = uuid.uuid4()
    token = tracking.sign(b"k", tracking.CLICK, message_id.bytes, 3)
    assert tracking.verify(b"k", tracking.CLICK, token) == (message_id.bytes, 3)
    assert tracking.verify(b"other", tracking.CLICK, token) is None
    assert tracking.verify(b"k", tracking.OPEN, token) is None
    forged = token[:-2] + ("AA" if token[-2:] != "AA" else "BB")
    assert tracking.verify(b"k", tracking.CLICK, forged) is None
    # Another spelling of the same bytes (unused bits of the last character) is refused.
    last = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".index(token[-1])
    respelled = (
        token[:-1] + "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"[last ^ 1]
    )
    assert tracking.verify(b"k", tracking.CLICK, respelled) is None


def test_links_are_replaced_by_indexes() -> None:
    html, links = tracking.rewrite_links(
        '<a href="https://a.example/x?a=1&amp;b=2">a</a><a href="mailto:x">m</a>',
        lambda i: f"https://t/{i}",
    )
    assert links == ["https://a.example/x?a=1&b=2"]
    assert html == '<a href="https://t/0">a</a><a href="mailto:x">m</a>'
