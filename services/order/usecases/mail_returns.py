"""Returns by mail use cases: a customer (a guest with her order token) asks to send units
back — a return authorization with a number and where to send the parcel — and the
location the parcel reaches records what arrived, which is then restocked there and
refunded through the one return path (``Returns.record`` and ``Returns.finish``).

Every decision about units is taken under the order's lock (the one store returns take),
so concurrent requests, and a store return meanwhile, never promise a unit twice. Nothing
is refunded before the parcel arrives."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from services.order.domain.fulfilments import FulfillmentLine
from services.order.domain.mail_returns import (
    ReturnAuthorization,
    ReturnAuthorizationStatus,
    authorization_not_found,
    check_reason,
    ship_to,
)
from services.order.domain.orders import Order, order_not_found
from services.order.domain.returns import (
    OrderReturn,
    check_lines_of_order,
    check_return_lines,
    plan_return,
)
from services.order.events import return_authorization_cancelled_event, return_authorized_event
from services.order.store.fulfilments import FulfilmentStore
from services.order.store.mail_returns import MAX_LISTED, AuthorizationStore
from services.order.store.orders import OrderStore
from services.order.store.returns import ReturnStore
from services.order.usecases.orders import Orders
from services.order.usecases.returns import Returns
from tenpo.kit.auth import Principal, PrincipalKind
from tenpo.kit.db import Database
from tenpo.kit.errors import FailedPrecondition, FieldViolation, InvalidArgument, PermissionDenied
from tenpo.kit.idempotency import check_request_id, idempotency_key, request_id_reused


@dataclass(frozen=True)
class AuthorizationView:
    """A return authorization as shown: with its order's number and, once received, the
    return that received it."""

    authorization: ReturnAuthorization
    status: ReturnAuthorizationStatus
    order_number: str
    currency: str
    order_return: OrderReturn | None = None


class MailReturns:
    def __init__(
        self, db: Database, orders: Orders, returns: Returns, *, ship_within: timedelta
    ) -> None:
        self.db = db
        self.orders = orders
        self.returns = returns
        self.ship_within = ship_within

    async def request(
        self,
        principal: Principal,
        order_id: uuid.UUID,
        order_token: str,
        lines: Sequence[FulfillmentLine],
        reason: str,
        request_id: str,
    ) -> AuthorizationView:
        if not request_id:
            raise InvalidArgument(
                "request_id is required",
                reason="RETURN_INVALID",
                field_violations=[FieldViolation("request_id", "required: one authorization")],
            )
        check_request_id(request_id)
        wanted = check_return_lines(lines)
        check_reason(reason)
        # Whoever may not read the order learns nothing of it (ORDER_NOT_FOUND).
        await self.orders.get(principal, order_id, order_token)
        key = f"{order_id}:{idempotency_key(request_id, principal)}"
        now = datetime.now(UTC)
        async with self.db.unit_of_work() as uow:
            await FulfilmentStore(uow.session).lock_order(order_id)
            saga = await OrderStore(uow.session).get(order_id)
            if saga is None:
                raise order_not_found()
            order = saga.order  # as it is now, under the lock (it may have been cancelled)
            authorizations = AuthorizationStore(uow.session)
            found = await authorizations.by_key(key)
            if found is not None:
                if (found.lines, found.reason) != (wanted, reason):
                    raise request_id_reused()
                return await self._view(uow.session, order, found, now)
            # Every field is judged before the order's state and the window.
            check_lines_of_order(order, lines)
            existing = await authorizations.of_order(order_id)
            if len(existing) >= MAX_LISTED:
                # Past it, the list and the units held would leave the newest out.
                raise FailedPrecondition(
                    f"an order takes at most {MAX_LISTED} return authorizations",
                    reason="RETURN_AUTHORIZATION_LIMIT",
                )
            fulfilments = await FulfilmentStore(uow.session).of_order(order_id)
            plan_return(
                order,
                fulfilments,
                await ReturnStore(uow.session).of_order(order_id),
                wanted,
                now,
                self.returns.window,
                [a.lines for a in existing if a.holds_units(now)],
            )
            created = await authorizations.insert(
                ReturnAuthorization(
                    id=uuid.uuid4(),
                    number="",
                    order_id=order_id,
                    lines=wanted,
                    ship_to=ship_to(fulfilments, wanted),
                    status=ReturnAuthorizationStatus.REQUESTED,
                    expires_at=now + self.ship_within,
                    reason=reason,
                ),
                key,
            )
            uow.add_event(return_authorized_event(order, created))
            await uow.commit()
        return AuthorizationView(created, created.status, order.number, order.currency)

    async def receive(
        self,
        principal: Principal,
        *,
        authorization_id: uuid.UUID | None,
        number: str,
        location_id: str,
        lines: Sequence[FulfillmentLine],
        request_id: str,
    ) -> AuthorizationView:
        violations = []
        if (authorization_id is None) == (not number):
            violations.append(
                FieldViolation("return_authorization_id", "exactly one of it and number")
            )
        if len(number) > 32:
            violations.append(FieldViolation("number", "at most 32 characters"))
        if not location_id or len(location_id) > 64:
            violations.append(FieldViolation("location_id", "where it arrived, 1-64 characters"))
        if not request_id:
            violations.append(FieldViolation("request_id", "required: a refund is never repeated"))
        if violations:
            raise InvalidArgument(
                "invalid receipt", reason="RETURN_INVALID", field_violations=violations
            )
        check_request_id(request_id)
        arrived = check_return_lines(lines) if lines else ()
        if principal.kind is PrincipalKind.DEVICE and principal.store_id != location_id:
            raise PermissionDenied(
                "a location's devices receive parcels for their own location only",
                reason="STORE_MISMATCH",
            )
        await self.returns.check_location(location_id, "location_id")
        async with self.db.unit_of_work() as uow:
            authorizations = AuthorizationStore(uow.session)
            found = await authorizations.get(
                authorization_id=authorization_id, number=number or None
            )
            if found is None:
                raise authorization_not_found()
            await FulfilmentStore(uow.session).lock_order(found.order_id)
            current = await authorizations.get(authorization_id=found.id)
            saga = await OrderStore(uow.session).get(found.order_id)
            assert current is not None
            assert saga is not None
            order = saga.order
            key = _receipt_key(current.id)
            if current.receipt_request_id == request_id:
                recorded = await ReturnStore(uow.session).by_key(key)
                assert recorded is not None
                if (recorded.store_id, arrived or recorded.lines) != (location_id, recorded.lines):
                    raise request_id_reused()
            else:
                received, units = current.receive(arrived, request_id, datetime.now(UTC))
                assert current.created_at is not None
                # The window is judged when the parcel was authorized, not when it arrived.
                recorded = await self.returns.record(
                    uow.session,
                    order,
                    location_id,
                    units,
                    key,
                    asked_at=current.created_at,
                    authorization=current.id,
                )
                await authorizations.save(received)
                await uow.commit()
        await self.returns.finish(order, recorded, key)
        return await self._read(order, current.id)

    async def list(
        self, principal: Principal, order_id: uuid.UUID, order_token: str
    ) -> list[AuthorizationView]:
        order = await self.orders.get(principal, order_id, order_token)
        now = datetime.now(UTC)
        async with self.db.unit_of_work() as uow:
            received = {
                r.authorization_id: r
                for r in await ReturnStore(uow.session).of_order(order_id)
                if r.authorization_id is not None
            }
            return [
                AuthorizationView(
                    a, a.status_at(now), order.number, order.currency, received.get(a.id)
                )
                for a in await AuthorizationStore(uow.session).of_order(order_id)
            ]

    async def cancel(
        self,
        principal: Principal,
        order_id: uuid.UUID,
        authorization_id: uuid.UUID,
        order_token: str,
    ) -> AuthorizationView:
        order = await self.orders.get(principal, order_id, order_token)
        now = datetime.now(UTC)
        async with self.db.unit_of_work() as uow:
            await FulfilmentStore(uow.session).lock_order(order_id)
            authorizations = AuthorizationStore(uow.session)
            found = await authorizations.get(authorization_id=authorization_id)
            if found is None or found.order_id != order_id:
                raise authorization_not_found()
            cancelled = found.cancel(now)
            if cancelled is not found:
                await authorizations.save(cancelled)
                uow.add_event(return_authorization_cancelled_event(order, cancelled))
                await uow.commit()
        return AuthorizationView(cancelled, cancelled.status, order.number, order.currency)

    async def _read(self, order: Order, authorization_id: uuid.UUID) -> AuthorizationView:
        async with self.db.unit_of_work() as uow:
            found = await AuthorizationStore(uow.session).get(authorization_id=authorization_id)
            assert found is not None
            return await self._view(uow.session, order, found, datetime.now(UTC))

    async def _view(
        self, session: AsyncSession, order: Order, value: ReturnAuthorization, now: datetime
    ) -> AuthorizationView:
        received = None
        if value.receipt_request_id is not None:
            received = await ReturnStore(session).by_key(_receipt_key(value.id))
        return AuthorizationView(
            value, value.status_at(now), order.number, order.currency, received
        )


def _receipt_key(authorization_id: uuid.UUID) -> str:
    """The key of the return that receives an authorization: one receipt each. Store
    returns' keys start with the order id, so the two never meet."""
    return f"rma:{authorization_id}"
