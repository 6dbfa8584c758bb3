"""Allocation and Japanese consumption tax: exact sums, rounding down once per rate."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from services.cart.domain.pricing import ShippingPolicy, allocate, contained_tax, tax_lines


def test_allocation_is_proportional_exact_and_deterministic() -> None:
    assert allocate(500, [3980, 2560]) == [304, 196]
    assert allocate(1, [100, 100]) == [1, 0]  # a tie goes to the earlier line
    assert allocate(0, [5, 5]) == [0, 0]
    assert allocate(50, [10, 10]) == [10, 10]  # never more than a line's own amount


@given(
    st.integers(min_value=0, max_value=10**7),
    st.lists(st.integers(min_value=0, max_value=10**6), min_size=1, max_size=30),
)
def test_allocation_always_sums_to_the_amount_and_stays_within_each_weight(
    amount: int, weights: list[int]
) -> None:
    shares = allocate(amount, weights)
    assert sum(shares) == (min(amount, sum(weights)) if sum(weights) else 0)
    assert all(0 <= s <= w for s, w in zip(shares, weights, strict=True))


def test_tax_is_computed_once_per_rate_and_rounded_down() -> None:
    # Three 10 % lines of 105 yen: per line floor(105·10/110) = 9, summed 27; on the whole
    # 315 the invoice shows floor(3150/110) = 28. The qualified-invoice rule wants 28.
    assert contained_tax(315, 10) == 28
    assert sum(contained_tax(105, 10) for _ in range(3)) == 27
    lines = tax_lines({10: 315, 8: 1080, 0: 500})
    assert [(t.rate_percent, t.taxable, t.tax) for t in lines] == [(10, 315, 28), (8, 1080, 80)]


def test_shipping() -> None:
    policy = ShippingPolicy(delivery_fee=550, same_day_fee=880, free_delivery_threshold=5000)
    assert policy.fee(delivery=True, same_day=False, discounted_subtotal=4999) == 550
    assert policy.fee(delivery=True, same_day=False, discounted_subtotal=5000) == 0
    assert policy.fee(delivery=False, same_day=True, discounted_subtotal=99999) == 880
    assert policy.fee(delivery=False, same_day=False, discounted_subtotal=0) == 0
