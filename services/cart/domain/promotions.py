"""Promotions: who gets which discount, in which order, and the limits on their use.

Invariants:
- promotions apply in ``(priority, id)`` order; each discounts what earlier ones left of a
  line, so the sum of a line's discounts never exceeds its subtotal;
- a promotion that applies with ``stop_further`` ends the sequence;
- usage limits, per-customer limits, budgets and single use are decided when an order
  reserves its redemptions, under the promotion's row lock (see ``check_redemption``): a
  cart shows a discount, an order is what spends it.
"""

from __future__ import annotations

import re
import secrets
import unicodedata
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from enum import IntEnum

from services.cart.domain.pricing import allocate
from tenpo.kit.errors import FailedPrecondition, FieldViolation, InvalidArgument

JST = timezone(timedelta(hours=9), "JST")
#: Personal codes: no look-alikes (0/O, 1/I/L), 12 characters ≈ 59 bits — with the
#: per-principal limit on wrong codes, guessing is hopeless.
CODE_ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
PERSONAL_CODE_LENGTH = 12
MAX_CODE_LENGTH = 32
_CODE = re.compile(r"^[A-Z0-9][A-Z0-9_-]{1,31}$")
MAX_SCOPE_ENTRIES = 200


class DiscountKind(IntEnum):
    PERCENT = 1
    AMOUNT = 2
    BUY_X_GET_Y = 3


class Trigger(IntEnum):
    AUTOMATIC = 1
    CODE = 2


class BudgetPeriod(IntEnum):
    TOTAL = 1
    DAY = 2
    MONTH = 3


class RedemptionState(IntEnum):
    RESERVED = 1
    COMMITTED = 2
    RELEASED = 3
    #: Committed, then given back (an order cancelled unpaid): counts no more.
    RETURNED = 4


def normalize_code(raw: str, path: str = "code") -> str:
    """The canonical spelling of a code: trimmed, upper case. Refuses what no code can be.
    NFKC first: a phone's Japanese input in full-width mode types ＷＩＮＴＥＲ１０ for the
    WINTER10 printed in the mail, which is the same code to the customer."""
    code = unicodedata.normalize("NFKC", raw).strip().upper()
    if not _CODE.fullmatch(code):
        raise InvalidArgument(
            "a promotion code is 2–32 letters, digits, '-' or '_'",
            reason="CODE_INVALID",
            field_violations=[FieldViolation(path, "2–32 letters, digits, '-' or '_'")],
        )
    return code


def new_personal_code() -> str:
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(PERSONAL_CODE_LENGTH))


@dataclass(frozen=True)
class Promotion:
    id: uuid.UUID
    title: str
    trigger: Trigger
    kind: DiscountKind
    code: str | None = None
    percent_off: int = 0
    amount_off: int = 0
    buy_quantity: int = 0
    get_quantity: int = 0
    skus: frozenset[str] = frozenset()
    product_ids: frozenset[str] = frozenset()
    category_ids: frozenset[str] = frozenset()
    minimum_subtotal: int = 0
    channels: frozenset[int] = frozenset()
    store_ids: frozenset[str] = frozenset()
    valid_from: datetime | None = None
    valid_until: datetime | None = None
    priority: int = 100
    stop_further: bool = False
    usage_limit: int = 0
    usage_limit_per_customer: int = 0
    budget_amount: int = 0
    budget_redemptions: int = 0
    budget_period: BudgetPeriod = BudgetPeriod.TOTAL
    active: bool = True
    version: int = 1
    created_at: datetime | None = None

    def validate(self) -> Promotion:
        """Raise InvalidArgument naming every inconsistent field; return self."""
        problems: list[FieldViolation] = []

        def bad(path: str, why: str) -> None:
            problems.append(FieldViolation(f"promotion.{path}", why))

        if not self.title.strip() or len(self.title) > 200:
            bad("title", "1–200 characters")
        if self.kind is DiscountKind.PERCENT and not 1 <= self.percent_off <= 100:
            bad("percent_off", "1–100 for a percent discount")
        if self.kind is DiscountKind.AMOUNT and self.amount_off <= 0:
            bad("amount_off", "positive for an amount discount")
        if self.kind is DiscountKind.BUY_X_GET_Y and not (
            1 <= self.buy_quantity <= 100 and 1 <= self.get_quantity <= 100
        ):
            bad("buy_quantity", "buy and get quantities 1–100 for buy-X-get-Y")
        if self.trigger is Trigger.AUTOMATIC and self.code:
            bad("code", "an automatic promotion has no code")
        for name in ("minimum_subtotal", "usage_limit", "usage_limit_per_customer"):
            if getattr(self, name) < 0:
                bad(name, "must not be negative")
        if self.budget_amount < 0 or self.budget_redemptions < 0:
            bad("budget_amount", "must not be negative")
        if self.valid_from and self.valid_until and self.valid_until <= self.valid_from:
            bad("valid_until", "must be after valid_from")
        for name in ("skus", "product_ids", "category_ids", "channels", "store_ids"):
            if len(getattr(self, name)) > MAX_SCOPE_ENTRIES:
                bad(name, f"at most {MAX_SCOPE_ENTRIES} entries")
        if problems:
            raise InvalidArgument(
                "the promotion is inconsistent",
                reason="PROMOTION_INVALID",
                field_violations=problems,
            )
        return self

    def in_window(self, now: datetime) -> bool:
        if self.valid_from is not None and now < self.valid_from:
            return False
        return self.valid_until is None or now < self.valid_until

    def scoped(self) -> bool:
        return bool(self.skus or self.product_ids or self.category_ids)

    def covers(self, line: PricedLine) -> bool:
        if not self.scoped():
            return True
        return (
            line.sku in self.skus
            or line.product_id in self.product_ids
            or not self.category_ids.isdisjoint(line.category_ids)
        )


