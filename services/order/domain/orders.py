"""Order domain: an order and its lines as frozen from the cart, who may see it, the checks a
cart must pass before it is checked out. No I/O.

Invariants:
- An order's lines, totals and fulfilment are those of one cart version (its etag) and
  never change after checkout.
- Only a PENDING order becomes CONFIRMED or FAILED; only a CONFIRMED one becomes PLACED;
  only a PLACED one becomes CANCELLED. Every transition goes through ``Order`` methods.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import unicodedata
import uuid
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import IntEnum

from tenpo.kit.errors import Aborted, FailedPrecondition, FieldViolation, InvalidArgument, NotFound

READ_SCOPE = "orders:read"
WRITE_SCOPE = "orders:write"
MAX_LINES = 100
MAX_CANCEL_REASON = 200


class OrderStatus(IntEnum):
    PENDING = 1
    CONFIRMED = 2
    PLACED = 3
    CANCELLED = 4
    FAILED = 5
    #: Every fulfilment done (see domain.fulfilments).
    COMPLETED = 6
    #: Konbini: confirmed, waiting for the money (stock held until the deadline).
    AWAITING_PAYMENT = 7


class PaymentMethod(IntEnum):
    CARD = 1
    PAY_AT_STORE = 2
    KONBINI = 3


class PaymentState(IntEnum):
    NONE = 1
    AUTHORIZED = 2
    DUE_AT_STORE = 3
    VOIDED = 4
    CAPTURED = 5
    #: Some fulfilments' goods left and were captured, others not yet.
    PARTIALLY_CAPTURED = 6
    AWAITING_PAYMENT = 7


class FulfillmentMethod(IntEnum):
    DELIVERY = 1
    SAME_DAY = 2
    PICKUP = 3
    CARRY_OUT = 4

    @property
    def in_store(self) -> bool:
        """Goods handed over at a store: the only fulfilments that may be paid there."""
        return self in (FulfillmentMethod.PICKUP, FulfillmentMethod.CARRY_OUT)


@dataclass(frozen=True)
class OrderLine:
    sku: str
    product_id: str
    title: str
    quantity: int
    unit_price: int
    discount: int
    total: int
    location_id: str = ""


@dataclass(frozen=True)
class Fulfillment:
    method: FulfillmentMethod
    store_id: str | None = None
    #: The delivery address as the cart holds it (JSON-able mapping of PostalAddress fields).
    address: dict[str, object] | None = None


@dataclass(frozen=True)
class Totals:
    subtotal: int
    discount: int
    shipping: int
    total: int
    #: Loyalty points redeemed (1 point = 1 yen), at most ``total``.
    loyalty_points: int = 0

    @property
    def amount_due(self) -> int:
        """What the payment covers: the total less the points."""
        return self.total - min(self.loyalty_points, self.total)


@dataclass(frozen=True)
class FrozenCart:
    """What the saga takes from the cart: the version the customer agreed to pay for."""

    cart_id: str
    etag: str
    customer_id: str | None
    active: bool
    channel: int
    store_id: str | None
    currency: str
    lines: tuple[OrderLine, ...]
    fulfillment: Fulfillment | None
    totals: Totals
    has_price_changes: bool
    all_offered: bool
    contact_email: str | None = None
    #: The cart has discounts or promotion codes: its redemptions must be reserved and
    #: committed (none: those saga steps call nothing).
    redeems: bool = True


@dataclass(frozen=True)
class Order:
    id: uuid.UUID
    number: str
    customer_id: str
    cart_id: str
    cart_etag: str
    status: OrderStatus
    payment_method: PaymentMethod
    payment_state: PaymentState = PaymentState.NONE
    failure_reason: str = ""
    channel: int = 0
    store_id: str | None = None
    currency: str = "JPY"
    lines: tuple[OrderLine, ...] = ()
    fulfillment: Fulfillment | None = None
    totals: Totals = Totals(0, 0, 0, 0)
    created_at: datetime | None = None
    updated_at: datetime | None = None
    #: Provider references (authorization id, reservation id): never shown to callers.
    refs: dict[str, str] = field(default_factory=dict)
    #: Personal data, kept for service and staff search until the customer is erased.
    contact_email: str | None = None
    #: Digits only (E.164 without "+"), for search.
    contact_phone: str | None = None

    @property
    def owner(self) -> str:
        return f"orders/{self.id}"

    @property
    def is_guest(self) -> bool:
        """A guest's order: no customer (its guest reads it with its order token)."""
        return not self.customer_id

    def frozen_from(self, cart: FrozenCart) -> Order:
        return replace(
            self,
            channel=cart.channel,
            store_id=cart.store_id,
            currency=cart.currency,
            lines=cart.lines,
            fulfillment=cart.fulfillment,
            totals=cart.totals,
            # A guest gave her contact with the order (kept from the start); a customer's
            # comes from her cart and delivery address.
            contact_email=self.contact_email or normal_email(cart.contact_email),
            contact_phone=self.contact_phone or normal_phone(_address_phone(cart.fulfillment)),
            refs=self.refs | {"redeems": "1" if cart.redeems else "0"},
        )

    @property
    def redeems(self) -> bool:
        """The frozen cart had discounts or codes to redeem. Unknown (a saga recorded by
        an earlier release): assumed so, which only costs a call."""
        return self.refs.get("redeems") != "0"

    def confirm(self) -> Order:
        self._require(OrderStatus.PENDING, OrderStatus.CONFIRMED)
        return replace(self, status=OrderStatus.CONFIRMED)

    def place(self) -> Order:
        self._require(OrderStatus.CONFIRMED, OrderStatus.PLACED)
        return replace(self, status=OrderStatus.PLACED)

    def frozen_cart(self) -> FrozenCart:
        """The cart version this order was made of, as the saga froze it (to plan again)."""
        return FrozenCart(
            cart_id=self.cart_id,
            etag=self.cart_etag,
            customer_id=self.customer_id,
            active=True,
            channel=self.channel,
            store_id=self.store_id,
            currency=self.currency,
            lines=self.lines,
            fulfillment=self.fulfillment,
            totals=self.totals,
            has_price_changes=False,
            all_offered=True,
        )

    def await_payment(self) -> Order:
        """Konbini: confirmed, but placed only once the money comes."""
        self._require(OrderStatus.CONFIRMED, OrderStatus.AWAITING_PAYMENT)
        return replace(self, status=OrderStatus.AWAITING_PAYMENT)

    def paid(self) -> Order:
        """Konbini: the money came; the order goes on to be placed."""
        self._require(OrderStatus.AWAITING_PAYMENT, OrderStatus.CONFIRMED)
        return replace(self, status=OrderStatus.CONFIRMED, payment_state=PaymentState.CAPTURED)

    def expire(self) -> Order:
        """Konbini: the deadline passed unpaid."""
        self._require(OrderStatus.AWAITING_PAYMENT, OrderStatus.CANCELLED)
        return replace(
            self,
            status=OrderStatus.CANCELLED,
            payment_state=PaymentState.VOIDED,
            failure_reason="KONBINI_PAYMENT_EXPIRED",
        )

    @property
    def awaits_konbini_payment(self) -> bool:
        return (
            self.payment_method is PaymentMethod.KONBINI
            and self.payment_state is not PaymentState.CAPTURED
        )

    def fail(self, reason: str) -> Order:
        self._require(OrderStatus.PENDING, OrderStatus.FAILED)
        return replace(self, status=OrderStatus.FAILED, failure_reason=reason)

    def cancel(self, reason: str) -> Order:
        if self.status is OrderStatus.CANCELLED:
            return self
        if self.status is not OrderStatus.PLACED:
            raise FailedPrecondition(
                f"a {self.status.name.lower()} order cannot be cancelled",
                reason="ORDER_NOT_CANCELLABLE",
                metadata={"status": self.status.name},
            )
        if self.payment_state is PaymentState.CAPTURED:
            raise FailedPrecondition(
                "the order was already paid for and handed over; return it instead",
                reason="ORDER_NOT_CANCELLABLE",
                metadata={"status": self.status.name},
            )
        return replace(self, status=OrderStatus.CANCELLED, failure_reason=reason)

    def with_payment(self, state: PaymentState) -> Order:
        return replace(self, payment_state=state)

    def with_ref(self, name: str, value: str) -> Order:
        return replace(self, refs={**self.refs, name: value})

    def with_locations(self, allocations: dict[str, str]) -> Order:
        """The plan's location per SKU on each line (a SKU split over several locations
        shows the first; the reservation keeps the exact split)."""
        return replace(
            self,
            lines=tuple(
                replace(line, location_id=allocations.get(line.sku, line.location_id))
                for line in self.lines
            ),
        )

    def _require(self, current: OrderStatus, target: OrderStatus) -> None:
        if self.status is not current:
            raise FailedPrecondition(
                f"a {self.status.name.lower()} order cannot become {target.name.lower()}",
                reason="ORDER_STATE_CONFLICT",
                metadata={"status": self.status.name},
            )


