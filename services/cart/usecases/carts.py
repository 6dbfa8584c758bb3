"""Cart use cases: create, read, change, merge and check out carts. Each change reads the
catalog and inventory first (outside any transaction), then locks the cart, checks its etag
and applies the change in one transaction, with the request_id recorded in it."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from google.protobuf import wrappers_pb2
from google.protobuf.message import Message

from services.cart.domain.carts import (
    Cart,
    CartLimits,
    CartStatus,
    CatalogItem,
    Fulfillment,
    Totals,
    cart_token,
    needs_reprice,
    token_hash,
)
from services.cart.domain.pricing import ShippingPolicy
from services.cart.domain.promotions import (
    Context,
    Evaluation,
    Promotion,
    code_refusal,
    evaluate,
    normalize_code,
)
from services.cart.events import checked_out_event
from services.cart.store.carts import CartStore
from services.cart.store.code_attempts import CodeAttemptStore, attempts_key
from services.cart.store.driver import (
    DriverCartStore,
    KnownLines,
    Read,
    WritePlan,
    Written,
)
from services.cart.store.promotions import PromotionStore
from services.cart.usecases import access
from tenpo.cart.v1 import cart_service_pb2 as cart_api
from tenpo.kit.auth import Principal, PrincipalKind
from tenpo.kit.cache import RefreshingValue
from tenpo.kit.db import Database, UnitOfWork
from tenpo.kit.errors import (
    Aborted,
    DomainError,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    ResourceExhausted,
    Unavailable,
    check_etag,
    require_fields,
)
from tenpo.kit.idempotency import (
    KeyClaim,
    check_request_id,
    idempotency_key,
    idempotent,
    request_fingerprint,
)
from tenpo.kit.limits import declared

#: The contract's bound (``tenpo.common.v1.limits`` on AddLineItemRequest.sku).
MAX_SKU_LENGTH = declared(cart_api.AddLineItemRequest, "sku").max_length or 64
#: Automatic promotions are re-read at most this often (and at once after our own writes).
AUTOMATIC_PROMOTIONS_TTL = 10.0
#: Optimistic attempts of a change, the last one under the cart's row lock.
CHANGE_ATTEMPTS = 4


class CatalogPort(Protocol):
    async def items(self, skus: Sequence[str], channel: int) -> dict[str, CatalogItem | None]: ...

    def forget(self, skus: Sequence[str]) -> None: ...


class InventoryPort(Protocol):
    async def available(
        self, skus: Sequence[str], location_id: str | None
    ) -> dict[str, int] | None: ...


@dataclass(frozen=True)
class CartView:
    cart: Cart
    totals: Totals


@dataclass(frozen=True)
class CartChanges:
    """What UpdateCart changes: the paths named (AIP-134, resolved by the servicer) and their
    new values."""

    paths: Sequence[str]
    fulfillment: Fulfillment | None = None
    loyalty_points: int = 0
    contact_email: str = ""


@dataclass(frozen=True)
class Mutation:
    """One cart change: what it needs from the catalog and inventory, and the change."""

    scope: str
    #: SKUs to look up besides those a reprice needs.
    skus: Sequence[str]
    apply: Callable[[Cart, dict[str, CatalogItem | None]], Cart]
    #: The fulfilment after the change, when it changes (availability is asked for it).
    fulfillment: Fulfillment | None = None


def validate_sku(sku: str) -> str:
    sku = sku.strip()
    if not sku or len(sku) > MAX_SKU_LENGTH:
        raise InvalidArgument(
            f"sku is required (at most {MAX_SKU_LENGTH} characters)",
            reason="SKU_INVALID",
            field_violations=[FieldViolation("sku", f"1–{MAX_SKU_LENGTH} characters")],
        )
    return sku


class Carts:
    def __init__(
        self,
        db: Database,
        catalog: CatalogPort,
        inventory: InventoryPort,
        *,
        token_key: bytes,
        limits: CartLimits,
        shipping: ShippingPolicy,
        reprice_after_seconds: float,
        availability_recheck_seconds: float = 30.0,
        code_attempts: int = 10,
        code_attempt_window_seconds: float = 900.0,
        known_lines: int = 0,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.db = db
        self.catalog = catalog
        self.inventory = inventory
        self._token_key = token_key
        self.limits = limits
        self.shipping = shipping
        self.reprice_after = reprice_after_seconds
        self.availability_recheck = availability_recheck_seconds
        self.clock = clock
        #: Lines of the carts this replica changed or read last, at their version.
        self.known_lines = KnownLines(known_lines)
        self.automatic = RefreshingValue(self._load_automatic, AUTOMATIC_PROMOTIONS_TTL)
        self._code_attempts = code_attempts
        self._code_attempt_window = timedelta(seconds=code_attempt_window_seconds)

    async def _load_automatic(self) -> list[Promotion]:
        async with self.db.unit_of_work() as uow:
            return await PromotionStore(uow.session).automatic(self.clock())

    # -- reads -------------------------------------------------------------------------------

    async def view(self, session: Any, cart: Cart, *, codes_unused: bool = False) -> CartView:
        """The cart with its discounts and totals as of now. ``codes_unused`` shows personal
        codes as if unused (the redemption under lock decides whether they still are)."""
        now = self.clock()
        automatic = [p for p in await self.automatic.get() if p.in_window(now)]
        promotions = PromotionStore(session)
        codes = await promotions.find_codes(cart.codes)
        if codes_unused:
            codes = {text: replace(code, used=False) for text, code in codes.items()}
        found = await promotions.by_ids(sorted({c.promotion_id for c in codes.values()}))
        entered = []
        for text in cart.codes:
            code = codes.get(text)
            entered.append((text, code, found.get(code.promotion_id) if code else None))
        context = Context(cart.channel, cart.store_id, cart.customer_id, now)
        # Nothing to evaluate (no automatic promotion running, no code): no discounts, and
        # no copy of every line for the promotions to look at.
        evaluation = (
            evaluate(cart.priced_lines(), automatic, entered, context)
            if automatic or entered
            else Evaluation()
        )
        return CartView(cart, cart.totals(evaluation, self.shipping))

    async def _load(self, cart_id: uuid.UUID) -> Cart | None:
        async with self.db.unit_of_work() as uow:
            return await CartStore(uow.session).get(cart_id)

    async def _view_of(self, cart_id: uuid.UUID) -> CartView:
        async with self.db.unit_of_work() as uow:
            cart = await CartStore(uow.session).get(cart_id)
            if cart is None:
                raise access.cart_not_found()
            return await self.view(uow.session, cart)

    async def get(self, principal: Principal, cart_id: uuid.UUID, token: str) -> CartView:
        """A cart as it is now; a cart last priced long ago (or for another channel, or
        before a price event) is repriced first — unless the catalog is down, then it is
        shown with the prices it has."""
        cart = access.open_cart(principal, await self._load(cart_id), token, write=False)
        if needs_reprice(cart, self.clock(), self.reprice_after):
            try:
                items = await self.catalog.items([li.sku for li in cart.lines], cart.channel)
            except Unavailable:
                items = None
            if items is not None:
                return await self._reprice(cart, items)
        return await self._view_of(cart.id)

    async def _reprice(self, seen: Cart, items: dict[str, CatalogItem | None]) -> CartView:
        async with self.db.unit_of_work() as uow:
            store = CartStore(uow.session)
            cart = await store.get(seen.id, lock=True)
            if cart is None:
                raise access.cart_not_found()
            if cart.version == seen.version and cart.status is CartStatus.ACTIVE:
                # New prices are a new version of the cart (an order priced from the old etag
                # must notice), but not customer activity.
                repriced = cart.repriced(items, self.clock())
                cart = replace(repriced, version=cart.version + 1)
                await store.save(cart)
            view = await self.view(uow.session, cart)
            await uow.commit()
        return view

    async def get_active(self, principal: Principal) -> CartView:
        """The customer's one active cart, created empty on first use (concurrent first uses
        end up with the same cart: the partial unique index picks one)."""
        principal.require_any_kind(PrincipalKind.CUSTOMER)
        existing = await self._active(principal.subject)
        if existing is None:
            channel, store_id = access.touchpoint(principal)
            now = self.clock()
            fresh = Cart(
                id=uuid.uuid4(),
                customer_id=principal.subject,
                status=CartStatus.ACTIVE,
                channel=channel,
                store_id=store_id,
                created_at=now,
                updated_at=now,
                last_activity_at=now,
                priced_channel=channel,
            )
            async with self.db.unit_of_work() as uow:
                await CartStore(uow.session).insert_active_if_absent(fresh)
                await uow.commit()
            existing = await self._active(principal.subject)
            assert existing is not None
        return await self.get(principal, existing.id, "")

    async def _active(self, customer_id: str) -> Cart | None:
        async with self.db.unit_of_work() as uow:
            return await CartStore(uow.session).active_for_customer(customer_id)

    # -- creation ----------------------------------------------------------------------------

    async def create(
        self, principal: Principal, contact_email: str, request_id: str, request: Message
    ) -> tuple[CartView, str]:
        """A guest cart and its token; a customer gets the active cart (and no token)."""
        if principal.kind is PrincipalKind.CUSTOMER:
            return await self.get_active(principal), ""
        channel, store_id = access.touchpoint(principal)
        now = self.clock()
        cart_id = uuid.uuid4()
        cart = Cart(
            id=cart_id,
            customer_id=None,
            status=CartStatus.ACTIVE,
            channel=channel,
            store_id=store_id,
            created_at=now,
            updated_at=now,
            last_activity_at=now,
            guest_token_hash=token_hash(cart_token(self._token_key, cart_id)),
            priced_channel=channel,
        ).with_contact_email(contact_email)

        async def insert() -> wrappers_pb2.StringValue:
            await CartStore(uow.session).insert(cart)
            return wrappers_pb2.StringValue(value=str(cart_id))

        async with self.db.unit_of_work() as uow:
            # Anonymous callers cannot be told apart, so their request ids are bound to
            # nothing but themselves: clients send random ones (UUIDs), as the API says.
            stored = await idempotent(
                uow,
                scope=f"CreateCart:{access.principal_key(principal)}",
                request_id=request_id,
                request=request,
                response_type=wrappers_pb2.StringValue,
                action=insert,
            )
            await uow.commit()
        # A retry gets the first call's cart, and its token again: tokens are derived from
        # the cart id under the service's key, so none is ever stored.
        first = uuid.UUID(stored.value)
        return await self._view_of(first), cart_token(self._token_key, first)

    # -- changes -----------------------------------------------------------------------------

    async def _mutate(
        self,
        principal: Principal,
        cart_id: uuid.UUID,
        token: str,
        etag: str,
        request_id: str,
        request: Message,
        mutation: Mutation,
    ) -> CartView:
        """Apply ``mutation`` optimistically: read the cart (one statement; on the first
        attempt not even that when this replica knows the cart, see ``_known``), decide,
        and write it back only if its version has not moved (one statement that commits on
        its own, with the request_id claimed in it); a lost race reads again. After
        ``CHANGE_ATTEMPTS - 1`` lost races the last attempt holds the cart's row lock from
        its read to its write, so a hot cart still makes progress. Catalog and inventory
        are asked between read and write, never under the lock (but on that last attempt,
        which reuses their answers)."""
        key = idempotency_key(check_request_id(request_id)) if request_id else None
        fingerprint = request_fingerprint(request) if key else b""
        scope = f"{mutation.scope}:{cart_id}"
        asked = _Asked()

        async def plan(read: Read, *, may_ask: bool) -> CartView | WritePlan:
            seen = access.open_cart(principal, read.cart, token, write=True)
            seen.require_active()
            if read.stored is not None:
                # Applied once already: the cart as it is now (REQUEST_ID_REUSED if the key
                # came with other parameters).
                read.stored.answer(fingerprint, wrappers_pb2.StringValue)
                return await self._view_now(seen)
            check_etag(etag, seen.etag, "cart")
            cart, priced = await self._changed(principal, seen, mutation)
            cart = await self._with_availability(seen, cart, asked, may_ask=may_ask)
            claim = None
            if key is not None:
                claim = (
                    scope,
                    KeyClaim(key, fingerprint, wrappers_pb2.StringValue(value=cart.etag)),
                )
            return WritePlan(seen, cart, priced, claim)

        for attempt in range(1, CHANGE_ATTEMPTS + 1):
            if attempt < CHANGE_ATTEMPTS:
                read = self._known(cart_id, etag) if attempt == 1 else None
                guessed = read is not None
                if read is None:
                    # No connection is held while the catalog and inventory are asked.
                    async with self.db.driver_connection() as connection:
                        read = await DriverCartStore(connection, self.known_lines).read(
                            cart_id, scope, key
                        )
                try:
                    planned = await plan(read, may_ask=True)
                except DomainError as refused:
                    if guessed and key is not None and not isinstance(refused, Unavailable):
                        # Refused on the cart known here, whose request_ids were not read:
                        # this may be a retry of a change that was applied (a line already
                        # removed, a line already full), which answers the cart. Read.
                        continue
                    raise
                if isinstance(planned, CartView):
                    return planned
                async with self.db.driver_connection() as connection:
                    written = await DriverCartStore(connection, self.known_lines).write(planned)
            else:
                async with self.db.driver_unit_of_work() as uow:
                    store = DriverCartStore(uow.connection, self.known_lines)
                    await store.lock(cart_id)
                    planned = await plan(await store.read(cart_id, scope, key), may_ask=False)
                    if isinstance(planned, CartView):
                        return planned
                    written = await store.write(planned)
                    if written is Written.WRITTEN:
                        await uow.commit()
            if written is Written.GONE:
                raise access.cart_not_found()
            if written is Written.WRITTEN:
                self.known_lines.remember(planned.cart)  # committed: by itself, or above
                return await self._view_now(planned.cart)
        # The locked attempt cannot lose its race; this only guards the loop's end.
        raise Aborted("the cart kept changing; retry", reason="CART_CONTENDED")

    def _known(self, cart_id: uuid.UUID, etag: str) -> Read | None:
        """The first attempt of a change starts from the cart as this replica last wrote or
        read it, without reading: the write's compare-and-set (version and reprice mark)
        catches a cart moved on elsewhere, and a request_id used before (its claim fails),
        and the next attempt reads. Not when the caller's etag names another version (it
        may be newer than the one known here) or the cart known here is closed."""
        known = self.known_lines.cart(cart_id)
        if known is None or known.status is not CartStatus.ACTIVE:
            return None
        if etag and etag != known.etag:
            return None
        return Read(known, None)

    async def _changed(
        self, principal: Principal, seen: Cart, mutation: Mutation
    ) -> tuple[Cart, bool]:
        """The cart after ``mutation`` (domain rules), priced from the catalog: the new SKUs,
        and every line when the cart is due for a reprice or moves to another channel. True
        when every line was priced just now."""
        channel, store_id = access.touchpoint(principal, seen)
        now = self.clock()
        reprice = needs_reprice(replace(seen, channel=channel), now, self.reprice_after)
        wanted = list(mutation.skus) + ([li.sku for li in seen.lines] if reprice else [])
        items = await self.catalog.items(wanted, channel) if wanted else {}
        cart = mutation.apply(seen.touched(channel, store_id, now), items)
        if reprice or all(line.sku in items for line in cart.lines):
            # Every line priced just now (a reprice, or a cart whose only lines are the
            # ones this change looked up): the cart counts as priced.
            return cart.repriced(items, now), True
        return cart, False

    async def _with_availability(
        self, seen: Cart, cart: Cart, asked: _Asked, *, may_ask: bool
    ) -> Cart:
        """Availability of the lines this change added or resized — of every line when the
        last full answer is older than ``availability_recheck_seconds`` or the fulfilment
        changed. UNKNOWN when inventory does not answer (or, on the locked attempt, was not
        asked about these SKUs at this location: nobody waits on inventory under a lock)."""
        now = self.clock()
        full = cart.availability_due(now, self.availability_recheck)
        skus = [li.sku for li in cart.lines] if full else cart.lines_changed_since(seen)
        if not skus:
            return cart if not full else cart.with_availability({}, now)
        location = cart.fulfillment.source_location
        if asked.knows(location, skus):
            available = asked.answer(location, skus)
        elif may_ask:
            available = await self.inventory.available(skus, location)
            asked.remember(location, skus, available)
        else:
            available = None
        return cart.with_availability(available, now, only=None if full else set(skus))

    async def _view_now(self, cart: Cart) -> CartView:
        """The view of a cart just read or written (no second read): promotions are looked
        up only when it holds codes."""
        if not cart.codes:
            return await self.view(None, cart)
        async with self.db.unit_of_work() as uow:
            return await self.view(uow.session, cart)

    async def add_line(
        self,
        principal: Principal,
        cart_id: uuid.UUID,
        token: str,
        sku: str,
        quantity: int,
        etag: str,
        request_id: str,
        request: Message,
    ) -> CartView:
        sku = validate_sku(sku)
        quantity = quantity or 1

        def add(cart: Cart, items: dict[str, CatalogItem | None]) -> Cart:
            item = items.get(sku)
            if item is None:
                raise FailedPrecondition(
                    "the SKU is not offered on this channel",
                    reason="SKU_NOT_OFFERED",
                    metadata={"sku": sku, "channel": str(cart.channel)},
                    field_violations=[FieldViolation("sku", "not offered on this channel")],
                )
            return cart.add(sku, quantity, item, limits=self.limits, now=self.clock())

        mutation = Mutation("AddLineItem", [sku], add)
        return await self._mutate(principal, cart_id, token, etag, request_id, request, mutation)

    async def update_line(
        self,
        principal: Principal,
        cart_id: uuid.UUID,
        token: str,
        line_id: uuid.UUID,
        quantity: int,
        etag: str,
        request_id: str,
        request: Message,
    ) -> CartView:
        def update(cart: Cart, _: object) -> Cart:
            return cart.set_quantity(line_id, quantity, self.limits)

        mutation = Mutation("UpdateLineItem", [], update)
        return await self._mutate(principal, cart_id, token, etag, request_id, request, mutation)

    async def remove_line(
        self,
        principal: Principal,
        cart_id: uuid.UUID,
        token: str,
        line_id: uuid.UUID,
        etag: str,
        request_id: str,
        request: Message,
    ) -> CartView:
        mutation = Mutation("RemoveLineItem", [], lambda cart, _: cart.remove(line_id))
        return await self._mutate(principal, cart_id, token, etag, request_id, request, mutation)

    async def update_cart(
        self,
        principal: Principal,
        cart_id: uuid.UUID,
        token: str,
        changes: CartChanges,
        etag: str,
        request_id: str,
        request: Message,
    ) -> CartView:
        fulfillment = None
        if "fulfillment" in changes.paths:
            fulfillment = (changes.fulfillment or Fulfillment()).validate()

        def update(cart: Cart, _: object) -> Cart:
            if fulfillment is not None:
                cart = cart.with_fulfillment(fulfillment)
            if "loyalty_points_to_redeem" in changes.paths:
                cart = cart.with_loyalty_points(changes.loyalty_points)
            if "contact_email" in changes.paths:
                cart = cart.with_contact_email(changes.contact_email)
            return cart

        mutation = Mutation("UpdateCart", [], update, fulfillment)
        return await self._mutate(principal, cart_id, token, etag, request_id, request, mutation)

    async def apply_code(
        self,
        principal: Principal,
        cart_id: uuid.UUID,
        token: str,
        raw_code: str,
        etag: str,
        request_id: str,
        request: Message,
    ) -> CartView:
        """Enter a code. Refused outright (FAILED_PRECONDITION) when it cannot be the
        customer's: CODE_NOT_FOUND (also for someone else's personal code), CODE_EXPIRED,
        CODE_ALREADY_USED; wrong codes count against the caller (the principal, or a guest's
        cart) on every replica alike. A valid code whose conditions are not met yet stays on
        the cart, listed in rejected_codes."""
        code = normalize_code(raw_code)
        cart = access.open_cart(principal, await self._load(cart_id), token, write=True)
        refusal = await self._judge_code(
            access.principal_key(principal) or f"cart:{cart_id}", code, cart
        )
        if refusal is not None:
            raise FailedPrecondition(
                "the code cannot be used",
                reason=refusal,
                field_violations=[FieldViolation("code", refusal)],
            )
        mutation = Mutation("ApplyPromotionCode", [], lambda c, _: c.with_code(code))
        return await self._mutate(principal, cart_id, token, etag, request_id, request, mutation)

    async def _judge_code(self, caller: str, code: str, cart: Cart) -> str | None:
        """Why ``code`` cannot go on ``cart`` (None: it can), counting a wrong code against
        ``caller`` in the database, so every replica shares one limit. The caller's row is
        locked while the code is judged: concurrent guesses on any replica queue, and no
        more than ``code_attempts`` wrong codes are ever judged per window. Past the limit
        every code — an existing one too — gets the same CODE_ATTEMPTS_EXCEEDED, so the
        answer says nothing about which codes exist."""
        key = attempts_key(caller)
        refusal: str | None = None
        async with self.db.unit_of_work() as uow:
            attempts = CodeAttemptStore(uow.session)
            failures = await attempts.lock(key, self.clock(), self._code_attempt_window)
            exhausted = failures >= self._code_attempts
            if not exhausted:
                found = (await PromotionStore(uow.session).find_codes([code])).get(code)
                refusal = code_refusal(found, cart.customer_id, self.clock())
                if refusal is not None:
                    await attempts.count_failure(key)
            await uow.commit()
        if exhausted:
            raise ResourceExhausted(
                "too many wrong promotion codes; wait before trying again",
                reason="CODE_ATTEMPTS_EXCEEDED",
            )
        return refusal

    async def remove_code(
        self,
        principal: Principal,
        cart_id: uuid.UUID,
        token: str,
        raw_code: str,
        etag: str,
        request_id: str,
        request: Message,
    ) -> CartView:
        code = normalize_code(raw_code)
        mutation = Mutation("RemovePromotionCode", [], lambda c, _: c.without_code(code))
        return await self._mutate(principal, cart_id, token, etag, request_id, request, mutation)

    # -- merge and checkout ------------------------------------------------------------------

    async def merge(
        self,
        principal: Principal,
        guest_id: uuid.UUID,
        token: str,
        request_id: str,
        request: Message,
    ) -> CartView:
        """Fold the guest cart into the customer's active cart (rule: ``Cart.merged_with``).
        Merging a guest cart that is merged already answers with the active cart."""
        principal.require_any_kind(PrincipalKind.CUSTOMER)
        require_fields(guest_cart_token=token)
        guest = await self._load(guest_id)
        if guest is None or not guest.is_guest or not guest.opens_with(token):
            raise access.cart_not_found()
        active = (await self.get_active(principal)).cart
        channel, store_id = access.touchpoint(principal, active)
        now = self.clock()

        async def fold() -> wrappers_pb2.StringValue:
            store = CartStore(uow.session)
            locked = await store.lock_many([guest_id, active.id])
            mine, theirs = locked.get(active.id), locked.get(guest_id)
            if mine is None or theirs is None or mine.status is not CartStatus.ACTIVE:
                raise access.cart_not_found()
            if theirs.status is CartStatus.ACTIVE:
                await store.save(theirs.merged_into(now))
                mine = mine.touched(channel, store_id, now).merged_with(theirs, self.limits, now)
                await store.save(mine)
            return wrappers_pb2.StringValue(value=mine.etag)

        async with self.db.unit_of_work() as uow:
            await idempotent(
                uow,
                scope=f"MergeCart:{guest_id}",
                request_id=request_id,
                request=request,
                response_type=wrappers_pb2.StringValue,
                action=fold,
            )
            await uow.commit()
        # Merged lines may come from another channel: the read reprices them for this one.
        return await self.get(principal, active.id, "")

    async def checkout(
        self,
        principal: Principal,
        cart_id: uuid.UUID,
        etag: str,
        order_id: str,
        request_id: str,
        request: Message,
    ) -> CartView:
        """Close the cart into an order. The order service calls this once the order is
        placed, with the etag of the version it priced; the cart announces CartCheckedOut."""
        principal.require_any_kind(PrincipalKind.SERVICE, PrincipalKind.STAFF)
        principal.require_scope(access.CHECKOUT_SCOPE)
        require_fields(etag=etag, order_id=order_id)
        if len(order_id) > 128:
            raise InvalidArgument(
                "order_id is too long",
                reason="ORDER_ID_INVALID",
                field_violations=[FieldViolation("order_id", "at most 128 characters")],
            )
        closed: list[Cart] = []

        async def close() -> wrappers_pb2.StringValue:
            store = CartStore(uow.session)
            cart = await store.get(cart_id, lock=True)
            if cart is None:
                raise access.cart_not_found()
            check_etag(etag, cart.etag, "cart")
            view = await self.view(uow.session, cart)
            cart = cart.checked_out(order_id, self.clock())
            await store.save(cart)
            uow.add_event(checked_out_event(cart, view.totals.total))
            closed.append(cart)
            return wrappers_pb2.StringValue(value=cart.etag)

        async with self.db.unit_of_work() as uow:
            await idempotent(
                uow,
                scope=f"CheckoutCart:{cart_id}",
                request_id=request_id,
                request=request,
                response_type=wrappers_pb2.StringValue,
                action=close,
            )
            await uow.commit()
        return await self._view_of(cart_id)

    # -- events from elsewhere ---------------------------------------------------------------

    async def catalog_changed(self, uow: UnitOfWork, skus: Iterable[str]) -> None:
        """A price or product changed: forget what this replica cached and have every
        active cart holding the SKUs repriced on its next read."""
        wanted = sorted(set(skus))
        if wanted:
            self.catalog.forget(wanted)
            await CartStore(uow.session).mark_for_reprice(wanted)

    async def customer_erased(self, uow: UnitOfWork, customer_id: str) -> None:
        await CartStore(uow.session).delete_for_customer(customer_id)
        await PromotionStore(uow.session).forget_customer(customer_id)


class _Asked:
    """Inventory's answers during one change: an attempt after a lost race reuses them for
    the SKUs already asked about at the same location."""

    def __init__(self) -> None:
        self._answers: dict[tuple[str | None, str], int | None] = {}

    def knows(self, location: str | None, skus: Sequence[str]) -> bool:
        return all((location, sku) in self._answers for sku in skus)

    def answer(self, location: str | None, skus: Sequence[str]) -> dict[str, int] | None:
        found = {sku: self._answers[(location, sku)] for sku in skus}
        if any(value is None for value in found.values()):
            return None  # inventory did not answer about one of them: UNKNOWN, no guess
        return {sku: value for sku, value in found.items() if value is not None}

    def remember(
        self, location: str | None, skus: Sequence[str], available: dict[str, int] | None
    ) -> None:
        for sku in skus:
            self._answers[(location, sku)] = None if available is None else available.get(sku, 0)
