"""Fulfilment use cases: fulfilments created when an order is placed, click & collect
(ready, picked up, hold expired), deliveries (shipped, out for delivery, delivered),
captures when goods leave, the sweeper, and watching an order.

How money follows goods, crash-safe: a change that makes goods leave (shipped, picked up,
handed over) writes the fulfilment with its capture DUE in the same transaction as its
event. The capture is then taken at once with the fulfilment's idempotency key
(``<fulfilment>:capture``); when the provider does not answer, or the process dies, the
row's ``action_at`` brings the sweeper to take it again later. So the fact that goods left
is never refused because the payment provider is slow, and a capture is never lost or
doubled. The same sweeper expires pickups whose hold ran out.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import secrets
import uuid
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from google.protobuf.message import Message

from services.order import fulfilment_events as events
from services.order.domain.fulfilments import (
    CaptureState,
    FulfillmentLine,
    FulfillmentPolicy,
    FulfillmentStatus,
    FulfillmentType,
    Fulfilment,
    PickupCodes,
    allocate,
    check_delivery_status,
    check_missing,
    check_pickup_code,
    check_shipment,
    line_weight,
    order_after,
    split,
)
from services.order.domain.geo import delivery_point
from services.order.domain.orders import (
    WRITE_SCOPE,
    Order,
    OrderStatus,
    OrderTokens,
    PaymentMethod,
    order_not_found,
)
from services.order.domain.payments import PaymentProvider, PaymentUnavailable
from services.order.domain.saga import StepFailure, StepUnavailable
from services.order.store.fulfilments import FulfilmentStore
from services.order.store.orders import OrderStore
from services.order.upstream import InventoryClient
from services.order.usecases.orders import may_read
from tenpo.kit.auth import Principal, PrincipalKind
from tenpo.kit.db import Database, UnitOfWork
from tenpo.kit.errors import (
    Aborted,
    DomainError,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    Unavailable,
)
from tenpo.kit.idempotency import check_request_id

log = logging.getLogger(__name__)

_FINAL = frozenset({OrderStatus.COMPLETED, OrderStatus.CANCELLED, OrderStatus.FAILED})


@dataclass(frozen=True)
class OrderView:
    """An order with its fulfilments, and whether the viewer is its customer (who alone
    sees pickup codes)."""

    order: Order
    fulfilments: tuple[Fulfilment, ...]
    owner_view: bool = False
    #: Fulfilment → its pickup code, in the owner's view only.
    pickup_codes: Mapping[uuid.UUID, str] = field(default_factory=dict)


def fulfilment_not_found() -> NotFound:
    return NotFound("no such fulfilment", reason="FULFILLMENT_NOT_FOUND")


def may_work_on(principal: Principal, fulfilment: Fulfilment, *, service: bool = False) -> bool:
    """Staff anywhere; a store's device only on the fulfilments of its own store; a service
    (the carrier webhook) only where ``service`` allows it."""
    if not principal.has_scope(WRITE_SCOPE):
        return False
    if principal.kind is PrincipalKind.STAFF:
        return True
    if principal.kind is PrincipalKind.DEVICE:
        return bool(principal.store_id) and principal.store_id == fulfilment.store_id
    return service and principal.kind is PrincipalKind.SERVICE


def _now() -> datetime:
    return datetime.now(UTC)


class Fulfilments:
    def __init__(
        self,
        db: Database,
        inventory: InventoryClient,
        payments: Mapping[PaymentMethod, PaymentProvider],
        policy: FulfillmentPolicy,
        *,
        payment_timeout_seconds: float,
        codes: PickupCodes,
        tokens: OrderTokens | None = None,
        lease: timedelta = timedelta(seconds=30),
        watch_poll_seconds: float = 1.0,
    ) -> None:
        self.db = db
        self.codes = codes
        #: Guests' order tokens (WatchOrder with one); None: no guest watches.
        self.tokens = tokens
        self.inventory = inventory
        self.payments = payments
        self.policy = policy
        self.payment_timeout_seconds = payment_timeout_seconds
        self.lease = lease
        self.watch_poll_seconds = watch_poll_seconds
        #: Re-sourced units are reserved and committed at once; the hold only has to
        #: outlive those two calls.
        self.resource_hold = timedelta(minutes=5)

    # ------------------------------------------------------------------ placement

    async def on_placed(self, uow: UnitOfWork, order: Order) -> None:
        """Split a just-placed order into its fulfilments, in the saga's last transaction
        (so no placed order lacks them). Carry-out is handed over at once: its capture is
        due (the sweeper takes it) and such an order is completed right away."""
        plan = json.loads(order.refs.get("plan", "{}"))
        now = _now()
        items = split(order, plan, now, self.policy)
        store = FulfilmentStore(uow.session)
        await store.insert(items, now)
        after = order_after(order, items)
        if after != order:
            await store.save_order_progress(after)
            for event in events.order_progress(order, after):
                uow.add_event(event)

    # ------------------------------------------------------------------ reading

    async def view(self, principal: Principal, order: Order, *, guest: bool = False) -> OrderView:
        """``guest``: shown to the guest who placed it (her token was checked)."""
        async with self.db.unit_of_work() as uow:
            items = await FulfilmentStore(uow.session).of_order(order.id)
        return self._view(principal, order, items, guest=guest)

    async def views(self, principal: Principal, orders: Sequence[Order]) -> list[OrderView]:
        async with self.db.unit_of_work() as uow:
            found = await FulfilmentStore(uow.session).of_orders(o.id for o in orders)
        return [self._view(principal, o, found.get(o.id, [])) for o in orders]

    def _view(
        self, principal: Principal, order: Order, items: list[Fulfilment], *, guest: bool = False
    ) -> OrderView:
        owner = (guest and order.is_guest) or (
            principal.kind is PrincipalKind.CUSTOMER and principal.subject == order.customer_id
        )
        codes: dict[uuid.UUID, str] = {}
        if owner:
            for f in items:
                code = (
                    self.codes.shown(f) if f.status is FulfillmentStatus.READY_FOR_PICKUP else None
                )
                if code is not None:
                    codes[f.id] = code
        return OrderView(order, tuple(items), owner_view=owner, pickup_codes=codes)

    async def rekey_legacy_codes(self) -> int:
        """Pickup codes stored in plain text before they were keyed (migration 0005 kept
        them aside): each becomes its keyed digest and the plain text goes. Run at start,
        before serving; idempotent, safe with replicas starting together."""
        async with self.db.unit_of_work() as uow:
            changed = await FulfilmentStore(uow.session).rekey_legacy_codes(self.codes.digest)
            await uow.commit()
        return changed

    async def watch(
        self, principal: Principal, order_id: uuid.UUID, order_token: str = ""
    ) -> AsyncIterator[OrderView]:
        """The order now, then at every change; with ``order_token``, a guest's order for
        its guest (as GetOrder). Polls a one-row watermark (the order's and its
        fulfilments' update times) rather than following events: it sees exactly what was
        committed, on any replica, with no subscription per watcher to manage."""
        async with self.db.unit_of_work() as uow:
            saga = await OrderStore(uow.session).get(order_id)
        # Someone else's order answers exactly like a missing one, a wrong token too.
        if saga is None:
            raise order_not_found()
        guest = bool(order_token)
        if guest:
            if self.tokens is None or not self.tokens.opens(saga.order, order_token):
                raise order_not_found()
        elif not may_read(principal, saga.order):
            raise order_not_found()
        mark: object = None
        while True:
            async with self.db.unit_of_work() as uow:
                current = await FulfilmentStore(uow.session).watermark(order_id)
                if current != mark:
                    saga = await OrderStore(uow.session).get(order_id)
                    items = await FulfilmentStore(uow.session).of_order(order_id)
            if current != mark:
                mark = current
                assert saga is not None
                view = self._view(principal, saga.order, items, guest=guest)
                yield view
                if view.order.status in _FINAL and not any(
                    f.capture_state is CaptureState.DUE for f in items
                ):
                    return
            await asyncio.sleep(self.watch_poll_seconds)

    # ------------------------------------------------------------------ changes

    async def mark_ready(
        self, principal: Principal, order_id: uuid.UUID, fulfilment_id: uuid.UUID, request_id: str
    ) -> OrderView:
        check_request_id(request_id)
        hold = self.policy.pickup_hold

        def change(f: Fulfilment, now: datetime) -> Fulfilment:
            _require_type(f, FulfillmentType.CLICK_AND_COLLECT)
            return f.mark_ready(now, hold, self.codes)

        return await self._change(principal, order_id, fulfilment_id, change, events.ready)

    async def confirm_pickup(
        self,
        principal: Principal,
        order_id: uuid.UUID,
        fulfilment_id: uuid.UUID,
        code: str,
        request_id: str,
    ) -> OrderView:
        check_request_id(request_id)
        code = check_pickup_code(code)
        wrong = False

        def change(f: Fulfilment, now: datetime) -> Fulfilment:
            nonlocal wrong
            _require_type(f, FulfillmentType.CLICK_AND_COLLECT)
            if f.code_locked(now):
                raise ResourceExhausted(
                    "too many wrong pickup codes; try again later",
                    reason="PICKUP_CODE_LOCKED",
                )
            if f.status not in (FulfillmentStatus.READY_FOR_PICKUP, FulfillmentStatus.PICKED_UP):
                return f.pick_up()  # refuses with the state conflict
            if not f.code_matches(code, self.codes):
                # Counted in the same transaction, under the order's lock, as the check
                # of the lock above: concurrent guesses cannot slip past the limit.
                wrong = True
                return f.code_refused(now)
            return f.pick_up()

        def event(order: Order, f: Fulfilment) -> Message | None:
            return events.picked_up(order, f) if f.status is FulfillmentStatus.PICKED_UP else None

        view = await self._change(principal, order_id, fulfilment_id, change, event)
        if wrong:
            raise FailedPrecondition(
                "the pickup code does not match", reason="PICKUP_CODE_MISMATCH"
            )
        return view

    async def ship(
        self,
        principal: Principal,
        order_id: uuid.UUID,
        fulfilment_id: uuid.UUID,
        carrier: str,
        tracking_number: str,
        request_id: str,
    ) -> OrderView:
        check_request_id(request_id)
        check_shipment(carrier, tracking_number)

        def change(f: Fulfilment, now: datetime) -> Fulfilment:
            _require_type(f, FulfillmentType.DELIVERY, FulfillmentType.SAME_DAY)
            return f.ship(carrier, tracking_number, now)

        return await self._change(principal, order_id, fulfilment_id, change, events.shipped)

    async def update_delivery(
        self,
        principal: Principal,
        order_id: uuid.UUID,
        fulfilment_id: uuid.UUID,
        status: FulfillmentStatus | None,
        request_id: str,
    ) -> OrderView:
        check_request_id(request_id)
        target = check_delivery_status(status)

        def change(f: Fulfilment, now: datetime) -> Fulfilment:
            _require_type(f, FulfillmentType.DELIVERY, FulfillmentType.SAME_DAY)
            return f.advance_delivery(target)

        def event(order: Order, f: Fulfilment) -> Message | None:
            return events.delivered(order, f) if f.status is FulfillmentStatus.DELIVERED else None

        return await self._change(principal, order_id, fulfilment_id, change, event, service=True)

    async def list_for_store(
        self,
        principal: Principal,
        store_id: str,
        after: tuple[datetime, uuid.UUID] | None,
        limit: int,
    ) -> list[tuple[Fulfilment, str, str]]:
        """A store's work list: its devices see their own store only (another store's is
        FULFILLMENT_NOT_FOUND-like: empty is not enough, a device must not probe others)."""
        self.require_store_reader(principal, store_id)
        async with self.db.unit_of_work() as uow:
            return await FulfilmentStore(uow.session).open_at_store(store_id, after, limit)

    @staticmethod
    def require_store_reader(principal: Principal, store_id: str) -> None:
        """A store's work is read by its own devices and staff (the access rule admitted
        only those kinds, with the scopes)."""
        if not store_id:
            raise InvalidArgument(
                "name the store",
                reason="STORE_ID_REQUIRED",
                field_violations=[FieldViolation("store_id", "required")],
            )
        if principal.kind is PrincipalKind.DEVICE and principal.store_id != store_id:
            raise PermissionDenied(
                "a store's devices see only their own store's fulfilments",
                reason="STORE_MISMATCH",
            )

    async def pack(
        self, principal: Principal, order_id: uuid.UUID, fulfilment_id: uuid.UUID, request_id: str
    ) -> OrderView:
        check_request_id(request_id)
        return await self._change(
            principal, order_id, fulfilment_id, lambda f, now: f.packed(), lambda o, f: None
        )

    async def pick(
        self,
        principal: Principal,
        order_id: uuid.UUID,
        fulfilment_id: uuid.UUID,
        missing: list[FulfillmentLine],
        request_id: str,
    ) -> OrderView:
        """Picked, with the units not found re-sourced: inventory plans them again, units
        planned at another location are reserved and committed there (a new fulfilment),
        units found nowhere are cancelled (a cancelled fulfilment, never captured). The
        inventory calls come first (keyed by the fulfilment and the plan, so a retry repeats
        them harmlessly); if inventory does not answer, nothing changes (UNAVAILABLE)."""
        check_request_id(request_id)
        async with self.db.unit_of_work() as uow:
            saga = await OrderStore(uow.session).get(order_id)
            fulfilment = await FulfilmentStore(uow.session).get(fulfilment_id)
        if saga is None or fulfilment is None or fulfilment.order_id != order_id:
            raise order_not_found() if saga is None else fulfilment_not_found()
        if not may_work_on(principal, fulfilment):
            raise fulfilment_not_found()
        kept, lost = check_missing(fulfilment, missing)
        if fulfilment.status is FulfillmentStatus.PICKED and not lost:
            return await self._load_view(principal, order_id)
        if fulfilment.status is not FulfillmentStatus.PREPARING:
            fulfilment.picked(kept, fulfilment.amount)  # refuses with the state conflict
        moved: dict[str, list[tuple[str, int]]] = {}
        if lost:
            moved = await self._resource(saga.order, fulfilment, lost)
        order = saga.order
        resourced = {
            location: tuple(FulfillmentLine(sku, units) for sku, units in parts)
            for location, parts in _by_location(moved).items()
        }
        placed_units = {sku: sum(u for _, u in parts) for sku, parts in moved.items()}
        nowhere = tuple(
            FulfillmentLine(line.sku, line.quantity - placed_units.get(line.sku, 0))
            for line in lost
            if line.quantity > placed_units.get(line.sku, 0)
        )
        groups = [kept, *resourced.values(), nowhere]
        amounts = allocate(fulfilment.amount, [line_weight(order, g) for g in groups])
        async with self.db.unit_of_work() as uow:
            items = await FulfilmentStore(uow.session).of_order(order_id)
        others = [f for f in items if f.id != fulfilment.id]
        if (
            not kept
            and not resourced
            and all(f.status is FulfillmentStatus.CANCELLED for f in others)
        ):
            # Nothing of the order is left to capture: release the whole hold first.
            await self._void(order)
        async with self.db.unit_of_work() as uow:
            store = FulfilmentStore(uow.session)
            await store.lock_order(order_id)
            current = await store.get(fulfilment_id)
            saga = await OrderStore(uow.session).get(order_id)
            assert current is not None
            assert saga is not None
            if current != fulfilment:
                raise Aborted(
                    "the fulfilment changed meanwhile; look again", reason="FULFILLMENT_CHANGED"
                )
            now = _now()
            items = await store.of_order(order_id)
            seq = len(items)
            derived = []
            for (location, lines), amount in zip(resourced.items(), amounts[1:-1], strict=True):
                seq += 1
                derived.append(fulfilment.derived(seq, order.number, location, lines, amount))
            if kept:
                changed = fulfilment.picked(kept, amounts[0])
                if nowhere:
                    seq += 1
                    derived.append(
                        fulfilment.derived(
                            seq,
                            order.number,
                            fulfilment.location_id,
                            nowhere,
                            amounts[-1],
                            cancelled=True,
                        )
                    )
            else:
                changed = fulfilment.not_found(nowhere, amounts[0] + amounts[-1])
            await store.save(changed, now)
            await store.insert(derived, now)
            # The plan follows the stock: a later cancellation restocks where the units
            # really were taken from.
            plan = _moved_plan(saga.order, fulfilment, lost, moved)
            progressed = order_after(
                saga.order.with_ref("plan", json.dumps(plan)),
                [changed if f.id == changed.id else f for f in items] + derived,
            )
            await store.save_order_progress(progressed)
            for event in events.order_progress(saga.order, progressed):
                uow.add_event(event)
            await uow.commit()
        return await self._load_view(principal, order_id)

    async def _resource(
        self, order: Order, fulfilment: Fulfilment, lost: tuple[FulfillmentLine, ...]
    ) -> dict[str, list[tuple[str, int]]]:
        """SKU → [(location, units)] of the lost units placed elsewhere (reserved and
        committed there); what is missing from it was found nowhere."""
        pickup = (
            fulfilment.store_id if fulfilment.type is FulfillmentType.CLICK_AND_COLLECT else None
        )
        address = order.fulfillment.address if order.fulfillment else None
        try:
            plan, methods = await self.inventory.plan_lines(
                [(line.sku, line.quantity) for line in lost],
                pickup_location_id=pickup,
                delivery_point=delivery_point(address),
                same_day=fulfilment.type is FulfillmentType.SAME_DAY,
            )
            # Never the shelf the units were just not found on.
            elsewhere = {
                sku: [(loc, units) for loc, units in parts if loc != fulfilment.location_id]
                for sku, parts in plan.items()
            }
            elsewhere = {sku: parts for sku, parts in elsewhere.items() if parts}
            if elsewhere:
                parts = [
                    (sku, loc, units) for sku, items in elsewhere.items() for loc, units in items
                ]
                digest = hashlib.sha256(json.dumps(sorted(parts)).encode()).hexdigest()[:16]
                await self.inventory.reserve_and_commit(
                    f"{fulfilment.id}:resource:{digest}",
                    order.owner,
                    parts,
                    self.resource_hold,
                    methods,
                )
        except StepUnavailable:
            raise Unavailable(
                "inventory did not answer; the pick was not recorded, try again",
                reason="INVENTORY_UNAVAILABLE",
            ) from None
        except StepFailure:
            # Taken by someone else between the plan and the reservation (stock, or the
            # store's daily capacity): found nowhere.
            return {}
        return elsewhere

    async def _change(
        self,
        principal: Principal,
        order_id: uuid.UUID,
        fulfilment_id: uuid.UUID,
        change: Callable[[Fulfilment, datetime], Fulfilment],
        event: Callable[[Order, Fulfilment], Message | None],
        *,
        service: bool = False,
    ) -> OrderView:
        """One fulfilment change and the order progress it makes, in one transaction under
        the order's lock; then the capture it made due, if any."""
        async with self.db.unit_of_work() as uow:
            store = FulfilmentStore(uow.session)
            await store.lock_order(order_id)
            saga = await OrderStore(uow.session).get(order_id)
            fulfilment = await store.get(fulfilment_id)
            if saga is None or fulfilment is None or fulfilment.order_id != order_id:
                raise order_not_found() if saga is None else fulfilment_not_found()
            if not may_work_on(principal, fulfilment, service=service):
                raise fulfilment_not_found()
            order = saga.order
            if order.status is not OrderStatus.PLACED and not fulfilment.done:
                raise FailedPrecondition(
                    f"a {order.status.name.lower()} order is not fulfilled",
                    reason="ORDER_NOT_FULFILLABLE",
                    metadata={"status": order.status.name},
                )
            now = _now()
            updated = change(fulfilment, now)
            if updated != fulfilment:
                await self._record(uow, order, fulfilment, updated, now, event)
                await uow.commit()
        if updated.capture_state is CaptureState.DUE:
            await self._capture_quietly(updated.id)
        return await self._load_view(principal, order_id)

    async def _record(
        self,
        uow: UnitOfWork,
        order: Order,
        before: Fulfilment,
        after: Fulfilment,
        now: datetime,
        event: Callable[[Order, Fulfilment], Message | None],
    ) -> None:
        store = FulfilmentStore(uow.session)
        await store.save(after, now)
        message = event(order, after)
        if message is not None:
            uow.add_event(message)
        items = [after if f.id == after.id else f for f in await store.of_order(order.id)]
        progressed = order_after(order, items)
        if progressed != order:
            await store.save_order_progress(progressed)
            for progress in events.order_progress(order, progressed):
                uow.add_event(progress)

    async def _load_view(self, principal: Principal, order_id: uuid.UUID) -> OrderView:
        async with self.db.unit_of_work() as uow:
            saga = await OrderStore(uow.session).get(order_id)
            items = await FulfilmentStore(uow.session).of_order(order_id)
        assert saga is not None
        return self._view(principal, saga.order, items)

    # ------------------------------------------------------------------ money

    async def capture(self, fulfilment_id: uuid.UUID) -> None:
        """Take a due capture (idempotent: keyed by the fulfilment), then record it with
        PaymentCaptured. PaymentUnavailable/TimeoutError when the provider did not answer:
        the capture stays due."""
        async with self.db.unit_of_work() as uow:
            fulfilment = await FulfilmentStore(uow.session).get(fulfilment_id)
            saga = await OrderStore(uow.session).get(fulfilment.order_id) if fulfilment else None
        if fulfilment is None or saga is None or fulfilment.capture_state is not CaptureState.DUE:
            return
        order = saga.order
        async with asyncio.timeout(self.payment_timeout_seconds):
            await self.payments[order.payment_method].capture(
                f"{fulfilment.id}:capture",
                authorization_key=f"{order.id}:authorize",
                amount=fulfilment.amount,
            )
        async with self.db.unit_of_work() as uow:
            store = FulfilmentStore(uow.session)
            await store.lock_order(order.id)
            current = await store.get(fulfilment_id)
            saga = await OrderStore(uow.session).get(order.id)
            assert current is not None
            assert saga is not None
            if current.capture_state is not CaptureState.DUE:
                return  # someone else recorded it meanwhile
            await self._record(
                uow, saga.order, current, current.captured(), _now(), events.captured
            )
            await uow.commit()

    async def _void(self, order: Order) -> None:
        """Release the order's whole authorization (keyed like CancelOrder's void)."""
        try:
            async with asyncio.timeout(self.payment_timeout_seconds):
                await self.payments[order.payment_method].void(
                    f"{order.id}:void", authorization_key=f"{order.id}:authorize"
                )
        except (PaymentUnavailable, TimeoutError):
            raise Unavailable(
                "the payment provider did not answer; try again", reason="PAYMENT_UNAVAILABLE"
            ) from None

    async def _capture_quietly(self, fulfilment_id: uuid.UUID) -> None:
        try:
            await self.capture(fulfilment_id)
        except (PaymentUnavailable, TimeoutError, DomainError, OSError) as error:
            # The goods left and that is recorded; the capture stays due for the sweeper.
            log.warning(
                "capture left to the sweeper",
                extra={"fulfillment_id": str(fulfilment_id), "error": type(error).__name__},
            )

    async def expire_pickup(self, fulfilment_id: uuid.UUID) -> bool:
        """Cancel a ready pickup whose hold ran out: its stock goes back on hand at its
        location (a RETURN movement), the payment is voided when nothing of the order is
        left to capture, PickupExpired. The calls are idempotent (keyed by the
        fulfilment): after a failure or a crash the sweeper takes them again."""
        async with self.db.unit_of_work() as uow:
            store = FulfilmentStore(uow.session)
            fulfilment = await store.get(fulfilment_id)
            if fulfilment is None:
                return False
            saga = await OrderStore(uow.session).get(fulfilment.order_id)
            others = await store.of_order(fulfilment.order_id)
        now = _now()
        if (
            saga is None
            or fulfilment.status is not FulfillmentStatus.READY_FOR_PICKUP
            or fulfilment.hold_until is None
            or fulfilment.hold_until > now
        ):
            return False
        order = saga.order
        try:
            for line in fulfilment.lines:
                await self.inventory.return_stock(
                    f"{fulfilment.id}:expire:{line.sku}",
                    line.sku,
                    fulfilment.location_id,
                    line.quantity,
                    f"pickup {fulfilment.number} expired",
                )
        except (StepUnavailable, StepFailure) as error:
            raise Unavailable(
                "inventory did not take the expired pickup's stock back",
                reason="INVENTORY_UNAVAILABLE",
            ) from error
        rest = [f for f in others if f.id != fulfilment.id]
        if all(f.status is FulfillmentStatus.CANCELLED for f in rest):
            # Nothing of the order will ever be captured: release the whole hold.
            await self._void(order)
        async with self.db.unit_of_work() as uow:
            store = FulfilmentStore(uow.session)
            await store.lock_order(order.id)
            current = await store.get(fulfilment_id)
            saga = await OrderStore(uow.session).get(order.id)
            assert current is not None
            assert saga is not None
            if current.status is not FulfillmentStatus.READY_FOR_PICKUP:
                return False  # picked up at the last second, or expired by another sweeper
            await self._record(
                uow, saga.order, current, current.cancel("PICKUP_EXPIRED"), now, events.expired
            )
            await uow.commit()
        return True

    # ------------------------------------------------------------------ the sweeper

    async def sweep_once(self, batch: int = 20) -> int:
        """Claim fulfilments whose action time came (a capture owed, a hold run out) and do
        what each needs; the number claimed. A failed action is left to the claim's lease:
        after it, a sweeper (this one or another replica's) tries again."""
        async with self.db.unit_of_work() as uow:
            claimed = await FulfilmentStore(uow.session).claim_due(self.lease, batch)
            await uow.commit()
        for fulfilment_id in claimed:
            try:
                async with self.db.unit_of_work() as uow:
                    fulfilment = await FulfilmentStore(uow.session).get(fulfilment_id)
                if fulfilment is None:
                    continue
                if fulfilment.capture_state is CaptureState.DUE:
                    await self.capture(fulfilment_id)
                elif fulfilment.status is FulfillmentStatus.READY_FOR_PICKUP:
                    await self.expire_pickup(fulfilment_id)
            except (PaymentUnavailable, TimeoutError, DomainError, OSError) as error:
                log.warning(
                    "fulfilment sweep will retry",
                    extra={"fulfillment_id": str(fulfilment_id), "error": type(error).__name__},
                )
        return len(claimed)

    async def sweep(self, interval_seconds: float) -> None:
        while True:
            try:
                await self.sweep_once()
            except (DomainError, OSError) as error:
                log.warning("fulfilment sweep skipped", extra={"error": type(error).__name__})
            # Jitter: replicas started together do not sweep in lockstep.
            await asyncio.sleep(interval_seconds * (0.8 + secrets.randbelow(400) / 1000))