#: What an erased customer's address keeps: enough for the tax record (where the sale
#: was delivered, by prefecture), nothing that names or reaches a person.
KEPT_ADDRESS_FIELDS = ("regionCode", "administrativeArea")


def pseudonymized_address(address: dict[str, object] | None) -> dict[str, object] | None:
    if address is None:
        return None
    return {k: v for k, v in address.items() if k in KEPT_ADDRESS_FIELDS}


def normal_email(value: str | None) -> str | None:
    value = (value or "").strip().lower()
    return value or None


def normal_phone(value: str | None) -> str | None:
    """Digits only: "+81 3-1234-5678" and "+81312345678" search alike. NFKC first: a
    Japanese IME in full-width mode types "０９０－１２３４－５６７８" for the same number."""
    folded = unicodedata.normalize("NFKC", value or "")
    digits = "".join(c for c in folded if c.isascii() and c.isdigit())
    return digits or None


def _address_phone(fulfillment: Fulfillment | None) -> str | None:
    if fulfillment is None or not fulfillment.address:
        return None
    phone = fulfillment.address.get("phoneNumber")
    return phone if isinstance(phone, str) else None


MAX_EMAIL = 254


def check_guest_contact(email: str, phone: str) -> tuple[str | None, str | None]:
    """A guest's contact as stored (lower-case e-mail, phone digits); at least one."""
    violations = []
    normal_mail = normal_email(email)
    if normal_mail is not None and (
        len(normal_mail) > MAX_EMAIL
        or normal_mail.count("@") != 1
        or not all(normal_mail.split("@"))
        or any(c.isspace() for c in normal_mail)
    ):
        violations.append(FieldViolation("contact_email", "an e-mail address"))
    digits = normal_phone(phone)
    if phone and (digits is None or not 10 <= len(digits) <= 15 or len(phone) > 32):
        violations.append(FieldViolation("contact_phone", "a phone number of 10-15 digits"))
    if violations:
        raise InvalidArgument(
            "invalid guest contact", reason="CONTACT_INVALID", field_violations=violations
        )
    if normal_mail is None and digits is None:
        raise InvalidArgument(
            "a guest's order needs an e-mail address or a phone number",
            reason="CONTACT_REQUIRED",
            field_violations=[FieldViolation("contact_email", "or contact_phone: required")],
        )
    return normal_mail, digits


