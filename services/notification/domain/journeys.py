"""Journeys as data: a trigger event, steps (send, wait, branch, issue code, A/B split)
addressed by id, and the events that end a running journey. Steps go in order unless a
branch or a split names another; "exit" leaves."""

from __future__ import annotations

import hashlib
import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import IntEnum, StrEnum

from services.notification.domain.templates import Channel
from tenpo.kit.errors import FieldViolation, InvalidArgument

EXIT = "exit"
MAX_STEPS = 50
MAX_WAIT = timedelta(days=366)
DEFAULT_CODE_VALIDITY = timedelta(hours=48)
MAX_VARIANTS = 10
MIN_SAMPLE = 10
MAX_SAMPLE = 1_000_000
DEFAULT_RECOMMENDATIONS = 3
MAX_RECOMMENDATIONS = 10
MAX_TRIGGER_MATCH = 10
LAPSED_AFTER = timedelta(days=180)
_VARIANT_NAME = re.compile(r"^[a-z0-9_-]{1,30}$")


class JourneyState(IntEnum):
    """Mirrors tenpo.notification.v1.JourneyState."""

    ACTIVE = 1
    PAUSED = 2


class Condition(IntEnum):
    """Mirrors tenpo.notification.v1.JourneyCondition (0: none)."""

    NONE = 0
    LAST_MESSAGE_OPENED = 1
    LAST_MESSAGE_CLICKED = 2
    CONSENTED = 3
    BOUGHT_SINCE_ENTRY = 4
    IN_SEGMENT = 5
    LAST_MESSAGE_SKIPPED = 6


class Source(IntEnum):
    """Mirrors tenpo.notification.v1.RecommendationSource."""

    VIEWED = 1
    COMPLEMENTARY = 2


class Segment(StrEnum):
    """What the order events this service has seen say about a customer."""

    NEVER_BOUGHT = "NEVER_BOUGHT"
    FIRST_TIME = "FIRST_TIME"
    REPEAT = "REPEAT"
    LAPSED = "LAPSED"


def segments_of(orders: int, last_order_at: datetime | None, now: datetime) -> set[Segment]:
    """A customer's segments: by order count, and lapsed when her last order is older than
    180 days (a lapsed customer is also first-time or repeat)."""
    if orders <= 0 or last_order_at is None:
        return {Segment.NEVER_BOUGHT}
    out = {Segment.FIRST_TIME if orders == 1 else Segment.REPEAT}
    if now - last_order_at > LAPSED_AFTER:
        out.add(Segment.LAPSED)
    return out


@dataclass(frozen=True)
class Send:
    template_key: str
    channel: Channel
    exit_if_unreachable: bool = False


@dataclass(frozen=True)
class Wait:
    duration: timedelta
    until: Condition = Condition.NONE


@dataclass(frozen=True)
class Branch:
    condition: Condition
    if_true: str = ""
    if_false: str = ""
    channel: Channel | None = None
    segment: str = ""


@dataclass(frozen=True)
class IssueCode:
    promotion_id: str
    valid_for: timedelta = DEFAULT_CODE_VALIDITY
    #: Only the SKUs of the product a recommend step chose (its ``product_skus``).
    only_recommended_product: bool = False


@dataclass(frozen=True)
class Recommend:
    source: Source
    max_products: int = DEFAULT_RECOMMENDATIONS


@dataclass(frozen=True)
class Variant:
    name: str
    weight: int = 1
    next_step: str = ""


@dataclass(frozen=True)
class WinnerRule:
    """Choose a split's winner once every variant has ``min_sample`` sent messages and the
    best rate beats every other at ``confidence`` (see domain.splits)."""

    metric: Condition = Condition.LAST_MESSAGE_OPENED
    min_sample: int = 100
    confidence: float = 0.95


@dataclass(frozen=True)
class Split:
    variants: tuple[Variant, ...]
    winner_rule: WinnerRule | None = None

    def named(self, name: str) -> Variant | None:
        return next((v for v in self.variants if v.name == name), None)

    def choose(self, journey_id: uuid.UUID, step_id: str, customer_id: uuid.UUID) -> Variant:
        """The same variant for the same recipient every time: a hash of journey, step and
        customer picks a point on the weights' line (no randomness to record or replay)."""
        digest = hashlib.sha256(f"{journey_id}:{step_id}:{customer_id}".encode()).digest()
        point = int.from_bytes(digest[:8], "big") % sum(v.weight for v in self.variants)
        for variant in self.variants:
            if point < variant.weight:
                return variant
            point -= variant.weight
        return self.variants[-1]  # unreachable: the weights add up to the modulus


Action = Send | Wait | Branch | IssueCode | Split | Recommend


@dataclass(frozen=True)
class SplitDecision:
    """A split's winner as recorded: what was compared and what each variant showed."""

    step_id: str
    winner: str
    metric: Condition
    #: (variant, sent, converted) per variant.
    results: tuple[tuple[str, int, int], ...]
    z_score: float
    decided_at: datetime | None = None


@dataclass(frozen=True)
class Step:
    id: str
    action: Action


