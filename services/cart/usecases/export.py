"""Cart use cases: what this service holds about a customer, for her GDPR export (her carts
and their lines, her personal codes and redemptions), credentials left out."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from services.cart.models import cart_lines, carts, promotion_codes, redemptions
from tenpo.kit import export
from tenpo.kit.auth import Principal
from tenpo.kit.db import Database

#: Withheld: a guest cart's token hash and personal codes are credentials (a code is a
#: bearer discount; she has it in the message that gave it to her).
LEFT_OUT = {
    "carts": ("guest_token_hash",),
    "promotion_codes": ("code",),
    "redemptions": ("code",),
}


class CustomerExport:
    def __init__(self, db: Database, clock: Callable[[], datetime] | None = None) -> None:
        self.db = db
        self.clock = clock or (lambda: datetime.now(UTC))

    async def export(self, principal: Principal, customer_ref: str) -> str:
        customer_id = export.export_subject(principal, customer_ref)
        async with self.db.unit_of_work() as uow:
            own = await export.rows(
                uow.session, carts, carts.c.customer_id == customer_id, leave_out=LEFT_OUT["carts"]
            )
            tables = {
                "carts": own,
                "cart_lines": await export.rows(
                    uow.session, cart_lines, cart_lines.c.cart_id.in_([r["id"] for r in own])
                ),
                "promotion_codes": await export.rows(
                    uow.session,
                    promotion_codes,
                    promotion_codes.c.customer_id == customer_id,
                    leave_out=LEFT_OUT["promotion_codes"],
                ),
                "redemptions": await export.rows(
                    uow.session,
                    redemptions,
                    redemptions.c.customer_id == customer_id,
                    leave_out=LEFT_OUT["redemptions"],
                ),
            }
        return export.document("cart", customer_id, tables, self.clock(), left_out=LEFT_OUT)
