"""Staff search (order number, e-mail, phone) and the erasure rule for orders.

Erasure (CustomerErased): an order is an accounting record as much as a customer's data.
Japanese law (法人税法, 消費税法 — the invoice system) keeps books and tax records for
seven years, so an erased customer's orders keep what the record needs — number, dates,
channel and store, lines, prices, discounts, tax-inclusive totals, payment method and
state, and the prefecture delivered to — and lose what names or reaches the person: the
contact e-mail and phone, and the address beyond region and prefecture. The customer id
stays: an opaque id whose customer record is gone, which links a later return to its
sale without saying who made it. A guest's order (no customer) is pseudonymized the same
way once it is finished and older than ORDER_GUEST_DATA_RETENTION_DAYS."""

from __future__ import annotations

import asyncio
import logging
import re
import uuid
from datetime import UTC, datetime, timedelta

from services.order.domain.orders import Order, normal_email, normal_phone
from services.order.store.orders import OrderStore
from tenpo.kit.auth import Principal, PrincipalKind
from tenpo.kit.db import Database, UnitOfWork
from tenpo.kit.errors import DomainError, FieldViolation, InvalidArgument

log = logging.getLogger(__name__)
_NUMBER = re.compile(r"T-\d{6,12}")
MAX_EMAIL = 254


class OrderSearch:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def search(
        self,
        principal: Principal,
        *,
        order_number: str,
        email: str,
        phone: str,
        after: tuple[datetime, uuid.UUID] | None,
        limit: int,
    ) -> list[Order]:
        principal.require_any_kind(PrincipalKind.STAFF)  # scopes: the method's access rule
        given = [
            name
            for name, value in (("order_number", order_number), ("email", email), ("phone", phone))
            if value
        ]
        if len(given) != 1:
            raise InvalidArgument(
                "search by exactly one of order_number, email or phone",
                reason="SEARCH_CRITERION_REQUIRED",
                field_violations=[
                    FieldViolation(name, "exactly one criterion")
                    for name in (given or ["order_number"])
                ],
            )
        if order_number and not _NUMBER.fullmatch(order_number):
            raise _invalid("order_number", "an order number such as T-000123")
        if email and (len(email) > MAX_EMAIL or "@" not in email):
            raise _invalid("email", "an e-mail address, at most 254 characters")
        digits = normal_phone(phone) if phone else None
        if phone and (len(phone) > 32 or not digits or not 6 <= len(digits) <= 15):
            raise _invalid("phone", "a phone number of 6-15 digits")
        async with self.db.unit_of_work() as uow:
            return await OrderStore(uow.session).search(
                number=order_number or None,
                email=normal_email(email) if email else None,
                phone=digits,
                after=after,
                limit=limit,
            )

    @staticmethod
    async def customer_erased(uow: UnitOfWork, customer_id: str) -> None:
        """Pseudonymize the customer's orders (the rule above), in the consumer's
        transaction: the event is marked handled with the change."""
        await OrderStore(uow.session).pseudonymize_customer(customer_id)


async def forget_guests(db: Database, retention: timedelta, batch: int = 200) -> int:
    """Guest orders finished and placed longer than ``retention`` ago are pseudonymized by
    the rule above: a guest has no account to erase, so her contact and address go once the
    order no longer needs them (returns and questions are over); the accounting record
    stays. Batches, each its own transaction (SKIP LOCKED: replicas share the work)."""
    total = 0
    while True:
        async with db.unit_of_work() as uow:
            changed = await OrderStore(uow.session).pseudonymize_guest_orders(
                datetime.now(UTC) - retention, batch
            )
            await uow.commit()
        total += changed
        if changed < batch:
            return total


async def forget_guests_every(db: Database, retention: timedelta, interval_seconds: float) -> None:
    while True:
        try:
            await forget_guests(db, retention)
        except (DomainError, OSError) as error:
            log.warning("guest data sweep skipped", extra={"error": type(error).__name__})
        await asyncio.sleep(interval_seconds)


def _invalid(field: str, description: str) -> InvalidArgument:
    return InvalidArgument(
        f"{field} is not valid",
        reason="SEARCH_CRITERION_INVALID",
        field_violations=[FieldViolation(field, description)],
    )