@dataclass(frozen=True)
class PromotionCode:
    """A code of a code promotion: the promotion's public code, or a personal single-use
    code issued to one customer for a while (optionally only for named SKUs)."""

    code: str
    promotion_id: uuid.UUID
    customer_id: str | None = None
    skus: frozenset[str] = frozenset()
    expires_at: datetime | None = None
    #: Reserved or committed by an order already (personal codes are single-use).
    used: bool = False

    @property
    def personal(self) -> bool:
        return self.customer_id is not None


@dataclass(frozen=True)
class PricedLine:
    """What promotions see of a cart line."""

    line_id: uuid.UUID
    sku: str
    product_id: str
    category_ids: frozenset[str]
    unit_price: int
    quantity: int

    @property
    def subtotal(self) -> int:
        return self.unit_price * self.quantity


@dataclass(frozen=True)
class Context:
    """Where and for whom a cart is evaluated."""

    channel: int
    store_id: str | None
    customer_id: str | None
    now: datetime


@dataclass(frozen=True)
class AppliedDiscount:
    promotion_id: uuid.UUID
    title: str
    code: str | None
    amount: int
    #: Share of each line, by line id.
    shares: Mapping[uuid.UUID, int]


@dataclass(frozen=True)
class Evaluation:
    applied: list[AppliedDiscount] = field(default_factory=list)
    #: (code, reason) for entered codes that give nothing now.
    rejected: list[tuple[str, str]] = field(default_factory=list)

    def line_discounts(self) -> dict[uuid.UUID, int]:
        total: dict[uuid.UUID, int] = {}
        for applied in self.applied:
            for line_id, share in applied.shares.items():
                total[line_id] = total.get(line_id, 0) + share
        return total


def code_refusal(code: PromotionCode | None, customer_id: str | None, now: datetime) -> str | None:
    """Why an entered code cannot be used by this customer at all, or None. A code that
    does not exist and another customer's personal code give the same answer: the reason
    never reveals that a code exists for someone else."""
    if code is None or (code.personal and code.customer_id != customer_id):
        return "CODE_NOT_FOUND"
    if code.expires_at is not None and now >= code.expires_at:
        return "CODE_EXPIRED"
    if code.personal and code.used:
        return "CODE_ALREADY_USED"
    return None


def _condition_refusal(promotion: Promotion, ctx: Context, offered_subtotal: int) -> str | None:
    if not promotion.active or not promotion.in_window(ctx.now):
        return "PROMOTION_NOT_ACTIVE"
    if promotion.channels and ctx.channel not in promotion.channels:
        return "CHANNEL_NOT_ELIGIBLE"
    if promotion.store_ids and ctx.store_id not in promotion.store_ids:
        return "STORE_NOT_ELIGIBLE"
    if offered_subtotal < promotion.minimum_subtotal:
        return "MINIMUM_SUBTOTAL_NOT_REACHED"
    return None


def _discount(
    promotion: Promotion, lines: Sequence[PricedLine], remaining: Mapping[uuid.UUID, int]
) -> dict[uuid.UUID, int]:
    """Each eligible line's share of the promotion's discount, within what is left of it."""
    if not lines:
        return {}
    weights = [remaining[line.line_id] for line in lines]
    if promotion.kind is DiscountKind.BUY_X_GET_Y:
        group = promotion.buy_quantity + promotion.get_quantity
        units = sorted(
            (line.unit_price, index)
            for index, line in enumerate(lines)
            for _ in range(line.quantity)
        )
        free = len(units) // group * promotion.get_quantity
        shares = [0] * len(lines)
        for price, index in units[:free]:  # the cheapest units are the free ones
            shares[index] += price
        shares = [min(share, weight) for share, weight in zip(shares, weights, strict=True)]
    else:
        base = sum(weights)
        if promotion.kind is DiscountKind.PERCENT:
            amount = base * promotion.percent_off // 100
        else:
            amount = min(promotion.amount_off, base)
        shares = allocate(amount, weights)
    return {line.line_id: s for line, s in zip(lines, shares, strict=True) if s > 0}


