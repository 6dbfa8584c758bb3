"""Staff search by order number, e-mail and phone; CustomerErased (published by the real
customer service through NATS) pseudonymizes the customer's orders and keeps their
accounting record."""

from __future__ import annotations

import asyncio
import uuid

import grpc
import pytest

from tenpo.cart.v1 import cart_service_pb2 as cart_api
from tenpo.cart.v1 import resources_pb2 as cart_pb
from tenpo.common.v1 import common_pb2
from tenpo.customer.v1 import customer_service_pb2, customer_service_pb2_grpc
from tenpo.order.v1 import order_service_pb2 as api
from tenpo.order.v1 import resources_pb2 as pb
from tests.services.order.conftest import STORE, Stack
from tests.services.order.test_checkout import expect_error
from tests.services.order.test_loyalty import _member

pytestmark = pytest.mark.integration


async def _delivered_order(stack: Stack, customer: str, email: str, phone: str) -> pb.Order:
    sku = await stack.stock(2, price=2200)
    md = stack.customer(customer)
    cart = await stack.cart(customer, (sku, 1))
    update = cart_api.UpdateCartRequest(
        cart=cart_pb.Cart(
            id=cart.id,
            etag=cart.etag,
            contact_email=email,
            fulfillment=cart_pb.Fulfillment(
                # Click & collect with the customer's contact address (delivery planning needs
                # a geo point the cart does not have yet).
                method=cart_pb.FULFILLMENT_METHOD_PICKUP,
                store_id=STORE,
                address=common_pb2.PostalAddress(
                    region_code="JP",
                    postal_code="150-0041",
                    administrative_area="東京都",
                    locality="渋谷区",
                    address_lines=["神南1-2-3"],
                    recipient="山田 花子",
                    phone_number=phone,
                ),
            ),
        )
    )
    update.update_mask.paths.extend(["contact_email", "fulfillment"])
    cart = (await stack.carts.UpdateCart(update, metadata=md)).cart
    placed = await stack.orders.PlaceOrder(stack.place_request(cart), metadata=md)
    return placed.order


def _staff(stack: Stack, scopes: list[str]) -> tuple[tuple[str, str], ...]:
    return stack.tokens.metadata(
        stack.tokens.mint(subject="staff-9", kind="staff", scopes=scopes, channel="BACK_OFFICE")
    )


async def _search(stack: Stack, **criterion: str) -> list[str]:
    found = await stack.orders.SearchOrders(
        api.SearchOrdersRequest(**criterion), metadata=_staff(stack, ["orders:read"])
    )
    return [o.id for o in found.orders]


async def test_staff_find_orders_by_number_email_or_phone(stack: Stack) -> None:
    customer = f"c-{uuid.uuid4().hex[:8]}"
    email = f"Hanako.{uuid.uuid4().hex[:6]}@Example.jp"
    phone = f"+8190{uuid.uuid4().int % 10**8:08d}"
    order = await _delivered_order(stack, customer, email, phone)
    assert order.status == pb.ORDER_STATUS_PLACED
    assert (order.contact_email, order.contact_phone) == (email.lower(), phone[1:])

    assert await _search(stack, order_number=order.order_number) == [order.id]
    assert await _search(stack, email=email.upper()) == [order.id]
    spaced = f"{phone[:3]} {phone[3:5]}-{phone[5:9]}-{phone[9:]}"
    assert await _search(stack, phone=spaced) == [order.id]
    assert await _search(stack, email="nobody@example.jp") == []

    await expect_error(
        stack.orders.SearchOrders(
            api.SearchOrdersRequest(), metadata=_staff(stack, ["orders:read"])
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "SEARCH_CRITERION_REQUIRED",
    )
    await expect_error(
        stack.orders.SearchOrders(
            api.SearchOrdersRequest(email=email, phone=phone),
            metadata=_staff(stack, ["orders:read"]),
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "SEARCH_CRITERION_REQUIRED",
    )
    for bad in ({"order_number": "123"}, {"email": "no-at-sign"}, {"phone": "12"}):
        await expect_error(
            stack.orders.SearchOrders(
                api.SearchOrdersRequest(**bad), metadata=_staff(stack, ["orders:read"])
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            "SEARCH_CRITERION_INVALID",
        )
    # A customer (even the order's own) or staff without orders scopes cannot search.
    for metadata in (stack.customer(customer), _staff(stack, ["inventory:write"])):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stack.orders.SearchOrders(api.SearchOrdersRequest(email=email), metadata=metadata)
        assert caught.value.code() is grpc.StatusCode.PERMISSION_DENIED


async def test_an_erased_customers_orders_keep_the_accounting_record_only(
    stack: Stack,
) -> None:
    customer = await _member(stack, 0)
    email = f"erase.{uuid.uuid4().hex[:6]}@example.jp"
    phone = f"+8180{uuid.uuid4().int % 10**8:08d}"
    order = await _delivered_order(stack, customer, email, phone)
    assert await _search(stack, email=email) == [order.id]

    async with grpc.aio.insecure_channel(f"127.0.0.1:{stack.customer_host.port}") as channel:
        await customer_service_pb2_grpc.CustomerServiceStub(channel).EraseCustomer(
            customer_service_pb2.EraseCustomerRequest(customer_id=customer),
            metadata=_staff(stack, ["customers:write"]),
        )
    # CustomerErased travels: customer outbox → NATS → the order service's consumer.
    staff = _staff(stack, ["orders:read"])
    for _ in range(300):
        kept = (
            await stack.orders.GetOrder(api.GetOrderRequest(order_id=order.id), metadata=staff)
        ).order
        if not kept.contact_email:
            break
        await asyncio.sleep(0.1)

    assert (kept.contact_email, kept.contact_phone) == ("", "")
    address = kept.fulfillment.address
    assert (address.region_code, address.administrative_area) == ("JP", "東京都")
    assert (address.recipient, address.phone_number, list(address.address_lines)) == ("", "", [])
    assert (address.postal_code, address.locality) == ("", "")
    # The accounting record is untouched.
    for field in ("order_number", "lines", "totals", "create_time", "status", "payment_state"):
        assert getattr(kept, field) == getattr(order, field), field
    assert await _search(stack, email=email) == []
    assert await _search(stack, phone=phone) == []
    assert await _search(stack, order_number=order.order_number) == [order.id]
