"""Journeys as data: a trigger event, steps (send, wait, branch) addressed by id, and the
events that end a running journey. Steps go in order unless a branch names another;
"exit" leaves."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import IntEnum

from services.notification.domain.templates import Channel
from tenpo.kit.errors import FieldViolation, InvalidArgument

EXIT = "exit"
MAX_STEPS = 50
MAX_WAIT = timedelta(days=366)


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


@dataclass(frozen=True)
class Step:
    id: str
    action: Send | Wait | Branch


@dataclass(frozen=True)
class Journey:
    display_name: str
    trigger_event: str
    steps: tuple[Step, ...]
    exit_events: tuple[str, ...] = ()
    state: JourneyState = JourneyState.ACTIVE
    id: uuid.UUID = field(default_factory=uuid.uuid4)
    version: int = 1
    created_at: datetime | None = None
    updated_at: datetime | None = None

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
    return journey