def evaluate(
    lines: Sequence[PricedLine],
    automatic: Iterable[Promotion],
    entered: Sequence[tuple[str, PromotionCode | None, Promotion | None]],
    ctx: Context,
) -> Evaluation:
    """The discounts a cart gets now: automatic promotions and the promotions of entered
    codes, in ``(priority, id)`` order. ``entered`` holds each code as typed with what was
    found for it."""
    result = Evaluation()
    offered_subtotal = sum(line.subtotal for line in lines)
    candidates: list[tuple[Promotion, PromotionCode | None]] = [(p, None) for p in automatic]
    for text, code, promotion in entered:
        refusal = code_refusal(code, ctx.customer_id, ctx.now)
        if refusal is None and promotion is None:
            refusal = "CODE_NOT_FOUND"
        if refusal is not None:
            result.rejected.append((text, refusal))
            continue
        assert promotion is not None
        assert code is not None
        candidates.append((promotion, code))
    seen: set[uuid.UUID] = set()
    remaining = {line.line_id: line.subtotal for line in lines}
    for promotion, code in sorted(candidates, key=lambda c: (c[0].priority, str(c[0].id))):
        label = code.code if code else None
        if promotion.id in seen:  # two codes of one promotion give its discount once
            if label:
                result.rejected.append((label, "PROMOTION_ALREADY_APPLIED"))
            continue
        refusal = _condition_refusal(promotion, ctx, offered_subtotal)
        eligible = [
            line
            for line in lines
            if promotion.covers(line)
            and (not code or not code.skus or line.sku in code.skus)
            and remaining[line.line_id] > 0
        ]
        shares = {} if refusal else _discount(promotion, eligible, remaining)
        if not shares:
            if label:
                result.rejected.append((label, refusal or "NO_ELIGIBLE_ITEMS"))
            continue
        seen.add(promotion.id)
        for line_id, share in shares.items():
            remaining[line_id] -= share
        result.applied.append(
            AppliedDiscount(promotion.id, promotion.title, label, sum(shares.values()), shares)
        )
        if promotion.stop_further:
            break
    return result


# --- redemptions ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Usage:
    """Live uses (committed, or reserved and not expired) of a promotion, counted under its
    row lock when an order reserves a redemption."""

    total: int = 0
    by_customer: int = 0
    in_period: int = 0
    amount_in_period: int = 0
    code_used: bool = False


def budget_period_start(period: BudgetPeriod, now: datetime) -> datetime | None:
    """Start of the budget period containing ``now`` (Japan time); None for TOTAL."""
    local = now.astimezone(JST)
    if period is BudgetPeriod.DAY:
        return local.replace(hour=0, minute=0, second=0, microsecond=0)
    if period is BudgetPeriod.MONTH:
        return local.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return None


def check_redemption(
    promotion: Promotion,
    code: PromotionCode | None,
    usage: Usage,
    amount: int,
    customer_id: str | None,
) -> None:
    """Raise FailedPrecondition (with the promotion id) when this use would break a limit."""

    def refuse(reason: str, message: str) -> FailedPrecondition:
        return FailedPrecondition(
            message, reason=reason, metadata={"promotion_id": str(promotion.id)}
        )

    if code is not None and code.personal and (usage.code_used or code.used):
        raise refuse("CODE_ALREADY_USED", "the single-use code was used already")
    if promotion.usage_limit and usage.total >= promotion.usage_limit:
        raise refuse("USAGE_LIMIT_REACHED", "the promotion has been used up")
    if (
        promotion.usage_limit_per_customer
        and customer_id
        and usage.by_customer >= promotion.usage_limit_per_customer
    ):
        raise refuse("CUSTOMER_USAGE_LIMIT_REACHED", "the customer used the promotion up")
    if promotion.budget_redemptions and usage.in_period >= promotion.budget_redemptions:
        raise refuse("BUDGET_EXHAUSTED", "the promotion's budget of redemptions is spent")
    if promotion.budget_amount and usage.amount_in_period + amount > promotion.budget_amount:
        raise refuse("BUDGET_EXHAUSTED", "the promotion's discount budget is spent")
