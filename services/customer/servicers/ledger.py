"""What the ledgers' retryable RPCs (EarnPoints, ReservePoints, TopUpStoreCard,
ReserveStoreCardPayment) carry alike, read from their requests."""

from __future__ import annotations

from typing import Any

from services.customer import convert
from services.customer.usecases.ledger import ChangeRequest
from tenpo.common.v1 import common_pb2


def change_request(request: Any) -> ChangeRequest:
    """``request`` has ``reference``, ``channel``, ``store_id`` and ``request_id``."""
    return ChangeRequest(
        reference=request.reference,
        channel=convert.optional_enum(common_pb2.Channel, request.channel, "channel") or 0,
        store_id=request.store_id,
        request_id=request.request_id,
        request=request,
    )
