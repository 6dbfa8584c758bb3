"""The shipped templates and the welcome journey are valid and render."""

from __future__ import annotations

from datetime import timedelta

from services.notification.domain import journeys as jd
from services.notification.domain import templates as td
from services.notification.seed import default_templates, welcome_journey


def test_every_default_template_renders_its_sample() -> None:
    for template in default_templates():
        td.validate(template)
        data = {"name": "", "shop_url": "https://shop.example", **template.sample_data}
        rendered = td.render(template, data)
        assert rendered.text_body.strip(), template.key
        assert "{" not in rendered.text_body, template.key


def test_both_languages_of_every_key() -> None:
    keys = {(t.key, t.channel) for t in default_templates()}
    languages = {(t.key, t.channel, t.language) for t in default_templates()}
    missing = [k for k in keys if (*k, "ja") not in languages]
    assert missing == []


def test_welcome_journey_is_valid() -> None:
    journey = jd.validate(welcome_journey(timedelta(hours=24)))
    assert [s.id for s in journey.steps] == [
        "welcome-mail",
        "wait-for-open",
        "opened?",
        "reminder-sms",
    ]
