"""Fulfilment domain: how a placed order is split into fulfilments, each fulfilment's
lifecycle, pickup codes, and what the fulfilments say about their order. No I/O.

Invariants:
- A placed order has one fulfilment per source location of its inventory plan, all of the
  order's fulfilment method; their amounts add up to the order total exactly.
- A fulfilment moves only forwards (``_NEXT``); a transition to the state it is already in
  is a no-op (a retried call answers as the first), any other is FULFILLMENT_STATE_CONFLICT.
- Money is captured only once the goods left (shipped, picked up, handed over): such a
  fulfilment's capture is DUE until it is CAPTURED; a cancelled one is never captured.
- An order is COMPLETED when every fulfilment is done and at least one was not cancelled;
  every one cancelled cancels the order.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import IntEnum

from services.order.domain.orders import FulfillmentMethod, Order, OrderStatus, PaymentState
from tenpo.kit.errors import FailedPrecondition, FieldViolation, InvalidArgument

#: Unambiguous on a receipt or read aloud: consonants only (no 0/O, 1/I, no words).
PICKUP_CODE_ALPHABET = "BCDFGHJKLMNPQRSTVWXZ"
#: 20^8 ≈ 2.6e10 codes; with 5 tries per 15 minutes a guess succeeds about once in 10^9
#: years of trying.
PICKUP_CODE_LENGTH = 8
PICKUP_CODE_MAX_FAILURES = 5
PICKUP_CODE_LOCK = timedelta(minutes=15)
MAX_CARRIER, MAX_TRACKING = 32, 64


class FulfillmentType(IntEnum):
    DELIVERY = 1
    SAME_DAY = 2
    CLICK_AND_COLLECT = 3
    CARRY_OUT = 4


class FulfillmentStatus(IntEnum):
    PREPARING = 1
    READY_FOR_PICKUP = 2
    PICKED_UP = 3
    SHIPPED = 4
    OUT_FOR_DELIVERY = 5
    DELIVERED = 6
    HANDED_OVER = 7
    CANCELLED = 8
    PICKED = 9
    PACKED = 10


class CaptureState(IntEnum):
    NOT_DUE = 1
    DUE = 2
    CAPTURED = 3
    RELEASED = 4


_TYPE_OF = {
    FulfillmentMethod.DELIVERY: FulfillmentType.DELIVERY,
    FulfillmentMethod.SAME_DAY: FulfillmentType.SAME_DAY,
    FulfillmentMethod.PICKUP: FulfillmentType.CLICK_AND_COLLECT,
    FulfillmentMethod.CARRY_OUT: FulfillmentType.CARRY_OUT,
}
_S = FulfillmentStatus
#: The forward moves of each type (CANCELLED is reachable from any state before the goods
#: left, see ``Fulfilment.cancel``).
_NEXT: Mapping[FulfillmentType, Mapping[FulfillmentStatus, frozenset[FulfillmentStatus]]] = {
    # Picking and packing are optional steps: a store that does not record them marks a
    # fulfilment ready or shipped straight away.
    FulfillmentType.CLICK_AND_COLLECT: {
        _S.PREPARING: frozenset({_S.PICKED, _S.READY_FOR_PICKUP}),
        _S.PICKED: frozenset({_S.PACKED, _S.READY_FOR_PICKUP}),
        _S.PACKED: frozenset({_S.READY_FOR_PICKUP}),
        _S.READY_FOR_PICKUP: frozenset({_S.PICKED_UP}),
    },
    FulfillmentType.DELIVERY: {
        _S.PREPARING: frozenset({_S.PICKED, _S.SHIPPED}),
        _S.PICKED: frozenset({_S.PACKED, _S.SHIPPED}),
        _S.PACKED: frozenset({_S.SHIPPED}),
        _S.SHIPPED: frozenset({_S.OUT_FOR_DELIVERY, _S.DELIVERED}),
        _S.OUT_FOR_DELIVERY: frozenset({_S.DELIVERED}),
    },
    FulfillmentType.CARRY_OUT: {},
}
_NEXT = {**_NEXT, FulfillmentType.SAME_DAY: _NEXT[FulfillmentType.DELIVERY]}
_LEFT = frozenset({_S.PICKED_UP, _S.SHIPPED, _S.OUT_FOR_DELIVERY, _S.DELIVERED, _S.HANDED_OVER})
#: What a store still has to work on.
OPEN_STATUSES = frozenset({_S.PREPARING, _S.PICKED, _S.PACKED, _S.READY_FOR_PICKUP})
_DONE = frozenset({_S.PICKED_UP, _S.DELIVERED, _S.HANDED_OVER, _S.CANCELLED})


@dataclass(frozen=True)
class FulfillmentPolicy:
    #: A click & collect fulfilment is due ready this long after the order was placed.
    pickup_preparation: timedelta = timedelta(hours=2)
    #: How long ready goods wait at the store (ORDER_PICKUP_HOLD_DAYS).
    pickup_hold: timedelta = timedelta(days=7)
    #: A delivery is due to ship this long after placement.
    delivery_dispatch: timedelta = timedelta(hours=24)
    #: Same day: the promised window starts and ends this long after placement.
    same_day_window: tuple[timedelta, timedelta] = (timedelta(hours=2), timedelta(hours=6))


@dataclass(frozen=True)
class FulfillmentLine:
    sku: str
    quantity: int


@dataclass(frozen=True)
class Fulfilment:
    id: uuid.UUID
    order_id: uuid.UUID
    number: str
    type: FulfillmentType
    status: FulfillmentStatus
    location_id: str
    #: The store that acts on it: its devices see and work on it, nobody else's.
    store_id: str
    lines: tuple[FulfillmentLine, ...]
    amount: int
    capture_state: CaptureState
    due_at: datetime
    window: tuple[datetime, datetime] | None = None
    #: The pickup code is never stored: it is derived from this random nonce with the
    #: service's key (``PickupCodes``), so a reader of the database alone learns nothing.
    pickup_nonce: str | None = None
    #: The keyed digest the code given at the POS is compared with.
    pickup_code_digest: bytes | None = None
    hold_until: datetime | None = None
    ready_at: datetime | None = None
    carrier: str = ""
    tracking_number: str = ""
    shipped_at: datetime | None = None
    cancel_reason: str = ""
    code_failures: int = 0
    code_locked_until: datetime | None = None
    updated_at: datetime | None = None

    @property
    def done(self) -> bool:
        return self.status in _DONE

    @property
    def left(self) -> bool:
        """The goods left the store or warehouse: money is owed."""
        return self.status in _LEFT

    def mark_ready(self, now: datetime, hold: timedelta, codes: PickupCodes) -> Fulfilment:
        if self.status is _S.READY_FOR_PICKUP:
            return self
        self._move(_S.READY_FOR_PICKUP)
        nonce = secrets.token_hex(16)
        return replace(
            self,
            status=_S.READY_FOR_PICKUP,
            pickup_nonce=nonce,
            pickup_code_digest=codes.digest(self.id, codes.code(self.id, nonce)),
            ready_at=now,
            hold_until=now + hold,
        )

    def code_locked(self, now: datetime) -> bool:
        return self.code_locked_until is not None and now < self.code_locked_until

    def code_matches(self, code: str, codes: PickupCodes) -> bool:
        """Compares keyed digests in constant time: as long for a near miss as for a far
        one, and the code itself is never kept."""
        expected = self.pickup_code_digest
        given = codes.digest(self.id, normalize_code(code))
        return bool(expected) and hmac.compare_digest(expected or b"", given)

    def code_refused(self, now: datetime) -> Fulfilment:
        """One more wrong code; the last one allowed locks codes out for a while."""
        failures = self.code_failures + 1
        if failures >= PICKUP_CODE_MAX_FAILURES:
            return replace(self, code_failures=0, code_locked_until=now + PICKUP_CODE_LOCK)
        return replace(self, code_failures=failures)

    def pick_up(self) -> Fulfilment:
        if self.status is _S.PICKED_UP:
            return self
        self._move(_S.PICKED_UP)
        return replace(self, status=_S.PICKED_UP, capture_state=CaptureState.DUE)

    def ship(self, carrier: str, tracking_number: str, now: datetime) -> Fulfilment:
        if self.status is _S.SHIPPED and (self.carrier, self.tracking_number) == (
            carrier,
            tracking_number,
        ):
            return self
        self._move(_S.SHIPPED)
        return replace(
            self,
            status=_S.SHIPPED,
            carrier=carrier,
            tracking_number=tracking_number,
            shipped_at=now,
            capture_state=CaptureState.DUE,
        )

    def advance_delivery(self, status: FulfillmentStatus) -> Fulfilment:
        if self.status is status or (self.status is _S.DELIVERED and status is _S.OUT_FOR_DELIVERY):
            return self  # a late or repeated carrier update changes nothing
        self._move(status)
        return replace(self, status=status)

    def cancel(self, reason: str) -> Fulfilment:
        if self.status is _S.CANCELLED:
            return self
        if self.left:
            raise FailedPrecondition(
                "the goods of this fulfilment already left; return them instead",
                reason="FULFILLMENT_ALREADY_LEFT",
                metadata={"fulfillment_id": str(self.id), "status": self.status.name},
            )
        return replace(
            self,
            status=_S.CANCELLED,
            cancel_reason=reason,
            capture_state=CaptureState.RELEASED,
        )

    def picked(self, kept: tuple[FulfillmentLine, ...], amount: int) -> Fulfilment:
        """Picked with ``kept``, the units found (the others were split off)."""
        if self.status is _S.PICKED and kept == self.lines:
            return self
        self._move(_S.PICKED)
        return replace(self, status=_S.PICKED, lines=kept, amount=amount)

    def not_found(self, nowhere: tuple[FulfillmentLine, ...], amount: int) -> Fulfilment:
        """Nothing of it was on the shelf: cancelled, keeping the units found nowhere else
        (the others were re-sourced into fulfilments of their own)."""
        reason = "NOT_FOUND_ANYWHERE" if nowhere else "RESOURCED"
        return replace(self.cancel(reason), lines=nowhere, amount=amount)

    def packed(self) -> Fulfilment:
        if self.status is _S.PACKED:
            return self
        self._move(_S.PACKED)
        return replace(self, status=_S.PACKED)

    def derived(
        self,
        seq: int,
        order_number: str,
        location: str,
        lines: tuple[FulfillmentLine, ...],
        amount: int,
        *,
        cancelled: bool = False,
    ) -> Fulfilment:
        """Units split off this fulfilment: re-sourced at ``location`` (a new fulfilment to
        prepare), or cancelled (found nowhere)."""
        store = self.store_id
        if self.type not in (FulfillmentType.CLICK_AND_COLLECT, FulfillmentType.CARRY_OUT):
            store = location
        fresh = replace(
            self,
            id=uuid.uuid4(),
            number=f"{order_number}-{seq}",
            status=_S.PREPARING,
            location_id=location,
            store_id=store,
            lines=lines,
            amount=amount,
            capture_state=CaptureState.NOT_DUE,
            pickup_nonce=None,
            pickup_code_digest=None,
            hold_until=None,
            ready_at=None,
            updated_at=None,
        )
        if cancelled:
            return replace(
                fresh,
                status=_S.CANCELLED,
                cancel_reason="NOT_FOUND_ANYWHERE",
                capture_state=CaptureState.RELEASED,
            )
        return fresh

    def captured(self) -> Fulfilment:
        return replace(self, capture_state=CaptureState.CAPTURED)

    def _move(self, target: FulfillmentStatus) -> None:
        if target not in _NEXT[self.type].get(self.status, frozenset()):
            raise FailedPrecondition(
                f"a {self.type.name.lower()} fulfilment that is {self.status.name.lower()} "
                f"cannot become {target.name.lower()}",
                reason="FULFILLMENT_STATE_CONFLICT",
                metadata={"status": self.status.name, "type": self.type.name},
            )


@dataclass(frozen=True)
class PickupCodes:
    """Pickup codes under the service's secret key.

    A code is ``HMAC(key, "code:<fulfilment>:<nonce>")`` spelled in the code alphabet: the
    database holds only the random nonce and ``HMAC(key, "digest:<fulfilment>:<code>")``,
    so neither a copy of the database nor a backup reveals a code, while the service can
    show the customer her code again (the app, ``WatchOrder``) without storing it. Who has
    the key *and* the database can compute codes — as with any keyed hash of a short code
    (2.6·10¹⁰ codes are quickly tried offline); keep the key in the secret store.
    Rotating the key changes the codes of pickups that are ready: rotate between waves,
    or accept that customers see new codes (their apps refresh)."""

    key: bytes

    def __post_init__(self) -> None:
        if len(self.key) < 16:
            raise ValueError("a pickup-code key has at least 16 bytes")

    def code(self, fulfilment_id: uuid.UUID, nonce: str) -> str:
        mac = hmac.new(self.key, f"code:{fulfilment_id}:{nonce}".encode(), hashlib.sha256)
        # 64 bits reduced to 20^8 ≈ 2^34.6: the bias is below 2^-29, far under a guess.
        value = int.from_bytes(mac.digest()[:8], "big")
        letters = []
        for _ in range(PICKUP_CODE_LENGTH):
            value, digit = divmod(value, len(PICKUP_CODE_ALPHABET))
            letters.append(PICKUP_CODE_ALPHABET[digit])
        return "".join(letters)

    def digest(self, fulfilment_id: uuid.UUID, code: str) -> bytes:
        return hmac.new(
            self.key, f"digest:{fulfilment_id}:{code}".encode(), hashlib.sha256
        ).digest()

    def shown(self, fulfilment: Fulfilment) -> str | None:
        """The code the fulfilment's customer is shown (None: none issued, or issued
        before codes were derived — that code was shown then and still verifies)."""
        if fulfilment.pickup_nonce is None:
            return None
        return self.code(fulfilment.id, fulfilment.pickup_nonce)


def normalize_code(code: str) -> str:
    """What a person types: any case, spaces or dashes between groups."""
    return code.upper().replace("-", "").replace(" ", "")


def qr_payload(fulfilment: Fulfilment, code: str) -> str:
    """What the customer's phone shows and the store's POS or kiosk scans."""
    return f"tenpo:pickup:{fulfilment.order_id}:{fulfilment.id}:{code}"


def check_pickup_code(code: str) -> str:
    normalized = normalize_code(code)
    if len(normalized) != PICKUP_CODE_LENGTH or not set(normalized) <= set(PICKUP_CODE_ALPHABET):
        raise InvalidArgument(
            "a pickup code is 8 letters",
            reason="PICKUP_CODE_INVALID",
            field_violations=[FieldViolation("pickup_code", "8 letters, as on the receipt")],
        )
    return normalized


def check_shipment(carrier: str, tracking_number: str) -> None:
    violations = []
    if not (0 < len(carrier) <= MAX_CARRIER) or not _is_token(carrier, lower=True):
        violations.append(
            FieldViolation("carrier", f"lowercase letters, digits, dashes; 1-{MAX_CARRIER}")
        )
    if not (0 < len(tracking_number) <= MAX_TRACKING) or not _is_token(tracking_number):
        violations.append(
            FieldViolation("tracking_number", f"letters, digits, dashes; 1-{MAX_TRACKING}")
        )
    if violations:
        raise InvalidArgument(
            "invalid shipment", reason="SHIPMENT_INVALID", field_violations=violations
        )


def check_delivery_status(status: FulfillmentStatus | None) -> FulfillmentStatus:
    if status not in (_S.OUT_FOR_DELIVERY, _S.DELIVERED):
        raise InvalidArgument(
            "a delivery update is OUT_FOR_DELIVERY or DELIVERED",
            reason="DELIVERY_STATUS_INVALID",
            field_violations=[FieldViolation("status", "OUT_FOR_DELIVERY or DELIVERED")],
        )
    return status


def _is_token(value: str, *, lower: bool = False) -> bool:
    allowed = "abcdefghijklmnopqrstuvwxyz0123456789-"
    if not lower:
        allowed += "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    return all(c in allowed for c in value)


# ---------------------------------------------------------------------- splitting


def split(
    order: Order,
    plan: Mapping[str, Sequence[tuple[str, int]]],
    now: datetime,
    policy: FulfillmentPolicy,
) -> list[Fulfilment]:
    """One fulfilment per source location of the plan, in the plan's order."""
    assert order.fulfillment is not None, "a placed order has a fulfilment method"
    kind = _TYPE_OF[order.fulfillment.method]
    by_location: dict[str, list[FulfillmentLine]] = {}
    for sku, parts in plan.items():
        for location, units in parts:
            by_location.setdefault(location, []).append(FulfillmentLine(sku, int(units)))
    # Weights: each location's share of the line totals (a line split over locations
    # counts by units); the order total (shipping, order discounts) follows them.
    weights = [line_weight(order, items) for items in by_location.values()]
    amounts = allocate(order.totals.total, weights)
    fulfilments = []
    for seq, ((location, items), amount) in enumerate(
        zip(by_location.items(), amounts, strict=True), start=1
    ):
        store = location
        if kind in (FulfillmentType.CLICK_AND_COLLECT, FulfillmentType.CARRY_OUT):
            store = order.fulfillment.store_id or location
        fulfilments.append(
            _new(order, seq, kind, location, store, tuple(items), amount, now, policy)
        )
    return fulfilments