@dataclass(frozen=True)
class OrderTokens:
    """A guest's capability for her order: ``HMAC-SHA256(key, "order-token:<order id>")``
    in base64url (256 bits, unguessable; order ids are never enough). Derived, so it is
    stored nowhere and a retried PlaceOrder hands out the same one; it opens only a guest
    order (a customer's is hers through her sign-in)."""

    key: bytes

    def token(self, order_id: uuid.UUID) -> str:
        mac = hmac.new(self.key, f"order-token:{order_id}".encode(), hashlib.sha256)
        return base64.urlsafe_b64encode(mac.digest()).rstrip(b"=").decode()

    def opens(self, order: Order, token: str) -> bool:
        if not order.is_guest or not token or len(token) > 64:
            return False
        return hmac.compare_digest(self.token(order.id).encode(), token.encode())


def order_not_found() -> NotFound:
    return NotFound("no such order", reason="ORDER_NOT_FOUND")


def format_number(sequence: int) -> str:
    """Human-friendly order number: short, unambiguous over the phone, never reused."""
    return f"T-{sequence:06d}"


def check_order_request(cart_etag: str, request_id: str, guest_cart_token: str | None) -> None:
    """A PlaceOrder's own fields (``guest_cart_token``: None for a customer's cart)."""
    violations = []
    if not cart_etag or len(cart_etag) > 128:
        violations.append(FieldViolation("cart_etag", "the cart's etag, 1-128 characters"))
    if not request_id:
        violations.append(FieldViolation("request_id", "required: a checkout is retried"))
    if guest_cart_token is not None and not guest_cart_token:
        violations.append(FieldViolation("cart_token", "required for a guest cart"))
    if guest_cart_token is not None and len(guest_cart_token) > 128:
        violations.append(FieldViolation("cart_token", "at most 128 characters"))
    if violations:
        raise InvalidArgument(
            "invalid order request", reason="ORDER_INVALID", field_violations=violations
        )


