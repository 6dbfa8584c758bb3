"""Shoppers for the cluster-shape test: guests who check out through the gateway's gRPC
ingress again and again, each step retried with the same request_id (and cart etag) on
UNAVAILABLE or a deadline, as a real client does; every answer they get is counted."""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from typing import TypeVar

import grpc

from tenpo.cart.v1 import cart_service_pb2 as cart_api
from tenpo.cart.v1 import cart_service_pb2_grpc
from tenpo.cart.v1 import resources_pb2 as cart_pb
from tenpo.kit.grpc_errors import decode_error
from tenpo.order.v1 import order_service_pb2 as order_api
from tenpo.order.v1 import order_service_pb2_grpc
from tenpo.order.v1 import resources_pb2 as order_pb

WEB_KEY = "pk_web_dev_tenpo_0000000000"
STORE = "tokyo-shibuya"
SANDBOX_CARD = "4242424242424242"
#: Answers a client retries with the same request_id: the service or the gateway's backend
#: briefly gone, or no answer within the client's deadline.
RETRIED = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})
#: PlaceOrder's UNAVAILABLE reasons that record the order FAILED (a dependency did not
#: answer before the confirmation; nothing stays held): the same request_id would get the
#: same answer again, so the shopper tries again with a new one.
CHECKOUT_ENDED = frozenset(
    {"INVENTORY_UNAVAILABLE", "CART_UNAVAILABLE", "CUSTOMER_UNAVAILABLE", "PAYMENT_UNAVAILABLE"}
)
#: PlaceOrder's refusal while the cart's previous checkout (a FAILED one still giving back
#: what it held) is not over: the shopper tries again a moment later, as the message says.
CHECKOUT_BUSY = "CHECKOUT_IN_PROGRESS"
#: How long one step may keep failing with retryable answers before the shopper gives up.
STEP_PATIENCE = 240.0
#: The client's deadline for one call.
CALL_TIMEOUT = 30.0

T = TypeVar("T")


class SoldOut(Exception):
    """PlaceOrder refused with INSUFFICIENT_STOCK: the shopper goes home."""


class Shopper(threading.Thread):
    """A web guest buying one unit of ``sku`` for pickup at the store, paid by card, until
    the SKU is sold out or ``stop`` is set."""

    def __init__(self, channel: grpc.Channel, sku: str, number: int, placed: list[str]) -> None:
        super().__init__(daemon=True, name=f"shopper-{number}")
        self.carts = cart_service_pb2_grpc.CartServiceStub(channel)
        self.orders = order_service_pb2_grpc.OrderServiceStub(channel)
        self.sku, self.number, self.placed = sku, number, placed
        #: Every answer, as "CODE" or "CODE REASON".
        self.answers: Counter[str] = Counter()
        self.sold_out = False
        self.stop = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                self.checkout()
        except SoldOut:
            self.sold_out = True
        except BaseException as error:
            self.error = error

    def _call(self, call: Callable[[], T], ends: Callable[[str], bool] = lambda _: False) -> T:
        """One step, retried as it was on UNAVAILABLE and deadlines; ``ends(reason)`` says
        which retryable answers end the attempt (raised) instead."""
        deadline = time.monotonic() + STEP_PATIENCE
        while True:
            try:
                answer = call()
            except grpc.RpcError as error:
                details = decode_error(error)
                code = details.code
                self.answers[f"{code.name} {details.reason or ''}".strip()] += 1
                if code not in RETRIED or ends(details.reason or "") or self.stop.is_set():
                    raise
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
                continue
            self.answers["OK"] += 1
            return answer

    def checkout(self) -> None:
        metadata = (("x-api-key", WEB_KEY),)
        create = cart_api.CreateCartRequest(request_id=uuid.uuid4().hex)
        created = self._call(
            lambda: self.carts.CreateCart(create, metadata=metadata, timeout=CALL_TIMEOUT)
        )
        token = created.cart_token
        cart = created.cart
        add = cart_api.AddLineItemRequest(
            cart_id=cart.id,
            cart_token=token,
            sku=self.sku,
            quantity=1,
            etag=cart.etag,
            request_id=uuid.uuid4().hex,
        )
        cart = self._call(
            lambda: self.carts.AddLineItem(add, metadata=metadata, timeout=CALL_TIMEOUT)
        ).cart
        update = cart_api.UpdateCartRequest(
            cart=cart_pb.Cart(
                id=cart.id,
                etag=cart.etag,
                fulfillment=cart_pb.Fulfillment(
                    method=cart_pb.FULFILLMENT_METHOD_PICKUP, store_id=STORE
                ),
            ),
            cart_token=token,
            request_id=uuid.uuid4().hex,
        )
        update.update_mask.paths.append("fulfillment")
        cart = self._call(
            lambda: self.carts.UpdateCart(update, metadata=metadata, timeout=CALL_TIMEOUT)
        ).cart
        self._place(cart, token)

    def _place(self, cart: cart_pb.Cart, token: str) -> None:
        metadata = (("x-api-key", WEB_KEY),)
        deadline = time.monotonic() + STEP_PATIENCE
        while True:
            request = order_api.PlaceOrderRequest(
                cart_id=cart.id,
                cart_etag=cart.etag,
                payment=order_pb.Payment(
                    method=order_pb.PAYMENT_METHOD_CARD, card_token=SANDBOX_CARD
                ),
                request_id=uuid.uuid4().hex,
                cart_token=token,
                contact_email=f"failover-{self.number}@example.jp",
            )
            try:
                placed = self._call(
                    lambda request=request: self.orders.PlaceOrder(
                        request, metadata=metadata, timeout=CALL_TIMEOUT
                    ),
                    ends=CHECKOUT_ENDED.__contains__,
                )
            except grpc.RpcError as error:
                details = decode_error(error)
                if details.reason == "INSUFFICIENT_STOCK":
                    raise SoldOut from None
                if time.monotonic() > deadline:
                    raise
                if details.reason in CHECKOUT_ENDED:
                    continue  # that order FAILED and holds nothing: a new checkout of the cart
                if details.reason == CHECKOUT_BUSY:
                    time.sleep(1)
                    continue
                raise
            self.placed.append(placed.order.id)
            return
