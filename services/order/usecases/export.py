"""Order use cases: what this service holds about a customer, for her GDPR export (her
orders, their fulfilments, returns and return authorizations), credentials left out."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from services.order.models import fulfillments, order_returns, orders, return_authorizations
from tenpo.kit import export
from tenpo.kit.auth import Principal
from tenpo.kit.db import Database

#: Withheld: the card token and what a pickup code is derived from or checked against are
#: credentials; the request fingerprint and the saga's lease say nothing about her.
LEFT_OUT = {
    "orders": ("card_token", "request_key", "request_hash", "lease_owner", "lease_until"),
    "fulfillments": ("pickup_nonce", "pickup_code_digest", "legacy_pickup_code"),
    "order_returns": ("request_key",),
    "return_authorizations": ("request_key", "receipt_request_id"),
}


class CustomerExport:
    def __init__(self, db: Database, clock: Callable[[], datetime] | None = None) -> None:
        self.db = db
        self.clock = clock or (lambda: datetime.now(UTC))

    async def export(self, principal: Principal, customer_ref: str) -> str:
        customer_id = export.export_subject(principal, customer_ref)
        async with self.db.unit_of_work() as uow:
            own = await export.rows(
                uow.session,
                orders,
                orders.c.customer_id == customer_id,
                leave_out=LEFT_OUT["orders"],
            )
            ids = [row["id"] for row in own]
            tables = {
                "orders": own,
                "fulfillments": await export.rows(
                    uow.session,
                    fulfillments,
                    fulfillments.c.order_id.in_(ids),
                    leave_out=LEFT_OUT["fulfillments"],
                ),
                "order_returns": await export.rows(
                    uow.session,
                    order_returns,
                    order_returns.c.order_id.in_(ids),
                    leave_out=LEFT_OUT["order_returns"],
                ),
                "return_authorizations": await export.rows(
                    uow.session,
                    return_authorizations,
                    return_authorizations.c.order_id.in_(ids),
                    leave_out=LEFT_OUT["return_authorizations"],
                ),
            }
        return export.document("order", customer_id, tables, self.clock(), left_out=LEFT_OUT)
