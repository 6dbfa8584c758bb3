"""Totals the Japanese way: tax-inclusive prices, discounts allocated to lines before tax,
consumption tax computed once per rate on the whole cart and rounded down.

Amounts are integers in the currency's smallest unit; JPY has no minor unit, so one unit is
one yen. Nothing here assumes two decimals."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

#: Rate of the shipping fee: a service, taxed at the standard rate.
SHIPPING_TAX_RATE = 10


def allocate(amount: int, weights: Sequence[int]) -> list[int]:
    """Split ``amount`` over ``weights`` in proportion, in whole units, summing exactly to
    ``amount`` (largest remainder; ties go to the earlier weight, so it is deterministic).
    No share exceeds its weight when ``amount`` ≤ the sum of the weights."""
    total = sum(weights)
    if amount <= 0 or total <= 0:
        return [0] * len(weights)
    amount = min(amount, total)
    shares = [amount * w // total for w in weights]
    remainders = sorted(range(len(weights)), key=lambda i: (-(amount * weights[i] % total), i))
    for i in remainders[: amount - sum(shares)]:
        shares[i] += 1
    return shares


def contained_tax(taxable: int, rate_percent: int) -> int:
    """Tax contained in a tax-inclusive amount, rounded down (the qualified-invoice rule:
    once per rate on the whole invoice, never summed from rounded lines)."""
    if rate_percent <= 0 or taxable <= 0:
        return 0
    return taxable * rate_percent // (100 + rate_percent)


@dataclass(frozen=True)
class TaxLine:
    rate_percent: int
    taxable: int
    tax: int


def tax_lines(taxable_by_rate: Mapping[int, int]) -> list[TaxLine]:
    """One line per taxed rate, highest rate first; exempt (0 %) amounts carry no line."""
    return [
        TaxLine(rate, amount, contained_tax(amount, rate))
        for rate, amount in sorted(taxable_by_rate.items(), reverse=True)
        if rate > 0 and amount > 0
    ]


@dataclass(frozen=True)
class ShippingPolicy:
    """Fees for delivery methods and the subtotal (after discounts) from which delivery is
    free. Same-day delivery is never free: the courier costs the same for any basket."""

    delivery_fee: int = 550
    same_day_fee: int = 880
    free_delivery_threshold: int = 5000

    def fee(self, *, delivery: bool, same_day: bool, discounted_subtotal: int) -> int:
        if same_day:
            return self.same_day_fee
        if delivery:
            return 0 if discounted_subtotal >= self.free_delivery_threshold else self.delivery_fee
        return 0