def _new(
    order: Order,
    seq: int,
    kind: FulfillmentType,
    location: str,
    store: str,
    lines: tuple[FulfillmentLine, ...],
    amount: int,
    now: datetime,
    policy: FulfillmentPolicy,
) -> Fulfilment:
    fulfilment = Fulfilment(
        id=uuid.uuid4(),
        order_id=order.id,
        number=f"{order.number}-{seq}",
        type=kind,
        status=_S.PREPARING,
        location_id=location,
        store_id=store,
        lines=lines,
        amount=amount,
        capture_state=CaptureState.NOT_DUE,
        due_at=now,
    )
    match kind:
        case FulfillmentType.CARRY_OUT:
            # Handed over at the till as it is bought: the money is owed at once.
            return replace(fulfilment, status=_S.HANDED_OVER, capture_state=CaptureState.DUE)
        case FulfillmentType.CLICK_AND_COLLECT:
            return replace(fulfilment, due_at=now + policy.pickup_preparation)
        case FulfillmentType.SAME_DAY:
            start, end = (now + offset for offset in policy.same_day_window)
            return replace(fulfilment, due_at=start, window=(start, end))
        case FulfillmentType.DELIVERY:
            return replace(fulfilment, due_at=now + policy.delivery_dispatch)
    raise AssertionError(kind)


