"""Carts: lines, fulfilment, codes, repricing, availability, merge and checkout.

Invariants:
- a line's quantity is 1..``limits.max_quantity_per_line``; one line per SKU;
- prices, titles and totals come from the catalog and this module, never from a client;
- a cart changes only while ACTIVE, and every change bumps ``version`` (the etag), so a
  client holding an old etag cannot overwrite a newer cart;
- a customer has at most one ACTIVE cart (the database's partial unique index backs it).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import uuid
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import IntEnum
from typing import Any

from services.cart.domain.pricing import SHIPPING_TAX_RATE, ShippingPolicy, TaxLine, tax_lines
from services.cart.domain.promotions import AppliedDiscount, Evaluation, PricedLine
from tenpo.kit.errors import FailedPrecondition, FieldViolation, InvalidArgument, NotFound

CURRENCY = "JPY"
MAX_CODES = 5
MAX_EMAIL_LENGTH = 254


class CartStatus(IntEnum):
    ACTIVE = 1
    MERGED = 2
    CHECKED_OUT = 3
    EXPIRED = 4


class FulfillmentMethod(IntEnum):
    UNSPECIFIED = 0
    DELIVERY = 1
    SAME_DAY = 2
    PICKUP = 3
    CARRY_OUT = 4

    @property
    def at_store(self) -> bool:
        return self in (FulfillmentMethod.PICKUP, FulfillmentMethod.CARRY_OUT)


class Availability(IntEnum):
    UNSPECIFIED = 0
    AVAILABLE = 1
    INSUFFICIENT = 2
    UNKNOWN = 3


@dataclass(frozen=True)
class CartLimits:
    max_quantity_per_line: int = 10
    max_lines: int = 50


@dataclass(frozen=True)
class CatalogItem:
    """What the catalog says about a SKU on a channel now (tax-inclusive prices)."""

    sku: str
    product_id: str
    title: str
    image_url: str
    unit_price: int
    regular_price: int | None
    tax_rate: int
    category_ids: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Fulfillment:
    method: FulfillmentMethod = FulfillmentMethod.UNSPECIFIED
    store_id: str | None = None
    #: A postal address as plain fields (region_code, postal_code, ...); the servicer maps it.
    address: Mapping[str, Any] = field(default_factory=dict)

    def validate(self) -> Fulfillment:
        if self.method.at_store and not self.store_id:
            raise InvalidArgument(
                "pickup and carry-out need a store",
                reason="FULFILLMENT_INVALID",
                field_violations=[FieldViolation("cart.fulfillment.store_id", "is required")],
            )
        if self.method in (FulfillmentMethod.DELIVERY, FulfillmentMethod.SAME_DAY) and not (
            self.address.get("postal_code") and self.address.get("address_lines")
        ):
            raise InvalidArgument(
                "delivery needs an address with a postal code and a street",
                reason="FULFILLMENT_INVALID",
                field_violations=[FieldViolation("cart.fulfillment.address", "is incomplete")],
            )
        return self

    @property
    def source_location(self) -> str | None:
        """The location whose stock serves the cart; None: the whole network."""
        return self.store_id if self.method.at_store else None


@dataclass(frozen=True)
class LineItem:
    id: uuid.UUID
    sku: str
    quantity: int
    product_id: str
    title: str
    image_url: str
    unit_price: int
    regular_price: int | None
    tax_rate: int
    category_ids: frozenset[str]
    channel: int
    store_id: str | None
    created_at: datetime
    offered: bool = True
    previous_unit_price: int | None = None
    availability: Availability = Availability.UNSPECIFIED
    available_quantity: int | None = None

    @property
    def subtotal(self) -> int:
        return self.unit_price * self.quantity if self.offered else 0

    @property
    def price_changed(self) -> bool:
        return self.previous_unit_price is not None

    def priced(self, item: CatalogItem) -> LineItem:
        """The line at the catalog's current price; a changed price is flagged with the one
        the customer saw before."""
        previous = self.previous_unit_price
        if item.unit_price != self.unit_price:
            previous = self.unit_price if previous is None else previous
        if previous == item.unit_price:
            previous = None  # back to what the customer saw: nothing to tell
        return replace(
            self,
            product_id=item.product_id,
            title=item.title,
            image_url=item.image_url,
            unit_price=item.unit_price,
            regular_price=item.regular_price,
            tax_rate=item.tax_rate,
            category_ids=item.category_ids,
            offered=True,
            previous_unit_price=previous,
        )

    def with_availability(self, available: int | None) -> LineItem:
        if available is None:
            return replace(self, availability=Availability.UNKNOWN, available_quantity=None)
        status = Availability.AVAILABLE if available >= self.quantity else Availability.INSUFFICIENT
        return replace(self, availability=status, available_quantity=max(available, 0))


def cart_token(key: bytes, cart_id: uuid.UUID) -> str:
    """A guest cart's capability: HMAC-SHA256 of its id under the service's key (256 bits,
    unguessable without the key). Derived rather than random, so a retried CreateCart can
    hand out the same token without the token being stored anywhere; only its hash is kept,
    so a key rotation leaves existing carts reachable."""
    digest = hmac.new(key, b"tenpo-cart-token:" + cart_id.bytes, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def _quantity_violation(path: str, limits: CartLimits) -> InvalidArgument:
    return InvalidArgument(
        f"quantity must be 1 to {limits.max_quantity_per_line}",
        reason="QUANTITY_INVALID",
        field_violations=[FieldViolation(path, f"1 to {limits.max_quantity_per_line} per line")],
    )


@dataclass(frozen=True)
class Totals:
    subtotal: int
    discount: int
    shipping: int
    total: int
    taxes: list[TaxLine]
    loyalty_points: int
    amount_due: int
    line_discounts: Mapping[uuid.UUID, int]
    applied: list[AppliedDiscount]
    rejected: list[tuple[str, str]]


@dataclass(frozen=True)
class Cart:
    id: uuid.UUID
    customer_id: str | None
    status: CartStatus
    channel: int
    store_id: str | None
    created_at: datetime
    updated_at: datetime
    last_activity_at: datetime
    currency: str = CURRENCY
    guest_token_hash: bytes | None = None
    lines: tuple[LineItem, ...] = ()
    fulfillment: Fulfillment = field(default_factory=Fulfillment)
    codes: tuple[str, ...] = ()
    loyalty_points: int = 0
    contact_email: str | None = None
    version: int = 1
    #: Channel the lines were last priced for, and when (None: reprice on next read).
    priced_channel: int = 0
    priced_at: datetime | None = None
    availability_checked_at: datetime | None = None
    order_id: str | None = None
    abandoned_at: datetime | None = None

    @property
    def etag(self) -> str:
        return str(self.version)

    @property
    def is_guest(self) -> bool:
        return self.customer_id is None

    def opens_with(self, token: str) -> bool:
        """True when ``token`` is this guest cart's capability (constant-time)."""
        if self.guest_token_hash is None or not token:
            return False
        return hmac.compare_digest(self.guest_token_hash, token_hash(token))

    def line(self, line_id: uuid.UUID) -> LineItem:
        for line in self.lines:
            if line.id == line_id:
                return line
        raise NotFound("the cart has no such line", reason="LINE_ITEM_NOT_FOUND")

    def require_active(self) -> None:
        if self.status is not CartStatus.ACTIVE:
            raise FailedPrecondition(
                f"the cart is {self.status.name.lower()} and cannot change",
                reason="CART_NOT_ACTIVE",
                metadata={"status": self.status.name},
            )

    # -- changes: each returns the new cart (version bumped by ``touched``) ---------------

    def touched(self, channel: int, store_id: str | None, now: datetime) -> Cart:
        """The cart after a change made from ``channel``: the touchpoint that changes a cart
        is the one whose prices it shows (a channel switch reprices), and the change starts
        a new idle period for abandonment. Price-change flags are cleared: the customer sees
        the cart again with this change."""
        lines = tuple(
            replace(line, previous_unit_price=None) if line.price_changed else line
            for line in self.lines
        )
        return replace(
            self,
            lines=lines,
            channel=channel or self.channel,
            store_id=store_id if channel else self.store_id,
            version=self.version + 1,
            updated_at=now,
            last_activity_at=now,
        )

    def add(
        self,
        sku: str,
        quantity: int,
        item: CatalogItem,
        *,
        limits: CartLimits,
        now: datetime,
    ) -> Cart:
        """Add ``quantity`` of ``sku``: an existing line grows (never past the per-line
        limit), else a new line records the touchpoint and store it came from."""
        self.require_active()
        if not 1 <= quantity <= limits.max_quantity_per_line:
            raise _quantity_violation("quantity", limits)
        for index, line in enumerate(self.lines):
            if line.sku == sku:
                grown = line.quantity + quantity
                if grown > limits.max_quantity_per_line:
                    raise FailedPrecondition(
                        f"at most {limits.max_quantity_per_line} of one SKU per cart",
                        reason="LINE_QUANTITY_LIMIT",
                        metadata={"limit": str(limits.max_quantity_per_line)},
                    )
                updated = replace(line, quantity=grown).priced(item)
                return replace(self, lines=(*self.lines[:index], updated, *self.lines[index + 1 :]))
        if len(self.lines) >= limits.max_lines:
            raise FailedPrecondition(
                f"a cart holds at most {limits.max_lines} lines",
                reason="CART_LINE_LIMIT",
                metadata={"limit": str(limits.max_lines)},
            )
        line = LineItem(
            id=uuid.uuid4(),
            sku=sku,
            quantity=quantity,
            product_id=item.product_id,
            title=item.title,
            image_url=item.image_url,
            unit_price=item.unit_price,
            regular_price=item.regular_price,
            tax_rate=item.tax_rate,
            category_ids=item.category_ids,
            channel=self.channel,
            store_id=self.store_id,
            created_at=now,
        )
        return replace(self, lines=(*self.lines, line))

    def set_quantity(self, line_id: uuid.UUID, quantity: int, limits: CartLimits) -> Cart:
        self.require_active()
        if not 1 <= quantity <= limits.max_quantity_per_line:
            raise _quantity_violation("line_item.quantity", limits)
        current = self.line(line_id)
        lines = tuple(replace(li, quantity=quantity) if li is current else li for li in self.lines)
        return replace(self, lines=lines)

    def remove(self, line_id: uuid.UUID) -> Cart:
        self.require_active()
        current = self.line(line_id)
        return replace(self, lines=tuple(li for li in self.lines if li is not current))

    def with_fulfillment(self, fulfillment: Fulfillment) -> Cart:
        self.require_active()
        return replace(self, fulfillment=fulfillment.validate(), availability_checked_at=None)

    def with_loyalty_points(self, points: int) -> Cart:
        self.require_active()
        if points < 0 or points > 10_000_000:
            raise InvalidArgument(
                "loyalty points must be 0 to 10,000,000",
                reason="LOYALTY_POINTS_INVALID",
                field_violations=[FieldViolation("cart.loyalty_points_to_redeem", "0–10,000,000")],
            )
        if points and self.is_guest:
            raise FailedPrecondition(
                "only a signed-in customer can redeem points", reason="LOYALTY_NEEDS_CUSTOMER"
            )
        return replace(self, loyalty_points=points)

    def with_contact_email(self, email: str) -> Cart:
        self.require_active()
        email = email.strip()
        if email and (len(email) > MAX_EMAIL_LENGTH or "@" not in email.strip("@")):
            raise InvalidArgument(
                "contact_email is not an e-mail address",
                reason="EMAIL_INVALID",
                field_violations=[FieldViolation("cart.contact_email", "an e-mail address")],
            )
        return replace(self, contact_email=email or None)

    def with_code(self, code: str) -> Cart:
        self.require_active()
        if code in self.codes:
            return self
        if len(self.codes) >= MAX_CODES:
            raise FailedPrecondition(
                f"at most {MAX_CODES} codes per cart", reason="CODE_LIMIT_REACHED"
            )
        return replace(self, codes=(*self.codes, code))

    def without_code(self, code: str) -> Cart:
        self.require_active()
        if code not in self.codes:
            raise NotFound("the code is not on the cart", reason="CODE_NOT_ON_CART")
        return replace(self, codes=tuple(c for c in self.codes if c != code))

    def repriced(self, items: Mapping[str, CatalogItem | None], now: datetime) -> Cart:
        """Lines at the catalog's current prices for the cart's channel. ``items`` holds what
        was asked: None marks a SKU no longer offered on the channel (its line stays, flagged,
        outside every total); SKUs not in ``items`` keep their price."""
        lines = []
        for line in self.lines:
            if line.sku not in items:
                lines.append(line)
                continue
            item = items[line.sku]
            lines.append(line.priced(item) if item else replace(line, offered=False))
        return replace(self, lines=tuple(lines), priced_channel=self.channel, priced_at=now)

    def with_availability(
        self,
        available: Mapping[str, int] | None,
        now: datetime,
        *,
        only: Collection[str] | None = None,
    ) -> Cart:
        """Availability of every line (or of the lines of the SKUs in ``only``: the others
        keep their last answer, and ``availability_checked_at`` still says when every line
        was last asked); ``None`` (inventory could not be asked) marks those lines UNKNOWN
        and the cart keeps working."""
        lines = tuple(
            line.with_availability(None if available is None else available.get(line.sku, 0))
            if only is None or line.sku in only
            else line
            for line in self.lines
        )
        if only is not None:
            return replace(self, lines=lines)
        return replace(self, lines=lines, availability_checked_at=now)

    def availability_due(self, now: datetime, recheck_seconds: float) -> bool:
        """Whether every line's availability is to be asked again (none asked yet, a new
        fulfilment, or the last full answer is older than ``recheck_seconds``)."""
        checked = self.availability_checked_at
        return checked is None or (now - checked).total_seconds() >= recheck_seconds

    def lines_changed_since(self, before: Cart) -> list[str]:
        """SKUs of the lines that are new or hold another quantity than in ``before``."""
        quantities = {line.id: line.quantity for line in before.lines}
        return [line.sku for line in self.lines if quantities.get(line.id) != line.quantity]

    def merged_with(self, guest: Cart, limits: CartLimits, now: datetime) -> Cart:
        """This (the customer's active) cart after folding ``guest`` into it. The rule, in
        the guest cart's line order: a SKU already here gets the guest quantity added, capped
        at the per-line limit; a new SKU is appended with its own channel, store and time
        while there is room (``max_lines``), else left out. Codes: ours first, then the
        guest's new ones, up to the limit. Our fulfilment wins unless we have none."""
        self.require_active()
        lines = list(self.lines)
        by_sku = {line.sku: i for i, line in enumerate(lines)}
        for guest_line in guest.lines:
            index = by_sku.get(guest_line.sku)
            if index is not None:
                mine = lines[index]
                quantity = min(mine.quantity + guest_line.quantity, limits.max_quantity_per_line)
                lines[index] = replace(mine, quantity=quantity)
            elif len(lines) < limits.max_lines:
                by_sku[guest_line.sku] = len(lines)
                lines.append(replace(guest_line, id=uuid.uuid4()))
        codes = list(self.codes)
        for code in guest.codes:
            if code not in codes and len(codes) < MAX_CODES:
                codes.append(code)
        fulfillment = self.fulfillment
        if fulfillment.method is FulfillmentMethod.UNSPECIFIED:
            fulfillment = guest.fulfillment
        return replace(
            self,
            lines=tuple(lines),
            codes=tuple(codes),
            fulfillment=fulfillment,
            priced_at=None,  # guest lines may have been priced for another channel
            availability_checked_at=None,
        )

    def merged_into(self, now: datetime) -> Cart:
        """The guest cart once folded in; its contact e-mail has no purpose left."""
        return replace(
            self,
            status=CartStatus.MERGED,
            contact_email=None,
            version=self.version + 1,
            updated_at=now,
        )

    def checked_out(self, order_id: str, now: datetime) -> Cart:
        self.require_active()
        if not self.lines:
            raise FailedPrecondition("the cart is empty", reason="CART_EMPTY")
        if any(not line.offered for line in self.lines):
            raise FailedPrecondition(
                "a line is no longer offered on the cart's channel",
                reason="LINE_NOT_OFFERED",
            )
        return replace(
            self,
            status=CartStatus.CHECKED_OUT,
            order_id=order_id,
            version=self.version + 1,
            updated_at=now,
        )

    # -- derived ---------------------------------------------------------------------------

    def priced_lines(self) -> list[PricedLine]:
        return [
            PricedLine(
                line.id,
                line.sku,
                line.product_id,
                line.category_ids,
                line.unit_price,
                line.quantity,
            )
            for line in self.lines
            if line.offered
        ]

    def totals(self, evaluation: Evaluation, shipping: ShippingPolicy) -> Totals:
        """Subtotal, discounts (already allocated to lines), shipping, and the tax contained
        per rate: each rate's tax-inclusive amount after discounts (shipping at the standard
        rate) taxed once and rounded down."""
        line_discounts = evaluation.line_discounts()
        subtotal = sum(line.subtotal for line in self.lines)
        discount = sum(line_discounts.values())
        method = self.fulfillment.method
        fee = shipping.fee(
            delivery=method is FulfillmentMethod.DELIVERY,
            same_day=method is FulfillmentMethod.SAME_DAY,
            discounted_subtotal=subtotal - discount,
        )
        by_rate: dict[int, int] = {}
        for line in self.lines:
            if line.offered:
                net = line.subtotal - line_discounts.get(line.id, 0)
                by_rate[line.tax_rate] = by_rate.get(line.tax_rate, 0) + net
        if fee:
            by_rate[SHIPPING_TAX_RATE] = by_rate.get(SHIPPING_TAX_RATE, 0) + fee
        total = subtotal - discount + fee
        points = min(self.loyalty_points, total)
        return Totals(
            subtotal=subtotal,
            discount=discount,
            shipping=fee,
            total=total,
            taxes=tax_lines(by_rate),
            loyalty_points=points,
            amount_due=total - points,
            line_discounts=line_discounts,
            applied=evaluation.applied,
            rejected=evaluation.rejected,
        )


def needs_reprice(cart: Cart, now: datetime, ttl_seconds: float) -> bool:
    if not cart.lines or cart.status is not CartStatus.ACTIVE:
        return False
    if cart.priced_at is None or cart.priced_channel != cart.channel:
        return True
    return (now - cart.priced_at).total_seconds() >= ttl_seconds


def line_skus(carts: Sequence[Cart]) -> list[str]:
    return sorted({line.sku for cart in carts for line in cart.lines})
