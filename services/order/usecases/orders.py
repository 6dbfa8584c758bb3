"""Order use cases: reading (owner, staff, services) and cancelling a placed order."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta

from services.order.domain.fulfilments import require_cancellable
from services.order.domain.orders import (
    MAX_CANCEL_REASON,
    READ_SCOPE,
    WRITE_SCOPE,
    Order,
    OrderStatus,
    OrderTokens,
    PaymentMethod,
    PaymentState,
    order_not_found,
)
from services.order.domain.payments import PaymentProvider, PaymentUnavailable
from services.order.domain.saga import StepUnavailable
from services.order.events import cancelled_event
from services.order.store.fulfilments import FulfilmentStore
from services.order.store.orders import OrderStore
from services.order.upstream import InventoryClient
from tenpo.kit.auth import Principal, PrincipalKind
from tenpo.kit.db import Database
from tenpo.kit.errors import FieldViolation, InvalidArgument, Unavailable


def may_read(principal: Principal, order: Order) -> bool:
    if principal.kind is PrincipalKind.CUSTOMER:
        return principal.subject == order.customer_id
    if principal.kind in (PrincipalKind.STAFF, PrincipalKind.SERVICE):
        return principal.has_scope(READ_SCOPE) or principal.has_scope(WRITE_SCOPE)
    return False


def may_cancel(principal: Principal, order: Order) -> bool:
    if principal.kind is PrincipalKind.CUSTOMER:
        return principal.subject == order.customer_id
    return principal.kind is PrincipalKind.STAFF and principal.has_scope(WRITE_SCOPE)


class Orders:
    def __init__(
        self,
        db: Database,
        inventory: InventoryClient,
        payments: Mapping[PaymentMethod, PaymentProvider],
        *,
        payment_timeout_seconds: float,
        tokens: OrderTokens,
    ) -> None:
        self.db = db
        self.inventory = inventory
        self.payments = payments
        self.payment_timeout_seconds = payment_timeout_seconds
        self.tokens = tokens

    async def get(self, principal: Principal, order_id: uuid.UUID, order_token: str = "") -> Order:
        """The order for its reader; with ``order_token``, a guest's order for its guest
        (whoever calls: the token is the proof)."""
        async with self.db.unit_of_work() as uow:
            saga = await OrderStore(uow.session).get(order_id)
        # Someone else's order answers exactly like a missing one, a wrong token too.
        if saga is None:
            raise order_not_found()
        if order_token:
            if not self.tokens.opens(saga.order, order_token):
                raise order_not_found()
        elif not may_read(principal, saga.order):
            raise order_not_found()
        return saga.order

    def token_of(self, order: Order) -> str:
        """A guest order's capability (empty for a customer's order)."""
        return self.tokens.token(order.id) if order.is_guest else ""

    async def list(
        self,
        principal: Principal,
        *,
        customer_id: str,
        statuses: Sequence[OrderStatus],
        after: tuple[datetime, uuid.UUID] | None,
        limit: int,
    ) -> list[Order]:
        if principal.kind is PrincipalKind.CUSTOMER:
            if customer_id and customer_id != principal.subject:
                return []  # never another customer's orders, never a hint they exist
            customer_id = principal.subject
        elif not customer_id:
            raise InvalidArgument(
                "name the customer whose orders to list",
                reason="CUSTOMER_ID_REQUIRED",
                field_violations=[FieldViolation("customer_id", "required for staff")],
            )
        async with self.db.unit_of_work() as uow:
            return await OrderStore(uow.session).list_for_customer(
                customer_id, statuses, after, limit
            )

    async def cancel(self, principal: Principal, order_id: uuid.UUID, reason: str) -> Order:
        if len(reason) > MAX_CANCEL_REASON:
            raise InvalidArgument(
                "the reason is too long",
                reason="CANCEL_REASON_INVALID",
                field_violations=[FieldViolation("reason", f"at most {MAX_CANCEL_REASON}")],
            )
        order = await self.get(principal, order_id)
        if not may_cancel(principal, order):
            raise order_not_found()
        if order.status is OrderStatus.CANCELLED:
            return order
        order.cancel("CANCELLED_BY_CUSTOMER")  # refuses before anything is undone
        async with self.db.unit_of_work() as uow:
            require_cancellable(await FulfilmentStore(uow.session).of_order(order_id))
        # The undoing calls are idempotent (keyed by the order): a retry after a failure
        # here repeats them harmlessly; the state changes only once all succeeded.
        try:
            if order.payment_state is PaymentState.AUTHORIZED:
                async with asyncio.timeout(self.payment_timeout_seconds):
                    await self.payments[order.payment_method].void(
                        f"{order.id}:void", authorization_key=f"{order.id}:authorize"
                    )
            for sku, parts in json.loads(order.refs.get("plan", "{}")).items():
                for location, units in parts:
                    await self.inventory.restock(str(order.id), sku, location, units)
        except (StepUnavailable, PaymentUnavailable, TimeoutError):
            raise Unavailable(
                "a service needed to cancel did not answer; retry shortly",
                reason="CANCEL_UNAVAILABLE",
            ) from None
        async with self.db.unit_of_work() as uow:
            store = OrderStore(uow.session)
            saga = await store.get(order_id, for_update=True)
            assert saga is not None
            if saga.order.status is OrderStatus.CANCELLED:
                return saga.order
            # The stable reason says who cancelled; the free text is not kept (it may hold
            # personal data and nobody reads it back).
            who = "CUSTOMER" if principal.kind is PrincipalKind.CUSTOMER else "STAFF"
            cancelled = saga.order.cancel(f"CANCELLED_BY_{who}")
            if cancelled.payment_state is PaymentState.AUTHORIZED:
                cancelled = cancelled.with_payment(PaymentState.VOIDED)
            await store.save(
                cancelled,
                step=saga.step,
                phase=saga.phase,
                lease_owner=None,
                lease=timedelta(0),
                keep_card=False,
            )
            uow.add_event(cancelled_event(cancelled))
            fulfilments = FulfilmentStore(uow.session)
            now = datetime.now(UTC)
            for fulfilment in await fulfilments.of_order(order_id):
                await fulfilments.save(fulfilment.cancel(cancelled.failure_reason), now)
            await uow.commit()
        return await self.get(principal, order_id)  # as stored, update time included
