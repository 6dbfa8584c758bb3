"""Checkout use cases: PlaceOrder, the saga runner, and the sweeper that finishes or
compensates sagas whose runner died.

How it stays crash-safe:
- The saga is recorded (one row, keyed by the caller's request_id) before any call goes out,
  and each step is written to the row before it is taken; every step's call is idempotent,
  keyed by the order id. Whoever runs the saga holds a lease on the row.
- A runner that dies leaves the row with a lease that runs out; the sweeper (every replica
  runs one) claims such rows with ``FOR UPDATE SKIP LOCKED`` and runs them on from the
  recorded step: the interrupted step is taken again, then forwards, or backwards through
  the compensations of every step started.
- Before the cart is closed (the confirmation) a failure compensates; after it, the saga
  only goes forwards, retrying until the commits succeed, and PLACED with OrderPlaced is
  written in one transaction: no confirmed order lacks its event.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from google.protobuf.message import Message

from services.order.domain.orders import (
    Order,
    OrderStatus,
    PaymentMethod,
    PaymentState,
    check_cart,
    check_guest_contact,
    check_order_request,
    check_payment,
)
from services.order.domain.payments import PaymentDeclined, PaymentProvider, PaymentUnavailable
from services.order.domain.saga import (
    CONFIRMATION,
    Compensation,
    FailureKind,
    SagaPhase,
    SagaStep,
    StepFailure,
    StepUnavailable,
    compensations,
    confirmed_after,
    holds_nothing,
    next_step,
)
from services.order.events import cancelled_event, placed_event
from services.order.payments.konbini import NUMBER_DIGITS as KONBINI_DIGITS
from services.order.payments.konbini import PAID as KONBINI_PAID
from services.order.payments.konbini import VOIDED as KONBINI_VOIDED
from services.order.payments.konbini import KonbiniPayments
from services.order.store.orders import OrderStore, Saga
from services.order.upstream import CartClient, InventoryClient, LoyaltyClient
from services.order.usecases.saga_policy import LeaseLost, SagaPolicy, failure_error, failure_of
from tenpo.kit.auth import Principal, PrincipalKind
from tenpo.kit.db import Database, UnitOfWork
from tenpo.kit.errors import (
    Aborted,
    DomainError,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
    Unavailable,
)
from tenpo.kit.idempotency import (
    check_request_id,
    idempotency_key,
    request_fingerprint,
    request_id_reused,
)
from tenpo.kit.metrics import CHECKOUTS_FAILED, ORDERS_PLACED, touchpoint
from tenpo.kit.wire import parse_id

log = logging.getLogger(__name__)

#: Test hooks: awaited before each step is taken and after it was taken but before that is
#: written down; raising there stands for a crash at that point.
StepHook = Callable[[uuid.UUID, SagaStep], Awaitable[None]]
#: Called in the transaction that makes an order PLACED (fulfilment: creates the order's
#: fulfilments from its plan, so no placed order lacks them).
PlacedHook = Callable[[UnitOfWork, Order], Awaitable[None]]


class Checkout:
    def __init__(
        self,
        db: Database,
        cart: CartClient,
        inventory: InventoryClient,
        payments: Mapping[PaymentMethod, PaymentProvider],
        policy: SagaPolicy,
        *,
        loyalty: LoyaltyClient | None = None,
        before_step: StepHook | None = None,
        after_step: StepHook | None = None,
    ) -> None:
        self.db = db
        self.cart = cart
        self.inventory = inventory
        self.payments = payments
        self.policy = policy
        #: None: no loyalty ledger to call (a cart with points to redeem is refused).
        self.loyalty = loyalty
        self.before_step = before_step
        self.after_step = after_step
        #: This process's runner name on the leases it takes.
        self.instance = f"order-{secrets.token_hex(6)}"
        #: Sagas run on behalf of callers, by order id (held so they are not
        #: garbage-collected, and so that a retry in this process awaits the run rather
        #: than polling the database).
        self._running: dict[uuid.UUID, asyncio.Future[Saga]] = {}
        self._admission = asyncio.Semaphore(policy.max_concurrent)
        self.on_placed: PlacedHook | None = None

    # ------------------------------------------------------------------ PlaceOrder

    async def place(
        self,
        principal: Principal,
        *,
        cart_id: str,
        cart_etag: str,
        method: PaymentMethod | None,
        card_token: str,
        request_id: str,
        request: Message,
        cart_token: str = "",
        contact_email: str = "",
        contact_phone: str = "",
    ) -> Order:
        """A customer's order of her cart, or a guest's (an anonymous caller, or a store
        device on its own credentials) of a guest cart whose token she shows."""
        guest = principal.kind in (PrincipalKind.ANONYMOUS, PrincipalKind.DEVICE)
        if not guest:
            principal.require_any_kind(PrincipalKind.CUSTOMER)
        parse_id(cart_id, "cart_id")
        check_order_request(cart_etag, request_id, cart_token if guest else None)
        method = check_payment(method, card_token)
        key = idempotency_key(check_request_id(request_id), principal)
        contact: tuple[str | None, str | None] = (None, None)
        if guest:
            contact = check_guest_contact(contact_email, contact_phone)
            # Anonymous callers cannot be told apart: the cart is part of the key.
            key = f"{key}:{cart_id}"
            await self._require_guest_cart(cart_id, cart_token, key)
        fingerprint = request_fingerprint(request)
        order_id = uuid.uuid4()

        async def admitted() -> Order | None:
            async with self._admission:
                return await self._place(
                    principal,
                    cart_id,
                    cart_etag,
                    method,
                    card_token,
                    key,
                    fingerprint,
                    order_id,
                    contact if guest else None,
                )

        # A task of its own: a caller giving up between the insert (committed at once) and
        # the saga's start would leave a recorded saga that nothing runs until its lease
        # ran out and a sweeper found it; shielded, the insert and the start go together.
        placed = await asyncio.shield(asyncio.ensure_future(admitted()))
        if placed is not None:
            return placed
        # Not inserted: a retry of a known request_id, answered without holding a turn.
        return await self._answer_existing(key, fingerprint)

    async def _place(
        self,
        principal: Principal,
        cart_id: str,
        cart_etag: str,
        method: PaymentMethod,
        card_token: str,
        key: str,
        fingerprint: bytes,
        order_id: uuid.UUID,
        guest_contact: tuple[str | None, str | None] | None,
    ) -> Order | None:
        """Record the saga and run it; None when the request_id (or the cart) already had
        one. A guest's order has no customer ("") and her contact from the start."""
        values: dict[str, Any] = dict(
            order_id=order_id,
            customer_id="" if guest_contact is not None else principal.subject,
            contact=guest_contact,
            cart_id=cart_id,
            cart_etag=cart_etag,
            payment_method=method,
            card_token=card_token,
            request_key=key,
            request_hash=fingerprint,
            lease_owner=self.instance,
            lease=self.policy.lease,
        )
        # One statement, committed on its own: the saga is recorded before any call.
        async with self.db.autocommit() as connection:
            inserted = await OrderStore(connection).insert_pending(**values)
        if inserted is None:
            # A retry of an attempt a dependency ended: a new one (see retire_unavailable).
            async with self.db.unit_of_work() as uow:
                store = OrderStore(uow.session)
                if await store.retire_unavailable(key, fingerprint):
                    inserted = await store.insert_pending(**values)
                    if inserted is not None:
                        await uow.commit()
        if inserted is None:
            return None
        return self._answer(await self._run_shielded(order_id, inserted))

    async def _run_shielded(self, order_id: uuid.UUID, saga: Saga | None = None) -> Saga:
        """Run the saga in a task of its own: a caller that gives up (its deadline, a closed
        connection) cancels its wait, not the saga, which runs on to a consistent end; a
        retry learns the outcome."""
        task = asyncio.ensure_future(self.run(order_id, saga))
        self._running[order_id] = task
        task.add_done_callback(lambda _: self._running.pop(order_id, None))
        return await asyncio.shield(task)

    async def _require_guest_cart(self, cart_id: str, cart_token: str, key: str) -> None:
        """The guest holds the cart: its token opens it (checked by the cart service). With
        the cart service down, a retry of a recorded request goes on to its answer (its
        fingerprint holds the token the first call proved), never "nothing was ordered"."""
        try:
            held = await self.cart.holds_guest_cart(cart_id, cart_token)
        except StepUnavailable:
            async with self.db.autocommit() as connection:
                if await OrderStore(connection).by_request_key(key) is not None:
                    return
            raise Unavailable(
                "the cart service did not answer; nothing was ordered, try again shortly",
                reason="CART_UNAVAILABLE",
            ) from None
        if not held:
            raise NotFound("no such cart", reason="CART_NOT_FOUND")

    async def _answer_existing(self, key: str, fingerprint: bytes) -> Order:
        """A retry (maybe concurrent) of a request_id: the first request's answer, once
        its saga is done (or as it stands when the wait runs out)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.policy.wait_seconds
        while True:
            async with self.db.autocommit() as connection:
                saga = await OrderStore(connection).by_request_key(key)
            if saga is None:
                # Not this request's row: the cart's checkout under another request_id.
                raise Aborted(
                    "this cart is being checked out already; look at its orders, or retry "
                    "once that checkout is over",
                    reason="CHECKOUT_IN_PROGRESS",
                )
            if saga.request_hash != fingerprint:
                raise request_id_reused()
            if saga.phase is SagaPhase.DONE or loop.time() >= deadline:
                return self._answer(saga)
            running = self._running.get(saga.order.id)
            if running is None:
                # Run by another replica (or the sweeper): its row tells when it is done.
                await asyncio.sleep(self.policy.poll_seconds)
                continue
            # However the run ends (done, waiting, or a bug logged by its owner), the row is
            # read again: the answer is always the stored one.
            with contextlib.suppress(Exception):
                async with asyncio.timeout(max(deadline - loop.time(), 0)):
                    await asyncio.shield(running)

    def _answer(self, saga: Saga) -> Order:
        order = saga.order
        if order.status is OrderStatus.FAILED or saga.phase is SagaPhase.COMPENSATING:
            # Compensating: the failure is decided; what is still held is released in the
            # background (and expires on its own meanwhile).
            raise failure_error(
                order.failure_reason,
                saga.failure_kind,
                saga.failure_message,
                saga.failure_metadata,
            )
        if order.status is OrderStatus.PENDING:
            # Still running (waiting for a dependency): the sweeper finishes it; the caller
            # retries with the same request_id to learn how.
            raise Unavailable(
                "the checkout is waiting for a service that did not answer; retry with the "
                "same request_id to learn its outcome",
                reason="ORDER_PENDING",
                metadata={"order_id": str(order.id)},
            )
        return order

    # ------------------------------------------------------------------ the saga

    async def run(self, order_id: uuid.UUID, saga: Saga | None = None) -> Saga:
        """Run the saga leased to this instance until it is done or must wait (``saga``:
        as just recorded, not read again)."""
        if saga is None:
            saga = await self._load(order_id)
        try:
            if saga.order.status is OrderStatus.AWAITING_PAYMENT:
                saga = await self._settle_konbini(saga)
            while saga.phase is not SagaPhase.DONE:
                if saga.phase is SagaPhase.FORWARD:
                    saga = await self._forward(saga)
                else:
                    saga = await self._compensate(saga)
        except _Wait as wait:
            log.info(
                "saga waits for a dependency",
                extra={"order_id": str(order_id), "step": saga.step.name, "reason": wait.reason},
            )
            return await self._load(order_id)
        except LeaseLost:
            log.warning("saga lease lost", extra={"order_id": str(order_id)})
        # As stored (update times included): every answer of this order reads the same.
        return await self._load(order_id)

    async def _load(self, order_id: uuid.UUID) -> Saga:
        async with self.db.autocommit() as connection:
            saga = await OrderStore(connection).get(order_id)
        assert saga is not None
        return saga

    async def _save(
        self,
        saga: Saga,
        order: Order,
        step: SagaStep,
        phase: SagaPhase,
        *,
        keep_card: bool = True,
        failure: tuple[str, str] | None = None,
        failure_metadata: Mapping[str, str] | None = None,
        lease: timedelta | None = None,
        event: Message | None = None,
    ) -> Saga:
        def save(store: OrderStore) -> Awaitable[bool]:
            return store.save(
                order,
                step=step,
                phase=phase,
                lease_owner=self.instance,
                lease=lease or self.policy.lease,
                keep_card=keep_card,
                failure=failure,
                failure_metadata=failure_metadata,
            )

        failed = order.status is OrderStatus.FAILED and saga.order.status is not OrderStatus.FAILED
        if event is None:
            # One UPDATE, atomic by itself (conditional on the lease): committed on its own,
            # one round trip instead of three.
            async with self.db.autocommit() as connection:
                if not await save(OrderStore(connection)):
                    raise LeaseLost
            if failed:
                CHECKOUTS_FAILED.add(
                    1,
                    {"reason": order.failure_reason or "CHECKOUT_FAILED"},
                    meter_provider=self.db.meter_provider,
                )
        else:
            async with self.db.unit_of_work() as uow:
                if not await save(OrderStore(uow.session)):
                    raise LeaseLost
                uow.add_event(event)
                placing = order.status is OrderStatus.PLACED
                if self.on_placed is not None and placing:
                    # The transition to PLACED (card, pay at store, or a konbini payment that
                    # came): its fulfilments are written with OrderPlaced, in one transaction.
                    await self.on_placed(uow, order)
                if placing:
                    uow.count(ORDERS_PLACED, channel=touchpoint(order.channel))
                if failed:
                    uow.count(CHECKOUTS_FAILED, reason=order.failure_reason or "CHECKOUT_FAILED")
                await uow.commit()
        return Saga(
            order=order,
            step=step,
            phase=phase,
            attempts=saga.attempts,
            request_hash=saga.request_hash,
            card_token=saga.card_token if keep_card else None,
            failure_kind=failure[0] if failure else saga.failure_kind,
            failure_message=failure[1] if failure else saga.failure_message,
            failure_metadata=(dict(failure_metadata or {}) if failure else saga.failure_metadata),
        )

    async def _forward(self, saga: Saga) -> Saga:
        """Take the recorded step, then every following one that holds nothing for this
        order (``holds_nothing``: a read, or a step that calls nothing), and write where
        the saga got to — one durable write for them all."""
        step = saga.step
        if step is SagaStep.FINISH and saga.order.awaits_konbini_payment:
            await self._park(saga)
        order = saga.order
        try:
            while True:
                if self.before_step is not None:
                    await self.before_step(order.id, step)
                order = await self._take(step, replace(saga, order=order))
                if self.after_step is not None:
                    await self.after_step(order.id, step)
                if step is SagaStep.FINISH or not holds_nothing(next_step(step), order):
                    break
                step = next_step(step)
        except StepFailure as failure:
            # Where it stands: the failed step, with what the steps before it found.
            saga = replace(saga, order=order, step=step)
            if confirmed_after(step):
                # A commit refused after the confirmation (an expired hold): not something
                # compensation can undo any more; keep retrying and let an operator see it.
                log.error(
                    "a commit after confirmation was refused",
                    extra={"order_id": str(saga.order.id), "reason": failure.reason},
                )
                await self._wait(saga, failure.reason)
            return await self._start_compensation(
                saga, failure.reason, failure.kind, failure.message, failure.metadata
            )
        except StepUnavailable as unavailable:
            saga = replace(saga, order=order, step=step)
            if step >= CONFIRMATION:
                # The cart may have closed already (its answer lost) and the commits must
                # happen: wait and take the step again; the sweeper retries.
                await self._wait(saga, unavailable.reason)
            # Before the confirmation a missing dependency ends the checkout: the customer
            # hears at once and may try again, and nothing stays held meanwhile.
            return await self._start_compensation(
                saga,
                unavailable.reason,
                FailureKind.UNAVAILABLE,
                "a service needed for the checkout did not answer; nothing was charged, "
                "try again shortly",
            )
        if step is SagaStep.FINISH:
            return await self._save(
                saga,
                order,
                step,
                SagaPhase.DONE,
                keep_card=False,
                event=placed_event(order),
            )
        keep_card = step < SagaStep.AUTHORIZE_PAYMENT
        return await self._save(
            saga, order, next_step(step), SagaPhase.FORWARD, keep_card=keep_card
        )

    async def _wait(self, saga: Saga, reason: str) -> None:
        """Leave the saga for a later run (the sweeper's), soon."""
        await self._save(saga, saga.order, saga.step, saga.phase, lease=self.policy.retry_after)
        raise _Wait(reason)

    async def _start_compensation(
        self,
        saga: Saga,
        reason: str,
        kind: FailureKind,
        message: str,
        metadata: Mapping[str, str] | None = None,
    ) -> Saga:
        order = replace(saga.order, failure_reason=reason)
        return await self._save(
            saga,
            order,
            saga.step,
            SagaPhase.COMPENSATING,
            failure=(kind.value, message),
            failure_metadata=metadata,
        )

    async def _take(self, step: SagaStep, saga: Saga) -> Order:
        order = saga.order
        policy = self.policy
        match step:
            case SagaStep.FREEZE_CART:
                cart = await self.cart.read(order.cart_id)
                try:
                    check_cart(
                        cart,
                        customer_id=order.customer_id,
                        etag=order.cart_etag,
                        method=order.payment_method,
                    )
                except DomainError as error:
                    raise failure_of(step, error) from None
                return order.frozen_from(cart)
            case SagaStep.PLAN_FULFILLMENT:
                plan, methods = await self.inventory.plan(order.frozen_cart())
                first = {sku: parts[0][0] for sku, parts in plan.items() if parts}
                return (
                    order.with_locations(first)
                    .with_ref("plan", json.dumps(plan))
                    .with_ref("plan_methods", json.dumps(methods))
                )
            case SagaStep.RESERVE_STOCK:
                reservation = await self._reserve(order)
                return order.with_ref("reservation_id", reservation)
            case SagaStep.RESERVE_REDEMPTIONS:
                if not order.redeems:
                    return order  # no discounts, no codes: nothing to hold
                await self.cart.reserve_redemptions(
                    order.cart_id, order.cart_etag, str(order.id), policy.hold
                )
                return order
            case SagaStep.RESERVE_LOYALTY:
                points = order.totals.loyalty_points
                if not points:
                    return order  # nothing to redeem: nothing to hold
                reservation = await self._loyalty().reserve(
                    order.customer_id, str(order.id), points, order.channel, order.store_id
                )
                return order.with_ref("points_reservation_id", reservation)
            case SagaStep.AUTHORIZE_PAYMENT:
                return await self._authorize(order, saga.card_token or "")
            case SagaStep.CHECKOUT_CART:
                await self.cart.checkout(order.cart_id, order.cart_etag, str(order.id))
                return order.confirm()
            case SagaStep.COMMIT_STOCK:
                if order.awaits_konbini_payment:
                    return order  # held (not sold) until the money comes: see FINISH
                await self.inventory.commit(str(order.id), order.refs["reservation_id"])
                return order
            case SagaStep.COMMIT_REDEMPTIONS:
                # The promotion redemptions, then the loyalty points (each idempotent).
                if order.redeems:
                    await self.cart.commit_redemptions(str(order.id))
                points_reservation = order.refs.get("points_reservation_id")
                if points_reservation:
                    await self._loyalty().commit(
                        order.customer_id, str(order.id), points_reservation
                    )
                return order
            case SagaStep.FINISH:
                if order.payment_method is PaymentMethod.KONBINI:
                    # Paid (an unpaid one is parked before this): the held stock is sold.
                    await self.inventory.commit(str(order.id), order.refs["reservation_id"])
                return order.place()
        raise AssertionError(step)

    def _loyalty(self) -> LoyaltyClient:
        if self.loyalty is None:
            raise StepFailure(
                SagaStep.RESERVE_LOYALTY,
                FailureKind.REJECTED,
                "LOYALTY_NOT_AVAILABLE",
                "loyalty points cannot be redeemed here",
            )
        return self.loyalty

    async def _authorize(self, order: Order, card_token: str) -> Order:
        provider = self.payments[order.payment_method]
        try:
            async with asyncio.timeout(self.policy.payment_timeout_seconds):
                authorization = await provider.authorize(
                    _authorization_key(order),
                    amount=order.totals.amount_due,
                    currency=order.currency,
                    card_token=card_token,
                )
        except PaymentDeclined as declined:
            raise StepFailure(
                SagaStep.AUTHORIZE_PAYMENT, FailureKind.REJECTED, declined.reason, declined.message
            ) from None
        except (TimeoutError, PaymentUnavailable):
            raise StepUnavailable("PAYMENT_UNAVAILABLE") from None
        if order.payment_method is PaymentMethod.KONBINI:
            assert authorization.expires_at is not None
            return (
                order.with_payment(PaymentState.AWAITING_PAYMENT)
                .with_ref("konbini_number", authorization.id)
                .with_ref("konbini_deadline", authorization.expires_at.isoformat())
            )
        state = (
            PaymentState.DUE_AT_STORE
            if order.payment_method is PaymentMethod.PAY_AT_STORE
            else PaymentState.AUTHORIZED
        )
        return order.with_payment(state)

    async def _reserve(self, order: Order) -> str:
        """The stock of the recorded plan, each line with its allocation method (the same
        request whenever it is asked again)."""
        plan = {
            sku: [(location, units) for location, units in parts]
            for sku, parts in json.loads(order.refs["plan"]).items()
        }
        recorded = order.refs.get("plan_methods")
        methods = json.loads(recorded) if recorded else None
        return await self.inventory.reserve(str(order.id), plan, self._hold(order), methods)

    def _hold(self, order: Order) -> timedelta:
        """How long stock is held: the saga's run, or for konbini until its deadline."""
        if order.payment_method is PaymentMethod.KONBINI:
            return self.policy.hold + self.policy.konbini_window
        return self.policy.hold

    # ------------------------------------------------------------------ konbini

    async def _park(self, saga: Saga) -> None:
        """A konbini order waits for its money: AWAITING_PAYMENT, leased until the
        deadline, when a sweeper takes it (to cancel it, or to finish it if paid)."""
        order = saga.order
        if order.status is OrderStatus.CONFIRMED:
            order = order.await_payment()
        deadline = datetime.fromisoformat(order.refs["konbini_deadline"])
        left = max(deadline - datetime.now(UTC), timedelta(0))
        await self._save(saga, order, SagaStep.FINISH, SagaPhase.FORWARD, lease=left)
        raise _Wait("KONBINI_AWAITING_PAYMENT")

    async def _settle_konbini(self, saga: Saga) -> Saga:
        """A parked konbini order taken by the sweeper: paid → on to PLACED; deadline
        passed → cancelled with everything given back; else parked again."""
        konbini = self._konbini()
        key = _authorization_key(saga.order)
        state = await konbini.expire(key)
        if state == KONBINI_PAID:
            return await self._save(saga, saga.order.paid(), SagaStep.FINISH, SagaPhase.FORWARD)
        if state != KONBINI_VOIDED:
            await self._park(saga)  # not due yet (another runner's lease ran out early)
        order = saga.order
        try:
            await self.inventory.release(order.refs["reservation_id"])
            points = order.totals.loyalty_points
            if order.refs.get("points_reservation_id") and points:
                # Redeemed at the confirmation: given back as a credit.
                await self._loyalty().credit(
                    order.customer_id, str(order.id), points, "KONBINI_PAYMENT_EXPIRED"
                )
            # Its promotion uses were committed at the confirmation: given back, so a
            # personal code can be used for the next order.
            await self.cart.return_redemptions(str(order.id), "KONBINI_PAYMENT_EXPIRED")
        except StepUnavailable as unavailable:
            await self._wait(saga, unavailable.reason)
        expired = order.expire()
        log.info("konbini payment expired", extra={"order_id": str(order.id)})
        return await self._save(
            saga, expired, SagaStep.FINISH, SagaPhase.DONE, event=cancelled_event(expired)
        )

    def _konbini(self) -> KonbiniPayments:
        provider = self.payments.get(PaymentMethod.KONBINI)
        assert isinstance(provider, KonbiniPayments), "konbini orders need the konbini adapter"
        return provider

    async def record_konbini_payment(self, principal: Principal, number: str) -> Order:
        """The konbini network says the money came: the order waiting for it goes on to
        PLACED (again for the same number: the same order)."""
        principal.require_any_kind(PrincipalKind.STAFF, PrincipalKind.SERVICE)
        if not (len(number) == KONBINI_DIGITS and number.isascii() and number.isdigit()):
            raise InvalidArgument(
                "a konbini payment number is 12 digits",
                reason="PAYMENT_NUMBER_INVALID",
                field_violations=[FieldViolation("payment_number", "12 digits")],
            )
        payment = await self._konbini().pay(number)
        if payment is None:
            raise NotFound("no such payment number", reason="PAYMENT_NUMBER_NOT_FOUND")
        if payment.state != KONBINI_PAID:
            raise FailedPrecondition(
                "the payment deadline has passed; the order was cancelled",
                reason="KONBINI_PAYMENT_EXPIRED",
            )
        order_id = uuid.UUID(payment.order_id)
        async with self.db.unit_of_work() as uow:
            store = OrderStore(uow.session)
            saga = await store.get(order_id, for_update=True)
            assert saga is not None
            taken = saga.order.status is OrderStatus.AWAITING_PAYMENT
            if taken:
                await store.save(
                    saga.order.paid(),
                    step=SagaStep.FINISH,
                    phase=SagaPhase.FORWARD,
                    lease_owner=None,
                    lease=self.policy.lease,
                )
                await store.lease_to(order_id, self.instance, self.policy.lease)
            await uow.commit()
        if taken:
            saga = await self._run_shielded(order_id)
        return self._answer(saga)

    async def _compensate(self, saga: Saga) -> Saga:
        order = saga.order
        unavailable: str | None = None
        for compensation in compensations(saga.step):
            # Every compensation is tried even when one cannot be made now (its service
            # is down): the others release what they can at once; the saga then waits
            # and the sweeper takes them all again (each is idempotent).
            try:
                order = await self._undo(compensation, order)
            except (StepUnavailable, PaymentUnavailable, TimeoutError) as error:
                unavailable = unavailable or getattr(error, "reason", "PAYMENT_UNAVAILABLE")
        if unavailable is not None:
            await self._wait(saga, unavailable)
        if order.payment_state in (PaymentState.AUTHORIZED, PaymentState.AWAITING_PAYMENT):
            order = order.with_payment(PaymentState.VOIDED)
        order = order.fail(order.failure_reason or "CHECKOUT_FAILED")
        return await self._save(saga, order, saga.step, SagaPhase.DONE, keep_card=False)

    async def _undo(self, compensation: Compensation, order: Order) -> Order:
        match compensation:
            case Compensation.RELEASE_STOCK:
                reservation = order.refs.get("reservation_id")
                if reservation is None and "plan" in order.refs:
                    # The reserve may have happened before a crash: asking again with its
                    # request_id returns that reservation (or fails: nothing was held).
                    try:
                        reservation = await self._reserve(order)
                    except StepFailure:
                        reservation = None
                if reservation is not None:
                    await self.inventory.release(reservation)
            case Compensation.RELEASE_REDEMPTIONS:
                if not order.redeems:
                    return order  # the step called nothing: nothing was reserved
                try:
                    await self.cart.release_redemptions(str(order.id))
                except StepFailure as failure:
                    # Nothing was reserved for the order: nothing to release.
                    log.info("no redemptions to release", extra={"reason": failure.reason})
            case Compensation.RELEASE_LOYALTY:
                points = order.totals.loyalty_points
                reservation = order.refs.get("points_reservation_id")
                if reservation is None and points:
                    # As for stock: the hold may have been taken before a crash; asking
                    # again with its request_id finds it (or fails: nothing was held).
                    try:
                        reservation = await self._loyalty().reserve(
                            order.customer_id, str(order.id), points, order.channel, order.store_id
                        )
                    except StepFailure:
                        reservation = None
                if reservation is not None:
                    await self._loyalty().release(order.customer_id, reservation)
            case Compensation.VOID_PAYMENT:
                provider = self.payments[order.payment_method]
                async with asyncio.timeout(self.policy.payment_timeout_seconds):
                    await provider.void(
                        f"{order.id}:void", authorization_key=_authorization_key(order)
                    )
        return order

    # ------------------------------------------------------------------ the sweeper

    async def sweep_once(self, batch: int = 20) -> int:
        """Claim sagas whose lease ran out and run each on; the number claimed."""
        async with self.db.unit_of_work() as uow:
            claimed = await OrderStore(uow.session).claim_stale(
                self.instance, self.policy.lease, batch
            )
            await uow.commit()
        for order_id in claimed:
            saga = await self._load(order_id)
            if (
                saga.phase is SagaPhase.FORWARD
                and saga.step <= CONFIRMATION
                and saga.attempts > self.policy.max_attempts
            ):
                saga = await self._start_compensation(
                    saga,
                    "CHECKOUT_TIMED_OUT",
                    FailureKind.UNAVAILABLE,
                    "the checkout could not be finished in time; nothing was charged",
                )
            try:
                await self.run(order_id)
            except Exception:
                log.exception("sweeping a saga failed", extra={"order_id": str(order_id)})
        return len(claimed)

    async def sweep(self, interval_seconds: float) -> None:
        while True:
            try:
                await self.sweep_once()
            except (DomainError, OSError) as error:
                log.warning("saga sweep skipped", extra={"error": type(error).__name__})
            await asyncio.sleep(interval_seconds)


class _Wait(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _authorization_key(order: Order) -> str:
    return f"{order.id}:authorize"
