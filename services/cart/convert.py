"""Proto ⇄ domain translation shared by the cart service's servicers."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp
from google.type import money_pb2

from services.cart.domain import promotions as pd
from services.cart.domain.carts import Fulfillment, FulfillmentMethod, LineItem
from services.cart.events import money
from services.cart.store.promotions import Redemption
from services.cart.usecases.carts import CartView
from tenpo.cart.v1 import resources_pb2 as pb
from tenpo.common.v1 import common_pb2
from tenpo.kit.cache import LRUCache, bounded_cache
from tenpo.kit.errors import FieldViolation, InvalidArgument
from tenpo.kit.wire import timestamp

#: A year 1–9999 Timestamp, as protobuf defines it.
_MIN_SECONDS, _MAX_SECONDS = -62_135_596_800, 253_402_300_799
MAX_AMOUNT = 10**12


def invalid(path: str, description: str, reason: str = "FIELD_INVALID") -> InvalidArgument:
    return InvalidArgument(
        f"{path}: {description}",
        reason=reason,
        field_violations=[FieldViolation(path, description)],
    )


def to_datetime(value: Timestamp, path: str) -> datetime:
    if not (_MIN_SECONDS <= value.seconds <= _MAX_SECONDS and 0 <= value.nanos < 1_000_000_000):
        raise invalid(path, "not a valid timestamp", "TIMESTAMP_INVALID")
    return datetime.fromtimestamp(value.seconds, UTC) + timedelta(microseconds=value.nanos // 1000)


def to_timedelta(value: Duration, path: str) -> timedelta:
    if not (-315_576_000_000 <= value.seconds <= 315_576_000_000) or abs(value.nanos) >= 10**9:
        raise invalid(path, "not a valid duration", "DURATION_INVALID")
    if value.seconds > 0 > value.nanos or value.seconds < 0 < value.nanos:
        raise invalid(path, "seconds and nanos must have the same sign", "DURATION_INVALID")
    return timedelta(seconds=value.seconds, microseconds=value.nanos // 1000)


def amount(value: money_pb2.Money, path: str) -> int:
    """Whole yen from a Money: JPY has no minor unit, so nanos must be 0."""
    if value.currency_code not in ("", "JPY"):
        raise invalid(path, "only JPY is supported", "CURRENCY_UNSUPPORTED")
    if value.nanos or not 0 <= value.units <= MAX_AMOUNT:
        raise invalid(path, "whole yen, 0 to 10^12", "AMOUNT_INVALID")
    return value.units


def _enum(enum_type: Any, value: int, path: str) -> Any:
    try:
        return enum_type(value)
    except ValueError:
        raise invalid(path, "unknown value", "ENUM_INVALID") from None


# -- carts --------------------------------------------------------------------------------


def fulfillment_from(message: pb.Fulfillment) -> Fulfillment:
    method = _enum(FulfillmentMethod, message.method, "cart.fulfillment.method")
    address: dict[str, Any] = {}
    if message.HasField("address"):
        a = message.address
        address = {
            "region_code": a.region_code,
            "postal_code": a.postal_code,
            "administrative_area": a.administrative_area,
            "locality": a.locality,
            "address_lines": list(a.address_lines),
            "recipient": a.recipient,
            "phone_number": a.phone_number,
        }
        if sum(len(str(v)) for v in address.values()) > 2000:
            raise invalid("cart.fulfillment.address", "too long")
    store_id = message.store_id.strip() or None
    if store_id and len(store_id) > 64:
        raise invalid("cart.fulfillment.store_id", "at most 64 characters")
    return Fulfillment(method=method, store_id=store_id, address=address)


def _fulfillment_to(f: Fulfillment) -> pb.Fulfillment:
    out = pb.Fulfillment(method=int(f.method), store_id=f.store_id or "")  # type: ignore[arg-type]
    if f.address:
        a = f.address
        out.address.CopyFrom(
            common_pb2.PostalAddress(
                region_code=a.get("region_code", ""),
                postal_code=a.get("postal_code", ""),
                administrative_area=a.get("administrative_area", ""),
                locality=a.get("locality", ""),
                address_lines=a.get("address_lines", []),
                recipient=a.get("recipient", ""),
                phone_number=a.get("phone_number", ""),
            )
        )
    return out


def _line_to(line: LineItem, discount: int, currency: str) -> pb.LineItem:
    item = pb.LineItem(
        id=str(line.id),
        sku=line.sku,
        quantity=line.quantity,
        product_id=line.product_id,
        title=line.title,
        image_url=line.image_url,
        unit_price=money(line.unit_price, currency),
        subtotal=money(line.subtotal, currency),
        discount=money(discount, currency),
        total=money(line.subtotal - discount, currency),
        tax_rate_percent=line.tax_rate,
        price_changed=line.price_changed,
        offered=line.offered,
        availability=int(line.availability),  # type: ignore[arg-type]
        available_quantity=line.available_quantity or 0,
        channel=line.channel,  # type: ignore[arg-type]
        store_id=line.store_id or "",
        create_time=timestamp(line.created_at),
    )
    if line.regular_price is not None:
        item.regular_unit_price.CopyFrom(money(line.regular_price, currency))
    if line.previous_unit_price is not None:
        item.previous_unit_price.CopyFrom(money(line.previous_unit_price, currency))
    return item


@dataclass(frozen=True)
class _Rendered:
    """A cart's lines as last rendered: the line objects, their discounts, and the message
    holding their ``line_items`` (never changed once kept: renders copy it)."""

    lines: tuple[LineItem, ...]
    discounts: tuple[int, ...]
    currency: str
    message: pb.Cart


class CartRenderer:
    """Carts to protos, starting from the lines of the cart's previous answer. Building the
    line messages (four Money, a Timestamp each) and copying them one by one into the
    answer was most of a 40-line cart's rendering, on every change; lines are immutable and
    a change keeps the objects of the lines it did not touch (the known carts of
    ``store.driver``), so a render copies the cart's last line messages in one C-level
    ``CopyFrom`` and rebuilds only the lines that are not the very same object with the
    same discount at the same position. Identity, not equality, decides, so nothing built
    for another line is ever handed out (the entry holds its lines, whose ids cannot be
    reused meanwhile). Bounded by ``max_lines`` lines in all (0: every line is built).
    Renders do not await, so two of one cart never interleave."""

    def __init__(self, max_lines: int = 0) -> None:
        self._carts: LRUCache[uuid.UUID, _Rendered] | None = (
            bounded_cache(max_lines, getsizeof=lambda rendered: len(rendered.lines) + 1)
            if max_lines
            else None
        )

    def cart(self, view: CartView) -> pb.Cart:
        out = pb.Cart()
        self.render(out, view)
        return out

    def render(self, target: pb.Cart, view: CartView) -> None:
        """Fill ``target`` (an empty message, e.g. a response's ``cart``) with ``view``:
        filling the response's own field saves copying the whole cart into it."""
        target.CopyFrom(self._lines(view))
        target.MergeFrom(_cart_fields(view))

    def _lines(self, view: CartView) -> pb.Cart:
        cart, given = view.cart, view.totals.line_discounts
        lines, currency = cart.lines, cart.currency
        discounts = tuple(given.get(line.id, 0) for line in lines) if given else (0,) * len(lines)
        held = pb.Cart()
        before = self._carts.get(cart.id) if self._carts is not None else None
        if before is None or before.currency != currency:
            held.line_items.extend(
                _line_to(line, discount, currency)
                for line, discount in zip(lines, discounts, strict=True)
            )
        else:
            held.CopyFrom(before.message)
            items = held.line_items
            kept = len(before.lines)
            for index, (line, discount) in enumerate(zip(lines, discounts, strict=True)):
                if index >= kept:
                    items.append(_line_to(line, discount, currency))
                elif before.lines[index] is not line or before.discounts[index] != discount:
                    items[index].CopyFrom(_line_to(line, discount, currency))
            del items[len(lines) :]
        if self._carts is not None:
            try:
                self._carts[cart.id] = _Rendered(lines, discounts, currency, held)
            except ValueError:  # more lines than the whole cache holds: not kept
                self._carts.pop(cart.id, None)
        return held


def cart_to(view: CartView) -> pb.Cart:
    """A cart's message, every line built (no renderer's memory)."""
    return CartRenderer().cart(view)


def _cart_fields(view: CartView) -> pb.Cart:
    """Everything of the cart's message but its lines."""
    cart, totals = view.cart, view.totals
    currency = cart.currency
    return pb.Cart(
        id=str(cart.id),
        customer_id=cart.customer_id or "",
        status=int(cart.status),  # type: ignore[arg-type]
        channel=cart.channel,  # type: ignore[arg-type]
        store_id=cart.store_id or "",
        currency_code=currency,
        fulfillment=_fulfillment_to(cart.fulfillment),
        promotion_codes=list(cart.codes),
        discounts=[
            pb.AppliedDiscount(
                promotion_id=str(a.promotion_id),
                title=a.title,
                code=a.code or "",
                amount=money(a.amount, currency),
            )
            for a in totals.applied
        ],
        rejected_codes=[pb.RejectedCode(code=c, reason=r) for c, r in totals.rejected],
        totals=pb.CartTotals(
            subtotal=money(totals.subtotal, currency),
            discount=money(totals.discount, currency),
            shipping=money(totals.shipping, currency),
            total=money(totals.total, currency),
            taxes=[
                pb.TaxLine(
                    rate_percent=t.rate_percent,
                    taxable_amount=money(t.taxable, currency),
                    tax_amount=money(t.tax, currency),
                )
                for t in totals.taxes
            ],
            loyalty_points=totals.loyalty_points,
            amount_due=money(totals.amount_due, currency),
        ),
        loyalty_points_to_redeem=cart.loyalty_points,
        contact_email=cart.contact_email or "",
        has_price_changes=any(line.previous_unit_price is not None for line in cart.lines),
        etag=cart.etag,
        order_id=cart.order_id or "",
        create_time=timestamp(cart.created_at),
        update_time=timestamp(cart.updated_at),
        availability_check_time=timestamp(cart.availability_checked_at),
    )


# -- promotions ---------------------------------------------------------------------------


def _strings(values: Any, path: str, limit: int = 64) -> frozenset[str]:
    items = [v.strip() for v in values]
    if any(not v or len(v) > limit for v in items):
        raise invalid(path, f"entries of 1–{limit} characters")
    return frozenset(items)


def promotion_from(message: pb.Promotion) -> pd.Promotion:
    """A promotion from a request (id, etag and create_time are the server's)."""
    channels = []
    for i, channel in enumerate(message.channels):
        if channel not in common_pb2.Channel.values() or channel == 0:
            raise invalid(f"promotion.channels[{i}]", "unknown channel", "ENUM_INVALID")
        channels.append(int(channel))
    return pd.Promotion(
        id=uuid.UUID(int=0),
        title=message.title.strip(),
        trigger=_enum(pd.Trigger, message.trigger, "promotion.trigger"),
        kind=_enum(pd.DiscountKind, message.kind, "promotion.kind"),
        code=message.code or None,
        percent_off=message.percent_off,
        amount_off=amount(message.amount_off, "promotion.amount_off"),
        buy_quantity=message.buy_quantity,
        get_quantity=message.get_quantity,
        skus=_strings(message.skus, "promotion.skus"),
        product_ids=_strings(message.product_ids, "promotion.product_ids"),
        category_ids=_strings(message.category_ids, "promotion.category_ids"),
        minimum_subtotal=amount(message.minimum_subtotal, "promotion.minimum_subtotal"),
        channels=frozenset(channels),
        store_ids=_strings(message.store_ids, "promotion.store_ids"),
        valid_from=(
            to_datetime(message.valid_from, "promotion.valid_from")
            if message.HasField("valid_from")
            else None
        ),
        valid_until=(
            to_datetime(message.valid_until, "promotion.valid_until")
            if message.HasField("valid_until")
            else None
        ),
        priority=message.priority,
        stop_further=message.stop_further,
        usage_limit=message.usage_limit,
        usage_limit_per_customer=message.usage_limit_per_customer,
        budget_amount=amount(message.budget_amount, "promotion.budget_amount"),
        budget_redemptions=message.budget_redemptions,
        budget_period=(
            _enum(pd.BudgetPeriod, message.budget_period, "promotion.budget_period")
            if message.budget_period
            else pd.BudgetPeriod.TOTAL
        ),
        active=message.active,
    )


def promotion_changes(message: pb.Promotion, paths: list[str]) -> dict[str, Any]:
    """The new values of the updatable fields named in ``paths`` (the rest of ``message``
    is not read: a partial update need not carry a whole promotion)."""
    values: dict[str, Any] = {}
    for path in paths:
        if path == "valid_from":
            values[path] = (
                to_datetime(message.valid_from, "promotion.valid_from")
                if message.HasField("valid_from")
                else None
            )
        elif path == "valid_until":
            values[path] = (
                to_datetime(message.valid_until, "promotion.valid_until")
                if message.HasField("valid_until")
                else None
            )
        elif path == "budget_amount":
            values[path] = amount(message.budget_amount, "promotion.budget_amount")
        elif path == "title":
            values[path] = message.title.strip()
        else:
            values[path] = getattr(message, path)
    return values


def promotion_to(p: pd.Promotion) -> pb.Promotion:
    return pb.Promotion(
        id=str(p.id),
        title=p.title,
        trigger=int(p.trigger),  # type: ignore[arg-type]
        code=p.code or "",
        kind=int(p.kind),  # type: ignore[arg-type]
        percent_off=p.percent_off,
        amount_off=money(p.amount_off),
        buy_quantity=p.buy_quantity,
        get_quantity=p.get_quantity,
        skus=sorted(p.skus),
        product_ids=sorted(p.product_ids),
        category_ids=sorted(p.category_ids),
        minimum_subtotal=money(p.minimum_subtotal),
        channels=sorted(p.channels),  # type: ignore[arg-type]
        store_ids=sorted(p.store_ids),
        priority=p.priority,
        stop_further=p.stop_further,
        usage_limit=p.usage_limit,
        usage_limit_per_customer=p.usage_limit_per_customer,
        budget_amount=money(p.budget_amount),
        budget_redemptions=p.budget_redemptions,
        budget_period=int(p.budget_period),  # type: ignore[arg-type]
        active=p.active,
        etag=str(p.version),
        valid_from=timestamp(p.valid_from),
        valid_until=timestamp(p.valid_until),
        create_time=timestamp(p.created_at),
    )


def redemption_to(r: Redemption) -> pb.Redemption:
    return pb.Redemption(
        id=str(r.id),
        promotion_id=str(r.promotion_id),
        code=r.code or "",
        order_id=r.order_id,
        cart_id=str(r.cart_id),
        customer_id=r.customer_id or "",
        amount=money(r.amount),
        state=int(r.state),  # type: ignore[arg-type]
        expire_time=timestamp(r.expires_at),
    )
