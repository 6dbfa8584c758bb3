"""How many writes and calls a checkout costs: a step that holds nothing for this order (the
plan, a read; no codes, no points; the last write of a card order) is written with the step
before it, and a cart with a promotion code still reserves, commits — or, failing,
releases — its redemption through the same saga."""

from __future__ import annotations

import uuid
from typing import Any

import grpc
import pytest

from services.order.domain.saga import SagaPhase, SagaStep
from services.order.store.orders import OrderStore
from services.order.usecases.search import OrderSearch
from tenpo.cart.v1 import cart_service_pb2 as cart_api
from tenpo.cart.v1 import promotion_service_pb2 as promo_api
from tenpo.cart.v1 import promotion_service_pb2_grpc
from tenpo.cart.v1 import resources_pb2 as cart_pb
from tenpo.kit.grpc_errors import decode_error
from tenpo.order.v1 import resources_pb2 as pb
from tests.services.order.conftest import Stack

pytestmark = pytest.mark.integration

DECLINED_CARD = "4000000000000002"


@pytest.fixture(scope="module")
def order_overrides() -> dict[str, Any]:
    """Deadlines far above what a busy CI machine needs: these tests count the saga's
    writes and calls, which a timed-out call (retried, or compensated) would change."""
    return {"upstream_timeout_seconds": 30.0, "payment_timeout_seconds": 30.0}


@pytest.fixture
def writes(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, SagaStep, SagaPhase]]:
    """Every saga write (order id, the step recorded, the phase), in order."""
    seen: list[tuple[Any, SagaStep, SagaPhase]] = []
    save = OrderStore.save

    async def recording(self: OrderStore, order: Any, **kwargs: Any) -> bool:
        seen.append((order.id, kwargs["step"], kwargs["phase"]))
        return await save(self, order, **kwargs)

    monkeypatch.setattr(OrderStore, "save", recording)
    return seen


