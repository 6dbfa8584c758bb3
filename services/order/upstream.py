"""Outgoing calls of the saga: the cart (read, redemptions, checkout), inventory (plan,
reserve, commit, release, restock) and the customer service (the order service's own
token, loyalty points), each with a deadline, translated into saga outcomes.

The order service calls as a SERVICE principal: it signs in to the customer service with
its client credentials (a back-office-tool client, whose tokens are service tokens) and
keeps the token until shortly before it expires. A customer's reservations are capped by
inventory; the service's are not, which is what lets it hold stock for any customer.

Outcomes: a definitive refusal (INSUFFICIENT_STOCK, CART_CHANGED, ...) is a
``StepFailure``; no answer in time, or UNAVAILABLE, is ``StepUnavailable`` (the step is
idempotent and may be taken again)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, TypeVar

import grpc
from google.protobuf import duration_pb2
from google.protobuf.json_format import MessageToDict

from services.order.domain.geo import delivery_point
from services.order.domain.orders import (
    FrozenCart,
    Fulfillment,
    FulfillmentMethod,
    OrderLine,
    Totals,
)
from services.order.domain.saga import FailureKind, SagaStep, StepFailure, StepUnavailable
from tenpo.cart.v1 import cart_service_pb2 as cart_api
from tenpo.cart.v1 import cart_service_pb2_grpc as cart_grpc
from tenpo.cart.v1 import promotion_service_pb2 as promo_api
from tenpo.cart.v1 import promotion_service_pb2_grpc as promo_grpc
from tenpo.cart.v1 import resources_pb2 as cart_pb
from tenpo.customer.v1 import loyalty_service_pb2 as loyalty_api
from tenpo.customer.v1 import loyalty_service_pb2_grpc as loyalty_grpc
from tenpo.inventory.v1 import inventory_service_pb2 as inventory_api
from tenpo.inventory.v1 import inventory_service_pb2_grpc as inventory_grpc
from tenpo.inventory.v1 import resources_pb2 as inventory_pb
from tenpo.kit.errors import Unavailable
from tenpo.kit.grpc_errors import decode_error
from tenpo.kit.service_token import TokenSource

T = TypeVar("T")
Metadata = tuple[tuple[str, str], ...]
#: SKU → [(location, units)]: where inventory placed a checkout's units.
Plan = dict[str, list[tuple[str, int]]]
#: SKU → location → inventory ``AllocationMethod`` (how those units reach the customer:
#: pickup, transfer to the pickup store, ship, same day), as the plan said.
PlanMethods = dict[str, dict[str, int]]

_RETRYABLE = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.CANCELLED,
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.INTERNAL,
    }
)
_KIND_BY_CODE = {
    grpc.StatusCode.ABORTED: FailureKind.CONFLICT,
    grpc.StatusCode.NOT_FOUND: FailureKind.NOT_FOUND,
}


async def _call(
    step: SagaStep,
    service: str,
    deadline: float,
    tokens: TokenSource,
    call: Callable[[Metadata], Awaitable[T]],
) -> T:
    """One outgoing call under a deadline; gRPC outcomes become saga outcomes."""
    for attempt in (1, 2):
        try:
            async with asyncio.timeout(deadline):
                return await call(await tokens.metadata())
        except Unavailable as error:
            if error.reason == "CUSTOMER_UNAVAILABLE":
                # No token now (the customer service did not answer the sign-in): like any
                # other dependency that does not answer, the step may be retried.
                raise StepUnavailable(error.reason) from None
            raise  # credentials refused: a configuration error the operator must see
        except TimeoutError:
            raise StepUnavailable(f"{service}_UNAVAILABLE") from None
        except grpc.aio.AioRpcError as error:
            code = error.code()
            if code is grpc.StatusCode.UNAUTHENTICATED and attempt == 1:
                tokens.invalidate()  # expired or rotated: sign in again, once
                continue
            if code in _RETRYABLE:
                raise StepUnavailable(f"{service}_UNAVAILABLE") from None
            details = decode_error(error)
            raise StepFailure(
                step,
                _KIND_BY_CODE.get(code, FailureKind.REJECTED),
                details.reason or f"{service}_{code.name}",
                details.message,
                dict(details.metadata),
            ) from None
    raise StepUnavailable(f"{service}_UNAVAILABLE")


def _money(value: Any) -> int:
    return int(value.units)


class CartClient:
    """The cart service, as the order service (scopes carts:read, carts:checkout,
    promotions:redeem)."""

    def __init__(self, channel: grpc.aio.Channel, tokens: TokenSource, timeout: float) -> None:
        self._carts = cart_grpc.CartServiceStub(channel)
        self._promotions = promo_grpc.PromotionServiceStub(channel)
        self._tokens = tokens
        self._timeout = timeout

    async def read(self, cart_id: str) -> FrozenCart:
        response = await _call(
            SagaStep.FREEZE_CART,
            "CART",
            self._timeout,
            self._tokens,
            lambda md: self._carts.GetCart(
                cart_api.GetCartRequest(cart_id=cart_id), metadata=md, timeout=self._timeout
            ),
        )
        return frozen_cart(response.cart)

    async def holds_guest_cart(self, cart_id: str, cart_token: str) -> bool:
        """Whether ``cart_token`` is the token of the guest cart ``cart_id`` (the cart
        service checks it: only it has the key); StepUnavailable when it does not answer."""
        try:
            response = await _call(
                SagaStep.FREEZE_CART,
                "CART",
                self._timeout,
                self._tokens,
                lambda md: self._carts.GetCart(
                    cart_api.GetCartRequest(cart_id=cart_id, cart_token=cart_token),
                    metadata=md,
                    timeout=self._timeout,
                ),
            )
        except StepFailure:
            return False
        return not response.cart.customer_id

    async def reserve_redemptions(
        self, cart_id: str, etag: str, order_id: str, ttl: timedelta
    ) -> None:
        request = promo_api.ReserveRedemptionsRequest(
            cart_id=cart_id,
            etag=etag,
            order_id=order_id,
            ttl=duration_pb2.Duration(seconds=int(ttl.total_seconds())),
            request_id=f"{order_id}:redeem",
        )
        await _call(
            SagaStep.RESERVE_REDEMPTIONS,
            "CART",
            self._timeout,
            self._tokens,
            lambda md: self._promotions.ReserveRedemptions(
                request, metadata=md, timeout=self._timeout
            ),
        )

    async def commit_redemptions(self, order_id: str) -> None:
        await _call(
            SagaStep.COMMIT_REDEMPTIONS,
            "CART",
            self._timeout,
            self._tokens,
            lambda md: self._promotions.CommitRedemptions(
                promo_api.CommitRedemptionsRequest(order_id=order_id),
                metadata=md,
                timeout=self._timeout,
            ),
        )

    async def release_redemptions(self, order_id: str) -> None:
        await _call(
            SagaStep.RESERVE_REDEMPTIONS,
            "CART",
            self._timeout,
            self._tokens,
            lambda md: self._promotions.ReleaseRedemptions(
                promo_api.ReleaseRedemptionsRequest(order_id=order_id),
                metadata=md,
                timeout=self._timeout,
            ),
        )

    async def return_redemptions(self, order_id: str, reason: str) -> None:
        """Give back the order's committed uses (an order cancelled unpaid): the code is
        usable again. Idempotent by state and keyed by the order."""
        request = promo_api.ReturnRedemptionsRequest(
            order_id=order_id, reason=reason, request_id=f"{order_id}:redeem-return"
        )
        await _call(
            SagaStep.FINISH,
            "CART",
            self._timeout,
            self._tokens,
            lambda md: self._promotions.ReturnRedemptions(
                request, metadata=md, timeout=self._timeout
            ),
        )

    async def checkout(self, cart_id: str, etag: str, order_id: str) -> None:
        request = cart_api.CheckoutCartRequest(
            cart_id=cart_id, etag=etag, order_id=order_id, request_id=f"{order_id}:checkout"
        )
        await _call(
            SagaStep.CHECKOUT_CART,
            "CART",
            self._timeout,
            self._tokens,
            lambda md: self._carts.CheckoutCart(request, metadata=md, timeout=self._timeout),
        )


class InventoryClient:
    """Inventory, as the order service (scope inventory:write; a service's reservations are
    not capped like a customer's)."""

    def __init__(self, channel: grpc.aio.Channel, tokens: TokenSource, timeout: float) -> None:
        self._stub = inventory_grpc.InventoryServiceStub(channel)
        self._tokens = tokens
        self._timeout = timeout

    async def plan(self, cart: FrozenCart) -> tuple[Plan, PlanMethods]:
        """The plan of a complete fulfilment (INSUFFICIENT_STOCK otherwise) and how each
        allocation reaches the customer."""
        assert cart.fulfillment is not None
        lines = [inventory_pb.StockLine(sku=li.sku, quantity=li.quantity) for li in cart.lines]
        request = inventory_api.PlanFulfillmentRequest(lines=lines)
        method = cart.fulfillment.method
        if method.in_store and cart.fulfillment.store_id:
            request.pickup_location_id = cart.fulfillment.store_id
        request.same_day = method is FulfillmentMethod.SAME_DAY
        if not method.in_store:
            # Inventory measures delivery sources from a point (see domain.geo).
            latitude, longitude = delivery_point(cart.fulfillment.address)
            request.delivery_point.latitude = latitude
            request.delivery_point.longitude = longitude
        response = await _call(
            SagaStep.PLAN_FULFILLMENT,
            "INVENTORY",
            self._timeout,
            self._tokens,
            lambda md: self._stub.PlanFulfillment(request, metadata=md, timeout=self._timeout),
        )
        if not response.plan.complete:
            missing = ", ".join(sorted({u.sku for u in response.plan.unfulfillable}))
            raise StepFailure(
                SagaStep.PLAN_FULFILLMENT,
                FailureKind.REJECTED,
                "INSUFFICIENT_STOCK",
                f"not enough stock for {missing or 'a line'}",
            )
        plan: Plan = {}
        methods: PlanMethods = {}
        for allocation in response.plan.allocations:
            plan.setdefault(allocation.sku, []).append(
                (allocation.location_id, int(allocation.quantity))
            )
            methods.setdefault(allocation.sku, {})[allocation.location_id] = int(allocation.method)
        return plan, methods

    async def reserve(
        self, order_id: str, plan: Plan, ttl: timedelta, methods: PlanMethods | None = None
    ) -> str:
        """Reserve the plan's units where it placed them, each line with its allocation
        method, so that parcels from a store and same-day deliveries use the location's
        daily capacity (a saga recorded before methods were kept reserves without them,
        as it first did: the retry of its request_id must be the same request).
        Capacity used up meanwhile is FULFILLMENT_CAPACITY_EXHAUSTED with the location."""
        lines = [
            inventory_pb.StockLine(
                sku=sku,
                quantity=units,
                location_id=location,
                method=(methods or {}).get(sku, {}).get(location, 0),  # type: ignore[arg-type]
            )
            for sku, parts in plan.items()
            for location, units in parts
        ]
        request = inventory_api.ReserveStockRequest(
            owner=f"orders/{order_id}",
            lines=lines,
            ttl=duration_pb2.Duration(seconds=int(ttl.total_seconds())),
            request_id=f"{order_id}:reserve",
        )
        try:
            response = await _call(
                SagaStep.RESERVE_STOCK,
                "INVENTORY",
                self._timeout,
                self._tokens,
                lambda md: self._stub.ReserveStock(request, metadata=md, timeout=self._timeout),
            )
        except StepFailure as failure:
            if failure.reason != "CAPACITY_EXHAUSTED":
                raise
            # The plan saw capacity left, but other orders used it up before this one
            # reserved: the shopper may simply try again (a new plan skips the store).
            location = failure.metadata.get("location_id", "")
            raise StepFailure(
                SagaStep.RESERVE_STOCK,
                FailureKind.REJECTED,
                "FULFILLMENT_CAPACITY_EXHAUSTED",
                f"{location or 'the planned location'} cannot send more orders today; "
                "nothing was charged, place the order again for another source",
                {"location_id": location} if location else {},
            ) from None
        return str(response.reservation.id)

    async def commit(self, order_id: str, reservation_id: str) -> None:
        request = inventory_api.CommitReservationRequest(
            id=reservation_id, request_id=f"{order_id}:commit"
        )
        await _call(
            SagaStep.COMMIT_STOCK,
            "INVENTORY",
            self._timeout,
            self._tokens,
            lambda md: self._stub.CommitReservation(request, metadata=md, timeout=self._timeout),
        )

    async def release(self, reservation_id: str) -> None:
        request = inventory_api.ReleaseReservationRequest(id=reservation_id)
        await _call(
            SagaStep.RESERVE_STOCK,
            "INVENTORY",
            self._timeout,
            self._tokens,
            lambda md: self._stub.ReleaseReservation(request, metadata=md, timeout=self._timeout),
        )

    async def restock(self, order_id: str, sku: str, location_id: str, quantity: int) -> None:
        """Put units of a cancelled order back on hand (a RETURN movement)."""
        request = inventory_api.AdjustStockRequest(
            sku=sku,
            location_id=location_id,
            quantity=quantity,
            reason=inventory_pb.MOVEMENT_REASON_RETURN,
            note=f"order {order_id} cancelled",
            request_id=f"{order_id}:restock:{sku}:{location_id}",
        )
        await _call(
            SagaStep.COMMIT_STOCK,
            "INVENTORY",
            self._timeout,
            self._tokens,
            lambda md: self._stub.AdjustStock(request, metadata=md, timeout=self._timeout),
        )

    async def plan_lines(
        self,
        lines: list[tuple[str, int]],
        *,
        pickup_location_id: str | None,
        delivery_point: tuple[float, float],
        same_day: bool,
    ) -> tuple[Plan, PlanMethods]:
        """The plan inventory proposes (complete or not) and its allocation methods."""
        request = inventory_api.PlanFulfillmentRequest(
            lines=[inventory_pb.StockLine(sku=sku, quantity=units) for sku, units in lines],
            same_day=same_day,
        )
        if pickup_location_id:
            request.pickup_location_id = pickup_location_id
        else:
            request.delivery_point.latitude, request.delivery_point.longitude = delivery_point
        response = await _call(
            SagaStep.PLAN_FULFILLMENT,
            "INVENTORY",
            self._timeout,
            self._tokens,
            lambda md: self._stub.PlanFulfillment(request, metadata=md, timeout=self._timeout),
        )
        plan: Plan = {}
        methods: PlanMethods = {}
        for allocation in response.plan.allocations:
            plan.setdefault(allocation.sku, []).append(
                (allocation.location_id, int(allocation.quantity))
            )
            methods.setdefault(allocation.sku, {})[allocation.location_id] = int(allocation.method)
        return plan, methods

    async def reserve_and_commit(
        self,
        key: str,
        owner: str,
        parts: list[tuple[str, str, int]],
        ttl: timedelta,
        methods: PlanMethods | None = None,
    ) -> None:
        """Reserve (sku, location, units) and commit the reservation at once, both keyed by
        ``key`` (a retry repeats them harmlessly); each line with its allocation method, so
        a store's daily capacity counts re-sourced parcels too."""
        request = inventory_api.ReserveStockRequest(
            owner=owner,
            lines=[
                inventory_pb.StockLine(
                    sku=sku,
                    quantity=units,
                    location_id=location,
                    method=(methods or {}).get(sku, {}).get(location, 0),  # type: ignore[arg-type]
                )
                for sku, location, units in parts
            ],
            ttl=duration_pb2.Duration(seconds=int(ttl.total_seconds())),
            request_id=f"{key}:reserve",
        )
        response = await _call(
            SagaStep.RESERVE_STOCK,
            "INVENTORY",
            self._timeout,
            self._tokens,
            lambda md: self._stub.ReserveStock(request, metadata=md, timeout=self._timeout),
        )
        commit = inventory_api.CommitReservationRequest(
            id=response.reservation.id, request_id=f"{key}:commit"
        )
        await _call(
            SagaStep.COMMIT_STOCK,
            "INVENTORY",
            self._timeout,
            self._tokens,
            lambda md: self._stub.CommitReservation(commit, metadata=md, timeout=self._timeout),
        )

    async def return_stock(
        self, request_id: str, sku: str, location_id: str, quantity: int, note: str
    ) -> None:
        """Put units back on hand at a location (a RETURN movement): an expired pickup's
        goods, or a customer's return at the store that received it."""
        request = inventory_api.AdjustStockRequest(
            sku=sku,
            location_id=location_id,
            quantity=quantity,
            reason=inventory_pb.MOVEMENT_REASON_RETURN,
            note=note,
            request_id=request_id,
        )
        await _call(
            SagaStep.COMMIT_STOCK,
            "INVENTORY",
            self._timeout,
            self._tokens,
            lambda md: self._stub.AdjustStock(request, metadata=md, timeout=self._timeout),
        )

    async def knows_location(self, location_id: str) -> bool:
        """Whether inventory has the location (a return is restocked there): a refusal
        (not found, not a location id) is False; no answer raises StepUnavailable."""
        request = inventory_api.GetLocationRequest(id=location_id)
        try:
            await _call(
                SagaStep.COMMIT_STOCK,
                "INVENTORY",
                self._timeout,
                self._tokens,
                lambda md: self._stub.GetLocation(request, metadata=md, timeout=self._timeout),
            )
        except StepFailure:
            return False
        return True


class LoyaltyClient:
    """The customer service's loyalty ledger, as the order service (scope loyalty:write):
    points held for a checkout, redeemed at its confirmation, given back on compensation."""

    def __init__(self, channel: grpc.aio.Channel, tokens: TokenSource, timeout: float) -> None:
        self._stub = loyalty_grpc.LoyaltyServiceStub(channel)
        self._tokens = tokens
        self._timeout = timeout

    async def reserve(
        self, customer_id: str, order_id: str, points: int, channel: int, store_id: str | None
    ) -> str:
        """Hold ``points`` for the order (INSUFFICIENT_POINTS rather than overdraw); the same
        order asking again gets the same hold."""
        request = loyalty_api.ReservePointsRequest(
            customer_id=customer_id,
            points=points,
            reference=f"orders/{order_id}",
            channel=channel,  # type: ignore[arg-type]
            store_id=store_id or "",
            request_id=f"{order_id}:points",
        )
        response = await _call(
            SagaStep.RESERVE_LOYALTY,
            "CUSTOMER",
            self._timeout,
            self._tokens,
            lambda md: self._stub.ReservePoints(request, metadata=md, timeout=self._timeout),
        )
        return str(response.reservation.id)

    async def commit(self, customer_id: str, order_id: str, reservation_id: str) -> None:
        request = loyalty_api.CommitReservationRequest(
            customer_id=customer_id,
            reservation_id=reservation_id,
            request_id=f"{order_id}:points-commit",
        )
        await _call(
            SagaStep.COMMIT_REDEMPTIONS,
            "CUSTOMER",
            self._timeout,
            self._tokens,
            lambda md: self._stub.CommitReservation(request, metadata=md, timeout=self._timeout),
        )

    async def credit(self, customer_id: str, order_id: str, points: int, reason: str) -> None:
        """Give redeemed points back (an order cancelled after its points were redeemed):
        an adjustment, once per order."""
        request = loyalty_api.AdjustPointsRequest(
            customer_id=customer_id,
            points=points,
            reason=reason,
            request_id=f"{order_id}:points-return",
        )
        await _call(
            SagaStep.FINISH,
            "CUSTOMER",
            self._timeout,
            self._tokens,
            lambda md: self._stub.AdjustPoints(request, metadata=md, timeout=self._timeout),
        )

    async def release(self, customer_id: str, reservation_id: str) -> None:
        """Give the held points back (releasing twice is a no-op)."""
        request = loyalty_api.ReleaseReservationRequest(
            customer_id=customer_id, reservation_id=reservation_id
        )
        await _call(
            SagaStep.RESERVE_LOYALTY,
            "CUSTOMER",
            self._timeout,
            self._tokens,
            lambda md: self._stub.ReleaseReservation(request, metadata=md, timeout=self._timeout),
        )


def frozen_cart(cart: cart_pb.Cart) -> FrozenCart:
    fulfillment = None
    if cart.fulfillment.method:
        address = None
        if cart.fulfillment.HasField("address"):
            address = MessageToDict(cart.fulfillment.address)
        fulfillment = Fulfillment(
            FulfillmentMethod(cart.fulfillment.method),
            cart.fulfillment.store_id or None,
            address,
        )
    return FrozenCart(
        cart_id=cart.id,
        etag=cart.etag,
        customer_id=cart.customer_id or None,
        active=cart.status == cart_pb.CART_STATUS_ACTIVE,
        channel=int(cart.channel),
        store_id=cart.store_id or None,
        currency=cart.currency_code or "JPY",
        lines=tuple(
            OrderLine(
                sku=li.sku,
                product_id=li.product_id,
                title=li.title,
                quantity=li.quantity,
                unit_price=_money(li.unit_price),
                discount=_money(li.discount),
                total=_money(li.total),
            )
            for li in cart.line_items
        ),
        fulfillment=fulfillment,
        totals=Totals(
            subtotal=_money(cart.totals.subtotal),
            discount=_money(cart.totals.discount),
            shipping=_money(cart.totals.shipping),
            total=_money(cart.totals.total),
            loyalty_points=int(cart.totals.loyalty_points),
        ),
        has_price_changes=cart.has_price_changes,
        all_offered=all(li.offered for li in cart.line_items),
        contact_email=cart.contact_email or None,
        # A code entered but no longer applying still takes the reservation step: it is
        # what tells the saga that a personal code was used meanwhile (CODE_ALREADY_USED).
        redeems=bool(cart.discounts) or bool(cart.promotion_codes),
    )
