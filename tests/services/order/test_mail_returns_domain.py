"""Return authorizations as pure rules (no servers): expiry by time, what a receipt
accepts, where a parcel goes, and open authorizations holding their units."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from services.order.domain.fulfilments import (
    CaptureState,
    FulfillmentLine,
    FulfillmentStatus,
    FulfillmentType,
    Fulfilment,
)
from services.order.domain.mail_returns import (
    ReturnAuthorization,
    ReturnAuthorizationStatus,
    check_reason,
    ship_to,
)
from services.order.domain.returns import returnable
from tenpo.kit.errors import FailedPrecondition, InvalidArgument

NOW = datetime(2026, 11, 30, 12, tzinfo=UTC)


def authorization(*lines: tuple[str, int], **changes: object) -> ReturnAuthorization:
    values: dict[str, object] = {
        "id": uuid.uuid4(),
        "number": "R-000001",
        "order_id": uuid.uuid4(),
        "lines": tuple(FulfillmentLine(sku, n) for sku, n in lines),
        "ship_to": "dc-kanto",
        "status": ReturnAuthorizationStatus.REQUESTED,
        "expires_at": NOW + timedelta(days=14),
        "created_at": NOW,
    }
    return ReturnAuthorization(**(values | changes))  # type: ignore[arg-type]


def fulfilment(location: str, status: FulfillmentStatus, *lines: tuple[str, int]) -> Fulfilment:
    return Fulfilment(
        id=uuid.uuid4(),
        order_id=uuid.uuid4(),
        number="T-000001-1",
        type=FulfillmentType.DELIVERY,
        status=status,
        location_id=location,
        store_id=location,
        lines=tuple(FulfillmentLine(sku, n) for sku, n in lines),
        amount=1000,
        capture_state=CaptureState.CAPTURED,
        due_at=NOW,
    )


def test_a_requested_authorization_expires_by_time_and_then_holds_nothing() -> None:
    value = authorization(("A", 1))
    assert value.status_at(NOW) is ReturnAuthorizationStatus.REQUESTED
    assert value.holds_units(NOW)
    later = NOW + timedelta(days=15)
    assert value.status_at(later) is ReturnAuthorizationStatus.EXPIRED
    assert not value.holds_units(later)
    with pytest.raises(FailedPrecondition) as caught:
        value.receive((), "r", later)
    assert caught.value.reason == "RETURN_AUTHORIZATION_EXPIRED"
    with pytest.raises(FailedPrecondition):
        value.cancel(later)


def test_a_receipt_takes_all_or_fewer_units_once_never_more() -> None:
    value = authorization(("A", 2), ("B", 1))
    received, units = value.receive((), "r1", NOW)
    assert units == value.lines
    assert (received.status, received.receipt_request_id) == (
        ReturnAuthorizationStatus.RECEIVED,
        "r1",
    )
    _, fewer = value.receive((FulfillmentLine("A", 1),), "r1", NOW)
    assert fewer == (FulfillmentLine("A", 1),)
    for wrong in ((FulfillmentLine("A", 3),), (FulfillmentLine("C", 1),)):
        with pytest.raises(InvalidArgument) as refused:
            value.receive(wrong, "r1", NOW)
        assert refused.value.reason == "RETURN_LINES_NOT_AUTHORIZED"
    with pytest.raises(FailedPrecondition) as twice:
        received.receive((), "r2", NOW)
    assert twice.value.reason == "RETURN_ALREADY_RECEIVED"
    cancelled = value.cancel(NOW)
    assert cancelled.cancel(NOW) is cancelled  # cancelling again changes nothing
    with pytest.raises(FailedPrecondition) as gone:
        cancelled.receive((), "r3", NOW)
    assert gone.value.reason == "RETURN_AUTHORIZATION_CANCELLED"


def test_the_parcel_goes_where_most_of_its_units_left_from() -> None:
    shipped = [
        fulfilment("tokyo-shibuya", FulfillmentStatus.DELIVERED, ("A", 1)),
        fulfilment("dc-kanto", FulfillmentStatus.DELIVERED, ("A", 1), ("B", 2)),
        fulfilment("fc-chiba", FulfillmentStatus.PREPARING, ("B", 5)),  # not left: ignored
    ]
    lines = (FulfillmentLine("A", 1), FulfillmentLine("B", 1))
    assert ship_to(shipped, lines) == "dc-kanto"
    tie = [
        fulfilment("tokyo-shibuya", FulfillmentStatus.SHIPPED, ("A", 1)),
        fulfilment("osaka-umeda", FulfillmentStatus.SHIPPED, ("A", 1)),
    ]
    assert ship_to(tie, (FulfillmentLine("A", 1),)) == "osaka-umeda"


def test_open_authorizations_hold_their_units() -> None:
    shipped = [fulfilment("dc-kanto", FulfillmentStatus.DELIVERED, ("A", 3))]
    assert returnable(shipped, [], [(FulfillmentLine("A", 2),)]) == {"A": 1}
    assert returnable(shipped, [], [(FulfillmentLine("A", 3),)]) == {}


def test_a_reason_is_a_code() -> None:
    assert check_reason("") == ""
    assert check_reason("TOO_SMALL") == "TOO_SMALL"
    for bad in ("too small", "X" * 33, "DAMAGED\n"):
        with pytest.raises(InvalidArgument):
            check_reason(bad)