@pytest.fixture
def redemption_calls(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The saga's calls to the cart's redemption RPCs, by name."""
    calls: list[str] = []
    cart = stack.checkout.cart
    for name in ("reserve_redemptions", "commit_redemptions", "release_redemptions"):
        original = getattr(cart, name)

        async def spy(*args: Any, _name: str = name, _original: Any = original) -> Any:
            calls.append(_name)
            return await _original(*args)

        monkeypatch.setattr(cart, name, spy)
    return calls


async def test_a_cart_without_codes_or_points_is_placed_in_five_saga_writes_without_redemptions(
    stack: Stack, writes: list[tuple[Any, SagaStep, SagaPhase]], redemption_calls: list[str]
) -> None:
    sku = await stack.stock(3)
    customer = f"c-{uuid.uuid4().hex[:8]}"
    cart = await stack.cart(customer, (sku, 1))

    placed = (
        await stack.orders.PlaceOrder(stack.place_request(cart), metadata=stack.customer(customer))
    ).order

    assert placed.status == pb.ORDER_STATUS_PLACED
    ours = [(step, phase) for order_id, step, phase in writes if str(order_id) == placed.id]
    # The plan (a read) is written with the frozen cart; reserving redemptions and points,
    # and committing them, called nothing: written with the stock reservation and the
    # stock commit; the last write places the order.
    assert ours == [
        (SagaStep.RESERVE_STOCK, SagaPhase.FORWARD),
        (SagaStep.AUTHORIZE_PAYMENT, SagaPhase.FORWARD),
        (SagaStep.CHECKOUT_CART, SagaPhase.FORWARD),
        (SagaStep.COMMIT_STOCK, SagaPhase.FORWARD),
        (SagaStep.FINISH, SagaPhase.DONE),
    ]
    assert redemption_calls == []
    level = await stack.level(sku)
    assert (level.on_hand, level.reserved) == (2, 0)


async def test_a_declined_card_without_codes_releases_the_stock_without_asking_the_cart(
    stack: Stack, redemption_calls: list[str]
) -> None:
    sku = await stack.stock(3)
    customer = f"c-{uuid.uuid4().hex[:8]}"
    cart = await stack.cart(customer, (sku, 2))

    with pytest.raises(grpc.aio.AioRpcError) as declined:
        await stack.orders.PlaceOrder(
            stack.place_request(cart, card=DECLINED_CARD), metadata=stack.customer(customer)
        )

    assert decode_error(declined.value).reason == "PAYMENT_DECLINED"
    assert redemption_calls == []
    level = await stack.level(sku)
    assert (level.on_hand, level.reserved) == (3, 0)


async def _personal_code(stack: Stack, customer: str) -> str:
    async with grpc.aio.insecure_channel(stack.targets["cart"]) as channel:
        promotions = promotion_service_pb2_grpc.PromotionServiceStub(channel)
        promotion = (
            await promotions.CreatePromotion(
                promo_api.CreatePromotionRequest(
                    promotion=cart_pb.Promotion(
                        title="Welcome 10 %",
                        trigger=cart_pb.PROMOTION_TRIGGER_CODE,
                        kind=cart_pb.DISCOUNT_KIND_PERCENT,
                        percent_off=10,
                        active=True,
                    )
                ),
                metadata=stack.tokens.metadata(
                    stack.tokens.mint(subject="merch", kind="staff", scopes=["promotions:write"])
                ),
            )
        ).promotion
        issued = await promotions.IssuePersonalCode(
            promo_api.IssuePersonalCodeRequest(promotion_id=promotion.id, customer_id=customer),
            metadata=stack.tokens.metadata(
                stack.tokens.mint(subject="journeys", kind="service", scopes=["promotions:write"])
            ),
        )
        return str(issued.code)


async def _with_code(stack: Stack, customer: str, cart_id: str, code: str) -> cart_pb.Cart:
    applied = await stack.carts.ApplyPromotionCode(
        cart_api.ApplyPromotionCodeRequest(cart_id=cart_id, code=code),
        metadata=stack.customer(customer),
    )
    return applied.cart


async def test_a_card_order_with_a_code_reserves_and_commits_its_redemption(
    stack: Stack, writes: list[tuple[Any, SagaStep, SagaPhase]], redemption_calls: list[str]
) -> None:
    sku = await stack.stock(3, price=4000)
    customer = f"c-{uuid.uuid4().hex[:8]}"
    code = await _personal_code(stack, customer)
    cart = await _with_code(stack, customer, (await stack.cart(customer, (sku, 1))).id, code)
    assert cart.totals.discount.units == 400

    placed = (
        await stack.orders.PlaceOrder(stack.place_request(cart), metadata=stack.customer(customer))
    ).order

    assert (placed.status, placed.totals.discount.units) == (pb.ORDER_STATUS_PLACED, 400)
    assert redemption_calls == ["reserve_redemptions", "commit_redemptions"]
    steps = [step for order_id, step, _ in writes if str(order_id) == placed.id]
    assert SagaStep.RESERVE_REDEMPTIONS in steps
    assert SagaStep.COMMIT_REDEMPTIONS in steps
    # Used by this order: another cart cannot take it.
    second = await stack.cart(customer, (sku, 1))
    with pytest.raises(grpc.aio.AioRpcError) as used:
        await _with_code(stack, customer, second.id, code)
    assert decode_error(used.value).reason == "CODE_ALREADY_USED"


async def test_a_declined_card_gives_the_code_back(
    stack: Stack, redemption_calls: list[str]
) -> None:
    sku = await stack.stock(3, price=4000)
    customer = f"c-{uuid.uuid4().hex[:8]}"
    code = await _personal_code(stack, customer)
    cart = await _with_code(stack, customer, (await stack.cart(customer, (sku, 1))).id, code)

    with pytest.raises(grpc.aio.AioRpcError) as declined:
        await stack.orders.PlaceOrder(
            stack.place_request(cart, card=DECLINED_CARD), metadata=stack.customer(customer)
        )

    assert decode_error(declined.value).reason == "PAYMENT_DECLINED"
    assert redemption_calls == ["reserve_redemptions", "release_redemptions"]
    # Released: the same cart, paid with a good card, redeems it.
    placed = (
        await stack.orders.PlaceOrder(stack.place_request(cart), metadata=stack.customer(customer))
    ).order
    assert (placed.status, placed.totals.discount.units) == (pb.ORDER_STATUS_PLACED, 400)
    assert (await stack.level(sku)).on_hand == 2


async def test_an_erasure_during_the_saga_is_not_undone_by_its_later_writes(
    stack: Stack, writes: list[tuple[Any, SagaStep, SagaPhase]]
) -> None:
    sku = await stack.stock(3)
    customer = f"c-{uuid.uuid4().hex[:8]}"
    md = stack.customer(customer)
    cart = await stack.cart(customer, (sku, 1))
    update = cart_api.UpdateCartRequest(
        cart=cart_pb.Cart(id=cart.id, etag=cart.etag, contact_email="Hanako@Example.jp")
    )
    update.update_mask.paths.append("contact_email")
    cart = (await stack.carts.UpdateCart(update, metadata=md)).cart

    async def erased_meanwhile(order_id: uuid.UUID, step: SagaStep) -> None:
        if step is SagaStep.AUTHORIZE_PAYMENT:
            # The customer's CustomerErased handled while her checkout runs.
            async with stack.order_db.unit_of_work() as uow:
                await OrderSearch.customer_erased(uow, customer)
                await uow.commit()

    stack.checkout.before_step = erased_meanwhile
    try:
        placed = (await stack.orders.PlaceOrder(stack.place_request(cart), metadata=md)).order
    finally:
        stack.checkout.before_step = None

    assert placed.status == pb.ORDER_STATUS_PLACED
    # The saga wrote three more times after the erasure, its copy of the contact included.
    steps = [step for order_id, step, _ in writes if str(order_id) == placed.id]
    assert steps[-3:] == [SagaStep.CHECKOUT_CART, SagaStep.COMMIT_STOCK, SagaStep.FINISH]
    async with stack.order_db.unit_of_work() as uow:
        stored = await OrderStore(uow.session).get(uuid.UUID(placed.id))
    assert stored is not None
    assert (stored.order.contact_email, stored.order.contact_phone) == (None, None)
