"""Templates: per channel and language, versioned, rendered in Jinja2's sandbox with strict
undefined variables and HTML autoescaping; SMS renderings within their segment budget."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from enum import IntEnum
from typing import Any

import jinja2
from jinja2.sandbox import SandboxedEnvironment, SecurityError

from services.notification.domain.sms import MAX_SEGMENTS, count_segments
from tenpo.kit.errors import FieldViolation, InvalidArgument


class Channel(IntEnum):
    """Mirrors tenpo.notification.v1.MessageChannel."""

    EMAIL = 1
    SMS = 2
    PUSH = 3


class Category(IntEnum):
    """Mirrors tenpo.notification.v1.MessageCategory."""

    TRANSACTIONAL = 1
    MARKETING = 2


class CapPolicy(IntEnum):
    """Mirrors tenpo.notification.v1.CapPolicy."""

    SKIP = 1
    DEFER = 2


LANGUAGES = ("ja", "en")
_KEY = re.compile(r"^[a-z][a-z0-9_.-]{0,62}$")
MAX_SUBJECT = 500
MAX_BODY = 100_000
MAX_SMS_SOURCE = 2_000


@dataclass(frozen=True)
class Template:
    key: str
    channel: Channel
    language: str
    category: Category
    subject: str = ""
    text_body: str = ""
    html_body: str = ""
    segment_budget: int = 0
    cap_policy: CapPolicy = CapPolicy.SKIP
    sample_data: dict[str, Any] = field(default_factory=dict)
    id: uuid.UUID = field(default_factory=uuid.uuid4)
    version: int = 1
    created_at: datetime | None = None
    updated_at: datetime | None = None


@dataclass(frozen=True)
class Rendered:
    subject: str
    text_body: str
    html_body: str
    sms_encoding: str = ""
    segments: int = 0


def _invalid(
    field_path: str, description: str, reason: str = "TEMPLATE_INVALID"
) -> InvalidArgument:
    return InvalidArgument(
        f"{field_path}: {description}",
        reason=reason,
        field_violations=[FieldViolation(field_path, description)],
    )


def language_of(locale: str) -> str:
    """The template language for a BCP-47 locale: Japanese unless it asks for English."""
    return "en" if locale.lower().startswith("en") else "ja"


def validate(template: Template) -> Template:
    """The template if it is well formed and every part compiles; InvalidArgument naming
    the field otherwise."""
    if not _KEY.match(template.key):
        raise _invalid("template.key", "lowercase letters, digits, '_', '.', '-' (1-63)")
    if template.language not in LANGUAGES:
        raise _invalid("template.language", f"one of {', '.join(LANGUAGES)}")
    if not template.text_body.strip():
        raise _invalid("template.text_body", "required")
    if len(template.subject) > MAX_SUBJECT:
        raise _invalid("template.subject", f"at most {MAX_SUBJECT} characters")
    if len(template.text_body) > MAX_BODY or len(template.html_body) > MAX_BODY:
        raise _invalid("template.text_body", f"at most {MAX_BODY} characters")
    if template.channel is Channel.SMS:
        if template.subject or template.html_body:
            raise _invalid("template.subject", "an SMS template has only a text body")
        if not 1 <= template.segment_budget <= MAX_SEGMENTS:
            raise _invalid("template.segment_budget", f"1 to {MAX_SEGMENTS} for SMS")
        if len(template.text_body) > MAX_SMS_SOURCE:
            raise _invalid("template.text_body", f"at most {MAX_SMS_SOURCE} characters for SMS")
    else:
        if template.segment_budget:
            raise _invalid("template.segment_budget", "only SMS templates have one")
        if not template.subject.strip():
            raise _invalid("template.subject", "required for e-mail and push")
        if template.channel is Channel.PUSH and template.html_body:
            raise _invalid("template.html_body", "push has no HTML body")
    for path, source, env in _parts(template):
        try:
            env.parse(source)
        except jinja2.TemplateSyntaxError as error:
            raise _invalid(path, f"line {error.lineno}: {error.message}") from None
    return template


# Built on first use, not at import; one each, shared (the environments are thread-safe and
# cache compiled templates).
_ENVIRONMENTS: dict[bool, SandboxedEnvironment] = {}


def _env(html: bool) -> SandboxedEnvironment:
    env = _ENVIRONMENTS.get(html)
    if env is None:
        env = SandboxedEnvironment(
            undefined=jinja2.StrictUndefined, autoescape=html, keep_trailing_newline=False
        )
        _ENVIRONMENTS[html] = env
    return env


def _parts(template: Template) -> list[tuple[str, str, SandboxedEnvironment]]:
    return [
        ("template.subject", template.subject, _env(False)),
        ("template.text_body", template.text_body, _env(False)),
        ("template.html_body", template.html_body, _env(True)),
    ]


def render(template: Template, data: dict[str, Any]) -> Rendered:
    """Render every part. A missing variable, a sandbox violation or an SMS over its
    budget is InvalidArgument with a stable reason."""
    out: list[str] = []
    for path, source, env in _parts(template):
        if not source:
            out.append("")
            continue
        try:
            out.append(env.from_string(source).render(data))
        except jinja2.UndefinedError as error:
            raise _invalid(path, str(error.message), "TEMPLATE_VARIABLE_MISSING") from None
        except SecurityError:
            raise _invalid(path, "the template did something unsafe", "TEMPLATE_UNSAFE") from None
        except jinja2.TemplateError as error:
            raise _invalid(path, str(error.message or error), "TEMPLATE_RENDER_FAILED") from None
    subject, text, html = out
    if template.channel is not Channel.SMS:
        return Rendered(subject.strip(), text, html)
    count = count_segments(text)
    budget = min(template.segment_budget or MAX_SEGMENTS, MAX_SEGMENTS)
    if count.segments > budget:
        raise InvalidArgument(
            f"the SMS takes {count.segments} {count.encoding} segments; the budget is {budget}",
            reason="OVER_SEGMENT_BUDGET",
            metadata={"segments": str(count.segments), "encoding": count.encoding},
            field_violations=[
                FieldViolation("template.text_body", f"{count.segments} segments > budget {budget}")
            ],
        )
    return Rendered("", text, "", count.encoding, count.segments)
