"""Promotion rules: kinds, scope, order of application, stacking, conditions, code
refusals and redemption limits."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from services.cart.domain.promotions import (
    CODE_ALPHABET,
    BudgetPeriod,
    Context,
    DiscountKind,
    PricedLine,
    Promotion,
    PromotionCode,
    Trigger,
    Usage,
    budget_period_start,
    check_redemption,
    code_refusal,
    evaluate,
    new_personal_code,
    normalize_code,
)
from tenpo.kit.errors import FailedPrecondition, InvalidArgument

NOW = datetime(2026, 12, 24, 15, 0, tzinfo=UTC)
WEB = 1
CTX = Context(channel=WEB, store_id=None, customer_id="c1", now=NOW)


def line(sku: str, price: int, quantity: int = 1, categories: tuple[str, ...] = ()) -> PricedLine:
    return PricedLine(uuid.uuid4(), sku, f"p-{sku}", frozenset(categories), price, quantity)


def promo(**kwargs: object) -> Promotion:
    values: dict[str, object] = {
        "id": uuid.uuid4(),
        "title": "t",
        "trigger": Trigger.AUTOMATIC,
        "kind": DiscountKind.PERCENT,
        "percent_off": 10,
    }
    values.update(kwargs)
    return Promotion(**values).validate()  # type: ignore[arg-type]


def test_percent_off_a_category_rounds_down_on_the_eligible_amount() -> None:
    shoes, socks = line("S", 3333, 1, ("shoes",)), line("K", 500, 3)
    result = evaluate([shoes, socks], [promo(category_ids=frozenset({"shoes"}))], [], CTX)
    assert result.line_discounts() == {shoes.line_id: 333}


def test_buy_two_get_one_makes_the_cheapest_units_free() -> None:
    a, b = line("A", 1000, 2), line("B", 600, 1)
    result = evaluate(
        [a, b], [promo(kind=DiscountKind.BUY_X_GET_Y, buy_quantity=2, get_quantity=1)], [], CTX
    )
    assert result.line_discounts() == {b.line_id: 600}
    four = line("C", 500, 4)  # 4 units: one group of 3 → one free
    assert evaluate(
        [four], [promo(kind=DiscountKind.BUY_X_GET_Y, buy_quantity=2, get_quantity=1)], [], CTX
    ).line_discounts() == {four.line_id: 500}


def test_priority_orders_application_and_stop_further_ends_it() -> None:
    item = line("A", 10000)
    first = promo(priority=1, kind=DiscountKind.AMOUNT, amount_off=1000)
    second = promo(priority=2, percent_off=10)  # 10 % of what is left: 900
    assert evaluate([item], [second, first], [], CTX).line_discounts() == {item.line_id: 1900}
    stopper = promo(priority=1, kind=DiscountKind.AMOUNT, amount_off=1000, stop_further=True)
    assert evaluate([item], [second, stopper], [], CTX).line_discounts() == {item.line_id: 1000}


def test_discounts_never_exceed_the_line() -> None:
    item = line("A", 300)
    result = evaluate(
        [item],
        [promo(kind=DiscountKind.AMOUNT, amount_off=1000, priority=1), promo(priority=2)],
        [],
        CTX,
    )
    assert result.line_discounts() == {item.line_id: 300}
    assert len(result.applied) == 1


def test_conditions_channel_store_window_minimum() -> None:
    item = line("A", 1000)
    for promotion in (
        promo(channels=frozenset({3})),
        promo(store_ids=frozenset({"tokyo-ginza"})),
        promo(valid_from=NOW + timedelta(hours=1)),
        promo(valid_until=NOW),
        promo(minimum_subtotal=1001),
        promo(active=False),
    ):
        assert evaluate([item], [promotion], [], CTX).applied == []


def test_entered_codes_are_refused_with_reasons() -> None:
    item = line("A", 1000)
    winter = promo(trigger=Trigger.CODE, code="WINTER10", minimum_subtotal=5000)
    public = PromotionCode("WINTER10", winter.id)
    result = evaluate([item], [], [("WINTER10", public, winter), ("NOPE", None, None)], CTX)
    assert result.rejected == [
        ("NOPE", "CODE_NOT_FOUND"),
        ("WINTER10", "MINIMUM_SUBTOTAL_NOT_REACHED"),
    ]


def test_code_refusal_never_tells_someone_elses_code_from_no_code() -> None:
    promotion_id = uuid.uuid4()
    theirs = PromotionCode(
        "ABCDEFGHJKMN", promotion_id, customer_id="c2", expires_at=NOW + timedelta(hours=1)
    )
    assert code_refusal(theirs, "c1", NOW) == code_refusal(None, "c1", NOW) == "CODE_NOT_FOUND"
    mine = PromotionCode("ABCDEFGHJKMN", promotion_id, customer_id="c1", expires_at=NOW)
    assert code_refusal(mine, "c1", NOW) == "CODE_EXPIRED"
    used = PromotionCode("ABCDEFGHJKMN", promotion_id, customer_id="c1", used=True)
    assert code_refusal(used, "c1", NOW) == "CODE_ALREADY_USED"
    assert code_refusal(PromotionCode("WINTER10", promotion_id), None, NOW) is None


def test_personal_code_skus_narrow_the_promotion() -> None:
    a, b = line("A", 1000), line("B", 2000)
    bday = promo(trigger=Trigger.CODE, percent_off=20)
    code = PromotionCode("X2345678ABCD", bday.id, customer_id="c1", skus=frozenset({"B"}))
    assert evaluate([a, b], [], [("X2345678ABCD", code, bday)], CTX).line_discounts() == {
        b.line_id: 400
    }


def test_codes_are_normalized_and_personal_codes_use_an_unambiguous_alphabet() -> None:
    assert normalize_code("  winter10 ") == "WINTER10"
    # Found from outside: full-width input (a Japanese IME in full-width mode, with its
    # full-width space and hyphen) was refused CODE_INVALID.
    assert normalize_code("\u3000ＷＩＮＴＥＲ１０") == "WINTER10"
    assert normalize_code("ｓａｌｅ－２０２６") == "SALE-2026"
    with pytest.raises(InvalidArgument):
        normalize_code("a")
    with pytest.raises(InvalidArgument):
        normalize_code("WIN TER")
    code = new_personal_code()
    assert len(code) == 12 and set(code) <= set(CODE_ALPHABET)
    assert not set(CODE_ALPHABET) & set("01OIL")


def test_redemption_limits() -> None:
    p = promo(
        usage_limit=5,
        usage_limit_per_customer=1,
        budget_amount=10000,
        budget_period=BudgetPeriod.DAY,
    )
    check_redemption(p, None, Usage(total=4), 100, "c1")
    cases = [
        (Usage(total=5), 100, "USAGE_LIMIT_REACHED"),
        (Usage(by_customer=1), 100, "CUSTOMER_USAGE_LIMIT_REACHED"),
        (Usage(amount_in_period=9950), 100, "BUDGET_EXHAUSTED"),
    ]
    for usage, amount, reason in cases:
        with pytest.raises(FailedPrecondition) as caught:
            check_redemption(p, None, usage, amount, "c1")
        assert caught.value.reason == reason
    personal = PromotionCode("X2345678ABCD", p.id, customer_id="c1")
    with pytest.raises(FailedPrecondition) as used:
        check_redemption(promo(), personal, Usage(code_used=True), 100, "c1")
    assert used.value.reason == "CODE_ALREADY_USED"


def test_budget_periods_start_in_japan_time() -> None:
    late = datetime(2026, 12, 31, 16, 30, tzinfo=UTC)  # 01:30 on 1 January in Tokyo
    assert budget_period_start(BudgetPeriod.DAY, late) == datetime(2026, 12, 31, 15, 0, tzinfo=UTC)
    assert budget_period_start(BudgetPeriod.MONTH, late) == datetime(
        2026, 12, 31, 15, 0, tzinfo=UTC
    )
    assert budget_period_start(BudgetPeriod.TOTAL, late) is None


def test_inconsistent_promotions_name_the_field() -> None:
    with pytest.raises(InvalidArgument) as caught:
        Promotion(uuid.uuid4(), "t", Trigger.AUTOMATIC, DiscountKind.AMOUNT, code="X").validate()
    assert {v.field for v in caught.value.field_violations} == {
        "promotion.amount_off",
        "promotion.code",
    }