def allocate(total: int, weights: Sequence[int]) -> list[int]:
    """Split ``total`` in proportion to ``weights`` into whole units that add up exactly
    (largest remainders get the leftover units; equal weights when all are zero)."""
    if not weights:
        return []
    if sum(weights) <= 0:
        weights = [1] * len(weights)
    whole = sum(weights)
    shares = [total * w // whole for w in weights]
    remainders = sorted(range(len(weights)), key=lambda i: (-(total * weights[i] % whole), i))
    for i in remainders[: total - sum(shares)]:
        shares[i] += 1
    return shares


# ---------------------------------------------------------------------- the order


def order_after(order: Order, fulfilments: Iterable[Fulfilment]) -> Order:
    """The order's status and payment state as its fulfilments make them: a placed order
    completes or is cancelled; a completed one's captures may still land after it; any
    other stays as it is."""
    items = list(fulfilments)
    if order.status not in (OrderStatus.PLACED, OrderStatus.COMPLETED) or not items:
        return order
    payment = order.payment_state
    kept = [f for f in items if f.status is not _S.CANCELLED]
    captured = [f for f in kept if f.capture_state is CaptureState.CAPTURED]
    if kept and len(captured) == len(kept):
        payment = PaymentState.CAPTURED
    elif captured:
        payment = PaymentState.PARTIALLY_CAPTURED
    updated = order.with_payment(payment)
    if order.status is OrderStatus.PLACED and all(f.done for f in items):
        if kept:
            return replace(updated, status=OrderStatus.COMPLETED)
        reasons = {f.cancel_reason for f in items}
        reason = reasons.pop() if len(reasons) == 1 else "FULFILLMENTS_CANCELLED"
        return replace(updated, status=OrderStatus.CANCELLED, failure_reason=reason)
    return updated


def require_cancellable(fulfilments: Iterable[Fulfilment]) -> None:
    """An order is cancelled as a whole only while none of its fulfilments is done (goods
    left, or a pickup already expired and released on its own)."""
    done = [f for f in fulfilments if f.done or f.left]
    if done:
        raise FailedPrecondition(
            "part of the order already left or was released; return it instead",
            reason="ORDER_NOT_CANCELLABLE",
            metadata={"fulfillment_status": done[0].status.name},
        )


def check_missing(
    fulfilment: Fulfilment, missing: Iterable[FulfillmentLine]
) -> tuple[tuple[FulfillmentLine, ...], tuple[FulfillmentLine, ...]]:
    """(kept, missing) units of a pick: the missing must be units of the fulfilment."""
    have = {line.sku: line.quantity for line in fulfilment.lines}
    wanted: dict[str, int] = {}
    for index, line in enumerate(missing):
        if line.quantity <= 0 or line.sku not in have:
            raise InvalidArgument(
                "a missing line must be units of the fulfilment",
                reason="MISSING_LINE_INVALID",
                field_violations=[
                    FieldViolation(f"missing_lines[{index}]", "a SKU of it, 1 unit or more")
                ],
            )
        wanted[line.sku] = wanted.get(line.sku, 0) + line.quantity
        if wanted[line.sku] > have[line.sku]:
            raise InvalidArgument(
                "more units missing than the fulfilment has",
                reason="MISSING_LINE_INVALID",
                field_violations=[
                    FieldViolation(f"missing_lines[{index}].quantity", "at most the units in it")
                ],
            )
    kept = tuple(
        FulfillmentLine(line.sku, line.quantity - wanted.get(line.sku, 0))
        for line in fulfilment.lines
        if line.quantity > wanted.get(line.sku, 0)
    )
    return kept, tuple(FulfillmentLine(sku, units) for sku, units in wanted.items())


def line_weight(order: Order, lines: Iterable[FulfillmentLine]) -> int:
    """What units are worth in the order (their share of the line totals)."""
    unit_totals = {line.sku: (line.total, max(line.quantity, 1)) for line in order.lines}
    return sum(
        unit_totals.get(item.sku, (0, 1))[0] * item.quantity // unit_totals.get(item.sku, (0, 1))[1]
        for item in lines
    )