def check_payment(method: PaymentMethod | None, card_token: str) -> PaymentMethod:
    if method is None:
        raise InvalidArgument(
            "payment.method is required",
            reason="PAYMENT_METHOD_REQUIRED",
            field_violations=[_violation("payment.method", "CARD, PAY_AT_STORE or KONBINI")],
        )
    if method is PaymentMethod.CARD and not 0 < len(card_token) <= 64:
        raise InvalidArgument(
            "a card payment needs the card token",
            reason="CARD_TOKEN_REQUIRED",
            field_violations=[_violation("payment.card_token", "1-64 characters")],
        )
    if method is not PaymentMethod.CARD and card_token:
        raise InvalidArgument(
            "only card payments take a card",
            reason="CARD_TOKEN_UNEXPECTED",
            field_violations=[_violation("payment.card_token", "must be empty")],
        )
    return method


def check_cart(cart: FrozenCart, *, customer_id: str, etag: str, method: PaymentMethod) -> None:
    """Whether this cart version may become an order of this customer. A cart of someone
    else answers exactly like a missing one."""
    # A guest order ("" customer) takes only a guest cart, a customer's only her own.
    if (cart.customer_id or "") != customer_id:
        raise NotFound("no such cart", reason="CART_NOT_FOUND")
    if not cart.active:
        raise FailedPrecondition(
            "the cart was already checked out or closed", reason="CART_NOT_ACTIVE"
        )
    if cart.etag != etag:
        raise Aborted(
            "the cart changed since it was priced; review it and place the order again",
            reason="CART_CHANGED",
        )
    if not cart.lines:
        raise FailedPrecondition("the cart is empty", reason="CART_EMPTY")
    if len(cart.lines) > MAX_LINES:
        raise FailedPrecondition("the cart has too many lines", reason="CART_TOO_LARGE")
    if cart.fulfillment is None:
        raise FailedPrecondition(
            "choose how the order reaches you first", reason="FULFILLMENT_REQUIRED"
        )
    if not cart.all_offered:
        raise FailedPrecondition(
            "a line is not offered on this channel any more", reason="LINE_NOT_OFFERED"
        )
    if cart.has_price_changes:
        raise Aborted(
            "a price changed since the customer last saw it; show the cart again",
            reason="PRICE_CHANGED",
        )
    if method is PaymentMethod.PAY_AT_STORE and not cart.fulfillment.method.in_store:
        raise FailedPrecondition(
            "paying at the store needs click & collect or carry-out",
            reason="PAY_AT_STORE_NOT_ALLOWED",
        )


def _violation(path: str, description: str) -> FieldViolation:
    return FieldViolation(path, description)
