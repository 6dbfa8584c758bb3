"""Journey definitions beyond steps (pure): a trigger match on the event's fields, recommend
steps, the seeded engagement journeys and templates; and the fields an event gives its
journey (a fulfilment's reference read as its order's, an order's SKUs)."""

from __future__ import annotations

import uuid

import pytest

from services.notification.domain import journeys as jd
from services.notification.domain import templates as td
from services.notification.seed_engagement import engagement_journeys, engagement_templates
from services.notification.subscribers.commerce import event_fields
from tenpo.kit.errors import InvalidArgument
from tenpo.kit.events import Event
from tenpo.order.v1 import events_pb2 as order_events

MAIL = jd.Step("mail", jd.Send("offer", td.Channel.EMAIL))


def journey(*steps: jd.Step, match: dict[str, str] | None = None) -> jd.Journey:
    return jd.Journey("J", "tenpo.customer.v1.SegmentEntered", steps or (MAIL,), (), match or {})


def test_a_trigger_match_compares_the_events_fields() -> None:
    lapsed = journey(match={"segment": "lapsed"})
    assert lapsed.matches({"segment": "lapsed", "customer_id": "c"})
    assert not lapsed.matches({"segment": "loyal"})
    assert not lapsed.matches(None)
    assert journey().matches(None)  # no match: every event of the type
    assert journey(match={"year": "2026"}).matches({"year": 2026})  # compared as text


@pytest.mark.parametrize(
    ("bad", "path"),
    [
        (journey(match={f"k{i}": "v" for i in range(11)}), "journey.trigger_match"),
        (journey(match={"": "v"}), "journey.trigger_match"),
        (
            journey(jd.Step("r", jd.Recommend(jd.Source.COMPLEMENTARY, 11)), MAIL),
            "journey.steps[0].recommend.max_products",
        ),
    ],
)
def test_bad_definitions_name_the_field(bad: jd.Journey, path: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        jd.validate(bad)
    assert caught.value.field_violations[0].field == path


def test_the_seeded_engagement_journeys_and_templates_are_valid() -> None:
    journeys = engagement_journeys(str(uuid.uuid4()), str(uuid.uuid4()))
    for j in journeys:
        jd.validate(j)
    by_name = {j.display_name: j for j in journeys}
    assert by_name["Lapsed six months"].trigger_match == {"segment": "lapsed"}
    birthday_code = by_name["Birthday"].steps[2].action
    assert isinstance(birthday_code, jd.IssueCode) and birthday_code.only_recommended_product
    for template in engagement_templates():
        td.validate(template)
        rendered = td.render(template, template.sample_data)
        assert rendered.text_body  # renders with its sample data
        if template.channel is td.Channel.SMS:
            assert 1 <= rendered.segments <= template.segment_budget


def event_of(message: object) -> Event:
    return Event(
        uuid.uuid4(),
        message.DESCRIPTOR.full_name,  # type: ignore[attr-defined]
        "s",
        message.SerializeToString(),  # type: ignore[attr-defined]
        None,
    )


def test_a_fulfilment_event_reads_as_its_order_and_an_order_gives_its_skus() -> None:
    delivered = order_events.FulfillmentDelivered(
        fulfillment=order_events.FulfillmentRef(order_number="T-1", customer_id="c")
    )
    fields = event_fields(event_of(delivered))
    assert fields is not None
    assert (fields["order_number"], fields["customer_id"]) == ("T-1", "c")
    assert fields["fulfillment_order_number"] == "T-1"
    placed = order_events.OrderPlaced(
        customer_id="c",
        lines=[order_events.OrderEventLine(sku=f"SKU-{i}", quantity=1) for i in range(25)],
    )
    fields = event_fields(event_of(placed))
    assert fields is not None
    assert fields["skus"] == [f"SKU-{i}" for i in range(20)]  # bounded
