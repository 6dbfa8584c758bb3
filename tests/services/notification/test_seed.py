"""The shipped templates (the return mails' too) and the welcome journey are valid and
render."""

from __future__ import annotations

from datetime import timedelta

from services.notification.domain import journeys as jd
from services.notification.domain import templates as td
from services.notification.seed import default_templates, welcome_journey
from services.notification.seed_returns import return_templates


def shipped() -> list[td.Template]:
    return [*default_templates(), *return_templates()]


def test_every_default_template_renders_its_sample() -> None:
    for template in shipped():
        td.validate(template)
        data = {"name": "", "shop_url": "https://shop.example", **template.sample_data}
        rendered = td.render(template, data)
        assert rendered.text_body.strip(), template.key
        assert "{" not in rendered.text_body, template.key


def test_both_languages_of_every_key() -> None:
    keys = {(t.key, t.channel) for t in shipped()}
    languages = {(t.key, t.channel, t.language) for t in shipped()}
    missing = [k for k in keys if (*k, "ja") not in languages]
    assert missing == []
    # The return mails exist in both languages: she reads hers in her own.
    assert {(t.key, t.language) for t in return_templates()} == {
        (key, language)
        for key in ("return_authorized", "return_authorization_cancelled")
        for language in ("ja", "en")
    }


def test_welcome_journey_is_valid() -> None:
    journey = jd.validate(welcome_journey(timedelta(hours=24)))
    assert [s.id for s in journey.steps] == [
        "welcome-mail",
        "wait-for-open",
        "opened?",
        "reminder-sms",
    ]


def test_with_a_welcome_promotion_the_journey_issues_a_code_before_the_mail() -> None:
    promotion = "922a32f4-ce5a-5444-ae7a-c2ed6ceb00d6"
    journey = jd.validate(welcome_journey(timedelta(hours=24), promotion, timedelta(days=7)))
    assert [s.id for s in journey.steps][:2] == ["welcome-code", "welcome-mail"]
    assert journey.steps[0].action == jd.IssueCode(promotion, timedelta(days=7))


def test_the_welcome_reminder_fits_one_segment_and_never_carries_the_code() -> None:
    code = {"code": "ABCD2345EFGH", "code_expire_time": "2026-12-30T10:00:00+00:00"}
    for template in default_templates():
        if template.key != "welcome_reminder":
            continue
        for data in ({}, code):
            rendered = td.render(template, data)
            assert rendered.segments == 1, (template.language, rendered.text_body)
            assert "ABCD2345EFGH" not in rendered.text_body
        # With a code issued, it says a code waits in the mail; without, it claims none.
        with_code, without = td.render(template, code), td.render(template, {})
        assert ("クーポンコード" in with_code.text_body) or ("code" in with_code.text_body)
        assert "クーポン" not in without.text_body and "code" not in without.text_body
