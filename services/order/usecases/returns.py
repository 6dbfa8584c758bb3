"""Return use cases: units of an order brought back to any store, restocked there and
refunded to the original payment. The one restock-and-refund path: a parcel of a return
by mail (``mail_returns``) is recorded and finished by ``record`` and ``finish`` too.

Never refunded twice: the return is recorded first (keyed by the order and the caller's
request_id, under the order's lock, so concurrent returns cannot take the same units), then
the restock and the refund are asked for with keys of that return. A dependency that does
not answer leaves the return PENDING and the caller gets UNAVAILABLE; the same request_id
again takes those idempotent calls again and completes it."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from services.order.domain.fulfilments import FulfillmentLine
from services.order.domain.orders import Order, PaymentMethod, order_not_found
from services.order.domain.payments import PaymentProvider, PaymentUnavailable
from services.order.domain.returns import (
    OrderReturn,
    ReturnStatus,
    check_lines_of_order,
    check_return_lines,
    plan_return,
)
from services.order.domain.saga import StepFailure, StepUnavailable
from services.order.events import money
from services.order.store.fulfilments import FulfilmentStore
from services.order.store.mail_returns import AuthorizationStore
from services.order.store.orders import OrderStore
from services.order.store.returns import ReturnStore
from services.order.upstream import InventoryClient
from tenpo.kit.auth import Principal, PrincipalKind
from tenpo.kit.db import Database
from tenpo.kit.errors import FieldViolation, InvalidArgument, PermissionDenied, Unavailable
from tenpo.kit.idempotency import check_request_id, request_id_reused
from tenpo.order.v1 import events_pb2 as ev


class Returns:
    def __init__(
        self,
        db: Database,
        inventory: InventoryClient,
        payments: Mapping[PaymentMethod, PaymentProvider],
        *,
        window: timedelta,
        payment_timeout_seconds: float,
    ) -> None:
        self.db = db
        self.inventory = inventory
        self.payments = payments
        self.window = window
        self.payment_timeout_seconds = payment_timeout_seconds

    async def return_lines(
        self,
        principal: Principal,
        order_id: uuid.UUID,
        store_id: str,
        lines: Sequence[FulfillmentLine],
        request_id: str,
    ) -> tuple[OrderReturn, str]:
        """The return, COMPLETED, and the order's currency."""
        violations = []
        if not store_id or len(store_id) > 64:
            violations.append(FieldViolation("store_id", "the receiving store, 1-64 characters"))
        if not request_id:
            violations.append(FieldViolation("request_id", "required: a refund is never repeated"))
        if violations:
            raise InvalidArgument(
                "invalid return", reason="RETURN_INVALID", field_violations=violations
            )
        check_request_id(request_id)
        wanted = check_return_lines(lines)
        if principal.kind is PrincipalKind.DEVICE and principal.store_id != store_id:
            raise PermissionDenied(
                "a store's devices take returns for their own store only", reason="STORE_MISMATCH"
            )
        await self.check_location(store_id, "store_id")
        key = f"{order_id}:{request_id}"
        async with self.db.unit_of_work() as uow:
            await FulfilmentStore(uow.session).lock_order(order_id)
            saga = await OrderStore(uow.session).get(order_id)
            if saga is None:
                raise order_not_found()
            order = saga.order
            # Every field is judged before the order's state and the window.
            check_lines_of_order(order, lines)
            recorded = await ReturnStore(uow.session).by_key(key)
            if recorded is not None:
                if (recorded.store_id, recorded.lines) != (store_id, wanted):
                    raise request_id_reused()
            else:
                recorded = await self.record(
                    uow.session, order, store_id, wanted, key, asked_at=datetime.now(UTC)
                )
                await uow.commit()
        return await self.finish(order, recorded, key), order.currency

    async def check_location(self, location_id: str, field: str) -> None:
        """Refuse, before anything is recorded, a location inventory does not have: its
        restock would be refused for good, leaving the return PENDING and its units taken
        (LOCATION_UNKNOWN). Inventory not answering: INVENTORY_UNAVAILABLE."""
        try:
            known = await self.inventory.knows_location(location_id)
        except StepUnavailable:
            raise Unavailable(
                "inventory did not answer; retry with the same request_id",
                reason="INVENTORY_UNAVAILABLE",
            ) from None
        if not known:
            raise InvalidArgument(
                "no such location",
                reason="LOCATION_UNKNOWN",
                field_violations=[FieldViolation(field, "a location of the inventory")],
            )

    async def record(
        self,
        session: AsyncSession,
        order: Order,
        location_id: str,
        lines: tuple[FulfillmentLine, ...],
        key: str,
        *,
        asked_at: datetime,
        authorization: uuid.UUID | None = None,
    ) -> OrderReturn:
        """Record a PENDING return of ``lines`` received at ``location_id``, in the caller's
        transaction, under the order's lock (taken by the caller). ``asked_at``: when the
        return was asked for (a parcel: when it was authorized). ``authorization``: the
        return authorization it receives (its own units do not count against it)."""
        now = datetime.now(UTC)
        held = [
            a.lines
            for a in await AuthorizationStore(session).of_order(order.id)
            if a.id != authorization and a.holds_units(now)
        ]
        returns = ReturnStore(session)
        refund = plan_return(
            order,
            await FulfilmentStore(session).of_order(order.id),
            await returns.of_order(order.id),
            lines,
            asked_at,
            self.window,
            held,
        )
        recorded = OrderReturn(
            uuid.uuid4(),
            order.id,
            location_id,
            lines,
            refund,
            ReturnStatus.PENDING,
            authorization_id=authorization,
        )
        await returns.insert(recorded, key)
        return recorded

    async def finish(self, order: Order, recorded: OrderReturn, key: str) -> OrderReturn:
        """Restock and refund a recorded return, then COMPLETED with its events (and its
        return authorization REFUNDED) in one transaction. Every call is keyed by the
        return: finishing again, also concurrently, never refunds twice."""
        if recorded.status is ReturnStatus.PENDING:
            await self._restock_and_refund(order, recorded)
            async with self.db.unit_of_work() as uow:
                completed = await ReturnStore(uow.session).complete(recorded.id)
                if completed is not None:
                    uow.add_event(_received(order, completed))
                    if completed.refund:
                        uow.add_event(_refunded(order, completed))
                    if completed.authorization_id is not None:
                        await AuthorizationStore(uow.session).refunded(completed.authorization_id)
                await uow.commit()
        async with self.db.unit_of_work() as uow:
            final = await ReturnStore(uow.session).by_key(key)
        assert final is not None
        return final

    async def _restock_and_refund(self, order: Order, value: OrderReturn) -> None:
        try:
            for line in value.lines:
                await self.inventory.return_stock(
                    f"{value.id}:restock:{line.sku}",
                    line.sku,
                    value.store_id,
                    line.quantity,
                    f"return of order {order.number}",
                )
        except (StepUnavailable, StepFailure):
            raise Unavailable(
                "inventory did not take the returned units; retry with the same request_id",
                reason="INVENTORY_UNAVAILABLE",
            ) from None
        if not value.refund:
            return
        try:
            async with asyncio.timeout(self.payment_timeout_seconds):
                await self.payments[order.payment_method].refund(
                    f"{value.id}:refund",
                    authorization_key=f"{order.id}:authorize",
                    amount=value.refund,
                )
        except (PaymentUnavailable, TimeoutError):
            raise Unavailable(
                "the payment provider did not answer; retry with the same request_id",
                reason="PAYMENT_UNAVAILABLE",
            ) from None


def _received(order: Order, value: OrderReturn) -> ev.ReturnReceived:
    return ev.ReturnReceived(
        order_id=str(order.id),
        order_number=order.number,
        customer_id=order.customer_id,
        channel=order.channel,  # type: ignore[arg-type]
        store_id=value.store_id,
        return_id=str(value.id),
        lines=[
            ev.OrderEventLine(sku=line.sku, quantity=line.quantity, location_id=value.store_id)
            for line in value.lines
        ],
        refund=money(value.refund, order.currency),
    )


def _refunded(order: Order, value: OrderReturn) -> ev.RefundIssued:
    return ev.RefundIssued(
        order_id=str(order.id),
        order_number=order.number,
        customer_id=order.customer_id,
        channel=order.channel,  # type: ignore[arg-type]
        store_id=value.store_id,
        return_id=str(value.id),
        amount=money(value.refund, order.currency),
    )
