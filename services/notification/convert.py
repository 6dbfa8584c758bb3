"""Proto ⇄ domain translation of the notification service."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from google.protobuf import json_format
from google.protobuf.duration_pb2 import Duration
from google.protobuf.struct_pb2 import Struct

from services.notification.domain import journeys as jd
from services.notification.domain import templates as td
from services.notification.domain.push import PushSubscription
from tenpo.kit import wire
from tenpo.kit.errors import FieldViolation, InvalidArgument
from tenpo.notification.v1 import resources_pb2 as pb


def _enum(value: int, enum: Any, path: str) -> Any:
    try:
        return enum(value)
    except ValueError:
        raise InvalidArgument(
            f"{path} is required",
            reason="FIELD_INVALID",
            field_violations=[FieldViolation(path, f"one of {[e.name for e in enum]}")],
        ) from None


def struct_dict(value: Struct) -> dict[str, Any]:
    return json_format.MessageToDict(value)


def channel(value: int, path: str) -> td.Channel:
    found: td.Channel = _enum(value, td.Channel, path)
    return found


def template_from_pb(t: pb.Template) -> td.Template:
    return td.Template(
        key=t.key,
        channel=channel(t.channel, "template.channel"),
        language=t.language,
        category=_enum(t.category, td.Category, "template.category"),
        subject=t.subject,
        text_body=t.text_body,
        html_body=t.html_body,
        segment_budget=t.segment_budget,
        cap_policy=_enum(t.cap_policy or 1, td.CapPolicy, "template.cap_policy"),
        sample_data=struct_dict(t.sample_data),
    )


def template(t: td.Template) -> pb.Template:
    sample = Struct()
    sample.update(t.sample_data)
    return pb.Template(
        id=str(t.id),
        key=t.key,
        channel=int(t.channel),  # type: ignore[arg-type]
        language=t.language,
        version=t.version,
        category=int(t.category),  # type: ignore[arg-type]
        subject=t.subject,
        text_body=t.text_body,
        html_body=t.html_body,
        segment_budget=t.segment_budget,
        cap_policy=int(t.cap_policy),  # type: ignore[arg-type]
        sample_data=sample,
        create_time=wire.timestamp(t.created_at),
        update_time=wire.timestamp(t.updated_at),
    )


#: The longest wait or code validity a journey step may have.
MAX_STEP_DURATION = timedelta(days=366)


def _duration(d: Duration, path: str) -> Any:
    """A step's wait or validity: a Duration (the kit's check), not negative, at most a year
    (a journey's timers are dates: a longer one would only overflow them)."""
    value = wire.from_duration(d, path)
    if not timedelta(0) <= value <= MAX_STEP_DURATION:
        raise InvalidArgument(
            f"{path} is invalid",
            reason="FIELD_INVALID",
            field_violations=[FieldViolation(path, "between 0 and 366 days")],
        )
    return value


def journey_from_pb(j: pb.Journey) -> jd.Journey:
    steps: list[jd.Step] = []
    for i, s in enumerate(j.steps):
        path = f"journey.steps[{i}]"
        kind = s.WhichOneof("kind")
        action: jd.Action
        if kind == "send":
            action = jd.Send(
                s.send.template_key,
                channel(s.send.channel, f"{path}.send.channel"),
                s.send.on_unreachable == pb.UNREACHABLE_POLICY_EXIT,
            )
        elif kind == "wait":
            action = jd.Wait(
                _duration(s.wait.duration, f"{path}.wait.duration"),
                _enum(s.wait.until, jd.Condition, f"{path}.wait.until"),
            )
        elif kind == "branch":
            action = jd.Branch(
                _enum(s.branch.condition, jd.Condition, f"{path}.branch.condition"),
                s.branch.if_true,
                s.branch.if_false,
                td.Channel(s.branch.channel) if s.branch.channel in (1, 2, 3) else None,
                s.branch.segment,
            )
        elif kind == "issue_code":
            action = jd.IssueCode(
                s.issue_code.promotion_id,
                _duration(s.issue_code.valid_for, f"{path}.issue_code.valid_for")
                if s.issue_code.HasField("valid_for")
                else jd.DEFAULT_CODE_VALIDITY,
                s.issue_code.only_recommended_product,
            )
        elif kind == "split":
            action = jd.Split(
                tuple(jd.Variant(v.name, v.weight, v.next_step) for v in s.split.variants),
                _winner_rule(s.split.winner_rule, f"{path}.split.winner_rule")
                if s.split.HasField("winner_rule")
                else None,
            )
        elif kind == "recommend":
            action = jd.Recommend(
                _enum(s.recommend.source, jd.Source, f"{path}.recommend.source"),
                s.recommend.max_products or jd.DEFAULT_RECOMMENDATIONS,
            )
        else:
            kinds = "send, wait, branch, issue_code, split or recommend"
            raise InvalidArgument(
                f"a step needs {kinds}",
                reason="JOURNEY_INVALID",
                field_violations=[FieldViolation(path, kinds)],
            )
        steps.append(jd.Step(s.id, action))
    return jd.Journey(
        display_name=j.display_name,
        trigger_event=j.trigger_event,
        steps=tuple(steps),
        exit_events=tuple(j.exit_events),
        trigger_match=dict(j.trigger_match),
    )


def _winner_rule(rule: pb.SplitWinnerRule, path: str) -> jd.WinnerRule:
    return jd.WinnerRule(
        _enum(rule.metric, jd.Condition, f"{path}.metric"),
        rule.min_sample_per_variant,
        rule.confidence or 0.95,
    )


def journey(j: jd.Journey) -> pb.Journey:
    out = pb.Journey(
        id=str(j.id),
        display_name=j.display_name,
        trigger_event=j.trigger_event,
        exit_events=list(j.exit_events),
        state=int(j.state),  # type: ignore[arg-type]
        version=j.version,
        create_time=wire.timestamp(j.created_at),
        update_time=wire.timestamp(j.updated_at),
        trigger_match=j.trigger_match,
    )
    for d in j.decisions:
        out.split_decisions.add(
            step_id=d.step_id,
            winner=d.winner,
            metric=int(d.metric),
            results=[
                pb.SplitVariantResult(name=n, sent=sent, converted=converted)
                for n, sent, converted in d.results
            ],
            z_score=d.z_score,
            decide_time=wire.timestamp(d.decided_at),
        )
    for s in j.steps:
        step = out.steps.add(id=s.id)
        a = s.action
        if isinstance(a, jd.Send):
            step.send.template_key = a.template_key
            step.send.channel = int(a.channel)  # type: ignore[assignment]
            step.send.on_unreachable = (
                pb.UNREACHABLE_POLICY_EXIT if a.exit_if_unreachable else pb.UNREACHABLE_POLICY_SKIP
            )
        elif isinstance(a, jd.Wait):
            step.wait.duration.FromTimedelta(a.duration)
            step.wait.until = int(a.until)  # type: ignore[assignment]
        elif isinstance(a, jd.IssueCode):
            step.issue_code.promotion_id = a.promotion_id
            step.issue_code.valid_for.FromTimedelta(a.valid_for)
            step.issue_code.only_recommended_product = a.only_recommended_product
        elif isinstance(a, jd.Recommend):
            step.recommend.source = int(a.source)  # type: ignore[assignment]
            step.recommend.max_products = a.max_products
        elif isinstance(a, jd.Split):
            for v in a.variants:
                step.split.variants.add(name=v.name, weight=v.weight, next_step=v.next_step)
            if a.winner_rule is not None:
                step.split.winner_rule.metric = int(a.winner_rule.metric)  # type: ignore[assignment]
                step.split.winner_rule.min_sample_per_variant = a.winner_rule.min_sample
                step.split.winner_rule.confidence = a.winner_rule.confidence
        else:
            step.branch.condition = int(a.condition)  # type: ignore[assignment]
            step.branch.if_true = a.if_true
            step.branch.if_false = a.if_false
            step.branch.channel = int(a.channel) if a.channel else 0  # type: ignore[assignment]
            step.branch.segment = a.segment
    return out


def suppression(row: Any) -> pb.Suppression:
    return pb.Suppression(
        channel=row.channel,
        address=row.address,
        reason=row.reason,
        marketing_only=row.marketing_only,
        create_time=wire.timestamp(row.created_at),
    )


def message(row: Any) -> pb.Message:
    return pb.Message(
        id=str(row.id),
        customer_id=str(row.customer_id or ""),
        template_key=row.template_key,
        template_version=row.template_version,
        channel=row.channel,
        category=row.category,
        status=row.status,
        status_reason=row.status_reason,
        to_address=row.to_address,
        subject=row.subject,
        text_body=row.text_body,
        html_body=row.html_body,
        segments=row.segments,
        create_time=wire.timestamp(row.created_at),
        scheduled_time=wire.timestamp(row.scheduled_at),
        send_time=wire.timestamp(row.sent_at),
        open_time=wire.timestamp(row.opened_at),
        click_time=wire.timestamp(row.clicked_at),
        journey_id=str(row.journey_id or ""),
        delivery_status=row.delivery_status,
    )


def push_subscription(s: PushSubscription) -> pb.PushSubscription:
    return pb.PushSubscription(
        id=str(s.id or ""),
        endpoint=s.endpoint,
        p256dh=s.p256dh,
        auth=s.auth,
        device_label=s.device_label,
        create_time=wire.timestamp(s.created_at),
    )