@dataclass(frozen=True)
class Journey:
    display_name: str
    trigger_event: str
    steps: tuple[Step, ...]
    exit_events: tuple[str, ...] = ()
    #: Field values the trigger event must have ({"segment": "lapsed"}); empty: any.
    trigger_match: dict[str, str] = field(default_factory=dict)
    state: JourneyState = JourneyState.ACTIVE
    id: uuid.UUID = field(default_factory=uuid.uuid4)
    version: int = 1
    created_at: datetime | None = None
    updated_at: datetime | None = None
    #: The winners its splits chose (output only; loaded for the API, not for the runner).
    decisions: tuple[SplitDecision, ...] = ()

    def matches(self, fields: dict[str, object] | None) -> bool:
        """Whether a trigger event with these fields starts the journey."""
        found = fields or {}
        return all(str(found.get(k, "")) == v for k, v in self.trigger_match.items())

    def index_of(self, step_id: str) -> int | None:
        for i, step in enumerate(self.steps):
            if step.id == step_id:
                return i
        return None

    def after(self, step_id: str, target: str = "") -> str:
        """The step that follows ``step_id`` when going to ``target`` ("" = next in order;
        EXIT when there is none)."""
        if target:
            return target
        index = self.index_of(step_id)
        if index is None or index + 1 >= len(self.steps):
            return EXIT
        return self.steps[index + 1].id


def _bad(path: str, description: str) -> InvalidArgument:
    return InvalidArgument(
        f"{path}: {description}",
        reason="JOURNEY_INVALID",
        field_violations=[FieldViolation(path, description)],
    )


def validate(journey: Journey) -> Journey:
    if not journey.display_name.strip() or len(journey.display_name) > 200:
        raise _bad("journey.display_name", "1 to 200 characters")
    if not journey.trigger_event.startswith("tenpo.") or len(journey.trigger_event) > 200:
        raise _bad("journey.trigger_event", "an event's full name, e.g. tenpo.customer.v1.X")
    if len(journey.trigger_match) > MAX_TRIGGER_MATCH or any(
        not k or len(k) > 63 or len(v) > 200 for k, v in journey.trigger_match.items()
    ):
        raise _bad("journey.trigger_match", f"at most {MAX_TRIGGER_MATCH} field names and values")
    if not 1 <= len(journey.steps) <= MAX_STEPS:
        raise _bad("journey.steps", f"1 to {MAX_STEPS} steps")
    ids = [s.id for s in journey.steps]
    for i, step in enumerate(journey.steps):
        path = f"journey.steps[{i}]"
        if not step.id or step.id == EXIT or len(step.id) > 63 or ids.count(step.id) > 1:
            raise _bad(f"{path}.id", "unique, 1-63 characters, not 'exit'")
        action = step.action
        if isinstance(action, Send) and not action.template_key:
            raise _bad(f"{path}.send.template_key", "required")
        if isinstance(action, Wait) and not timedelta(0) < action.duration <= MAX_WAIT:
            raise _bad(f"{path}.wait.duration", "above zero, at most 366 days")
        if isinstance(action, Branch):
            if action.condition is Condition.NONE:
                raise _bad(f"{path}.branch.condition", "required")
            for name, target in (("if_true", action.if_true), ("if_false", action.if_false)):
                if target and target != EXIT and target not in ids:
                    raise _bad(f"{path}.branch.{name}", f"no step {target!r}")
            if action.condition is Condition.CONSENTED and action.channel is None:
                raise _bad(f"{path}.branch.channel", "required for CONSENTED")
            if action.condition is Condition.IN_SEGMENT and action.segment not in set(Segment):
                raise _bad(f"{path}.branch.segment", "one of " + ", ".join(Segment))
        if isinstance(action, IssueCode):
            try:
                uuid.UUID(action.promotion_id)
            except ValueError:
                raise _bad(f"{path}.issue_code.promotion_id", "a promotion's UUID") from None
            if not timedelta(0) < action.valid_for <= MAX_WAIT:
                raise _bad(f"{path}.issue_code.valid_for", "above zero, at most 366 days")
        if isinstance(action, Split):
            _check_split(action, path, ids)
        if isinstance(action, Recommend) and not 1 <= action.max_products <= MAX_RECOMMENDATIONS:
            raise _bad(f"{path}.recommend.max_products", f"1 to {MAX_RECOMMENDATIONS}")
    return journey


def _check_split(split: Split, path: str, ids: list[str]) -> None:
    if not 2 <= len(split.variants) <= MAX_VARIANTS:
        raise _bad(f"{path}.split.variants", f"2 to {MAX_VARIANTS} variants")
    names = [v.name for v in split.variants]
    for j, variant in enumerate(split.variants):
        at = f"{path}.split.variants[{j}]"
        if not _VARIANT_NAME.match(variant.name) or names.count(variant.name) > 1:
            raise _bad(f"{at}.name", "unique, 1-30 of a-z, 0-9, _ and -")
        if not 1 <= variant.weight <= 100:
            raise _bad(f"{at}.weight", "1 to 100")
        if variant.next_step and variant.next_step != EXIT and variant.next_step not in ids:
            raise _bad(f"{at}.next_step", f"no step {variant.next_step!r}")
    rule = split.winner_rule
    if rule is not None:
        at = f"{path}.split.winner_rule"
        if rule.metric not in (Condition.LAST_MESSAGE_OPENED, Condition.LAST_MESSAGE_CLICKED):
            raise _bad(f"{at}.metric", "LAST_MESSAGE_OPENED or LAST_MESSAGE_CLICKED")
        if not MIN_SAMPLE <= rule.min_sample <= MAX_SAMPLE:
            raise _bad(f"{at}.min_sample_per_variant", f"{MIN_SAMPLE} to {MAX_SAMPLE}")
        if not 0.5 <= rule.confidence <= 0.999:
            raise _bad(f"{at}.confidence", "0.5 to 0.999")