def _require_type(fulfilment: Fulfilment, *types: FulfillmentType) -> None:
    if fulfilment.type not in types:
        raise FailedPrecondition(
            f"not possible for a {fulfilment.type.name.lower()} fulfilment",
            reason="FULFILLMENT_TYPE_MISMATCH",
            metadata={"type": fulfilment.type.name},
        )


def _by_location(plan: Mapping[str, list[tuple[str, int]]]) -> dict[str, list[tuple[str, int]]]:
    found: dict[str, list[tuple[str, int]]] = {}
    for sku, parts in plan.items():
        for location, units in parts:
            found.setdefault(location, []).append((sku, units))
    return found


def _moved_plan(
    order: Order,
    fulfilment: Fulfilment,
    lost: tuple[FulfillmentLine, ...],
    moved: Mapping[str, list[tuple[str, int]]],
) -> dict[str, list[tuple[str, int]]]:
    """The order's plan after lost units left ``fulfilment``'s location (for ``moved``
    elsewhere, or nowhere)."""
    plan: dict[str, list[tuple[str, int]]] = {
        sku: [(loc, units) for loc, units in parts]
        for sku, parts in json.loads(order.refs.get("plan", "{}")).items()
    }
    for line in lost:
        remaining = line.quantity
        parts = []
        for loc, units in plan.get(line.sku, []):
            if loc == fulfilment.location_id and remaining:
                taken = min(units, remaining)
                remaining -= taken
                units -= taken
            if units:
                parts.append((loc, units))
        plan[line.sku] = parts + list(moved.get(line.sku, []))
    return plan
