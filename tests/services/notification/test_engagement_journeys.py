"""The seeds' engagement journeys end to end: events published on real NATS, mails through
real SMTP, and the customer timeline, catalog and cart PromotionService as real gRPC servers
(fakes of their contracts): a birthday mail with a personal 20 % code for a product she
looked at (or, with nothing looked at, for the whole promotion), a thank-you with the
catalog's complementary products, a review request on delivery and on pickup, the lapsed
customers' offer by mail or, when the mail cannot go, by SMS; marketing consent respected."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest_asyncio
from google.protobuf import timestamp_pb2

from services.notification.config import DEMO_PERSONAL_CODE_PROMOTION, NotificationSettings
from services.notification.domain.templates import Channel
from services.notification.seed_engagement import BIRTHDAY_CODE_VALIDITY
from tenpo.cart.v1 import promotion_service_pb2 as promo_api
from tenpo.cart.v1 import promotion_service_pb2_grpc as promo_grpc
from tenpo.catalog.v1 import catalog_service_pb2 as catalog_api
from tenpo.catalog.v1 import catalog_service_pb2_grpc as catalog_grpc
from tenpo.catalog.v1 import resources_pb2 as catalog_pb
from tenpo.customer.v1 import events_pb2 as customer_events
from tenpo.customer.v1 import interaction_service_pb2 as interaction_api
from tenpo.customer.v1 import interaction_service_pb2_grpc as interaction_grpc
from tenpo.devtools.stack.net import free_port
from tenpo.kit.events import EventBus
from tenpo.kit.server import ServiceHost
from tenpo.order.v1 import events_pb2 as order_events
from tests.services.notification.conftest import Harness, eventually, fake_server, publish
from tests.services.notification.test_commerce_journeys import runs_of

MARKETING, GRANTED = 1, 3
SERVICE_TOKEN = "notification-service-token"
SHOP = "http://localhost:3000"


@dataclass
class FakeUpstream(
    promo_grpc.PromotionServiceServicer,
    catalog_grpc.CatalogServiceServicer,
    interaction_grpc.InteractionServiceServicer,
):
    """The cart's PromotionService, the catalog and the customer timeline in one server."""

    timelines: dict[str, list[interaction_api.Interaction]] = field(default_factory=dict)
    products: dict[str, catalog_pb.Product] = field(default_factory=dict)
    related: dict[str, list[str]] = field(default_factory=dict)
    codes: list[promo_api.IssuePersonalCodeRequest] = field(default_factory=list)
    catalog_channels: list[str] = field(default_factory=list)
    related_types: list[list[int]] = field(default_factory=list)

    def product(self, product_id: str, title: str, *skus: str) -> None:
        self.products[product_id] = catalog_pb.Product(
            id=product_id, title=title, variants=[catalog_pb.Variant(sku=s) for s in skus]
        )

    async def IssuePersonalCode(
        self, request: promo_api.IssuePersonalCodeRequest, context: grpc.aio.ServicerContext
    ) -> promo_api.IssuePersonalCodeResponse:
        self.codes.append(request)
        expire = timestamp_pb2.Timestamp()
        expire.FromDatetime(datetime(2026, 12, 30, 10, 0, tzinfo=UTC))
        return promo_api.IssuePersonalCodeResponse(
            code=f"CODE{len(self.codes):08d}", expire_time=expire
        )

    async def ListInteractions(
        self, request: interaction_api.ListInteractionsRequest, context: grpc.aio.ServicerContext
    ) -> interaction_api.ListInteractionsResponse:
        return interaction_api.ListInteractionsResponse(
            interactions=self.timelines.get(request.customer_id, [])
        )

    def _channel(self, context: grpc.aio.ServicerContext) -> None:
        metadata = dict(context.invocation_metadata() or ())
        self.catalog_channels.append(str(metadata.get("x-tenpo-channel", "")))

    async def BatchGetVariants(
        self, request: catalog_api.BatchGetVariantsRequest, context: grpc.aio.ServicerContext
    ) -> catalog_api.BatchGetVariantsResponse:
        self._channel(context)
        found = [
            catalog_pb.Variant(sku=v.sku, product_id=p.id)
            for p in self.products.values()
            for v in p.variants
            if v.sku in request.skus
        ]
        return catalog_api.BatchGetVariantsResponse(variants=found)

    async def BatchGetProducts(
        self, request: catalog_api.BatchGetProductsRequest, context: grpc.aio.ServicerContext
    ) -> catalog_api.BatchGetProductsResponse:
        self._channel(context)
        return catalog_api.BatchGetProductsResponse(
            products=[self.products[i] for i in request.ids if i in self.products]
        )

    async def ListRelatedProducts(
        self, request: catalog_api.ListRelatedProductsRequest, context: grpc.aio.ServicerContext
    ) -> catalog_api.ListRelatedProductsResponse:
        self._channel(context)
        self.related_types.append(list(request.types))
        return catalog_api.ListRelatedProductsResponse(
            related=[
                catalog_api.RelatedProduct(
                    type=catalog_pb.RELATION_TYPE_CROSS_SELL, product=self.products[i]
                )
                for i in self.related.get(request.product_id, [])
            ]
        )


def upstream_server(port: int) -> AbstractAsyncContextManager[FakeUpstream]:
    return fake_server(
        port,
        FakeUpstream(),
        promo_grpc.add_PromotionServiceServicer_to_server,
        catalog_grpc.add_CatalogServiceServicer_to_server,
        interaction_grpc.add_InteractionServiceServicer_to_server,
    )


def settings_for(port: int) -> dict[str, Any]:
    suffix = uuid.uuid4().hex[:8]
    target = f"127.0.0.1:{port}"
    return {
        "cart_target": target,
        "catalog_target": target,
        "customer_target": target,
        "customer_token": SERVICE_TOKEN,
        "cart_consumer": f"notification-cart-{suffix}",
        "order_consumer": f"notification-order-{suffix}",
        "outgoing_timeout_seconds": 1.0,
    }


@pytest_asyncio.fixture
async def upstream() -> AsyncIterator[tuple[int, FakeUpstream]]:
    port = free_port()
    async with upstream_server(port) as fake:
        yield port, fake


async def grant(
    host: ServiceHost[NotificationSettings], customer_id: str, channel: Channel = Channel.EMAIL
) -> None:
    assert host.runtime is not None
    async with host.runtime.db.unit_of_work() as uow:
        await host.runtime.parts["recipients"].consent_changed(
            uow, uuid.UUID(customer_id), MARKETING, int(channel), GRANTED, datetime.now(UTC)
        )
        await uow.commit()


def text_of(harness: Harness, address: str) -> tuple[str, str]:
    [mail] = harness.catcher.to(address)
    parsed = mail.parsed()
    return str(parsed["subject"]), parsed.get_body(("plain",)).get_content()  # type: ignore[union-attr]


def interaction(kind: int, sku: str) -> interaction_api.Interaction:
    return interaction_api.Interaction(kind=kind, sku=sku)  # type: ignore[arg-type]


async def test_a_birthday_mail_carries_a_personal_code_for_a_product_she_looked_at(
    harness: Harness, customer_bus: EventBus, upstream: tuple[int, FakeUpstream]
) -> None:
    port, fake = upstream
    hanako = harness.directory.add(email="birthday@example.jp")
    no_consent = harness.directory.add(email="no-offers@example.jp")
    fake.product("p-shirt", "リネンシャツ", "SHIRT-M", "SHIRT-L")
    fake.product("p-old", "古いスニーカー", "SNK-27")
    fake.timelines[hanako] = [  # newest first, as ListInteractions answers
        interaction(interaction_api.INTERACTION_KIND_LOYALTY, ""),
        interaction(interaction_api.INTERACTION_KIND_MIRROR_TRY_ON, "SHIRT-L"),
        interaction(interaction_api.INTERACTION_KIND_SHELF_SCAN, "SNK-27"),
    ]
    async with harness.start(**settings_for(port)) as (host, _):
        await grant(host, hanako)
        for customer in (hanako, no_consent):
            await publish(
                customer_bus, customer_events.BirthdayReached(customer_id=customer, year=2026)
            )

        async def mailed() -> None:
            assert len(harness.catcher.to("birthday@example.jp")) == 1

        await eventually(mailed)
        subject, text = text_of(harness, "birthday@example.jp")
        assert subject == "花子、お誕生日おめでとうございます"
        [request] = [r for r in fake.codes if r.customer_id == hanako]
        code = f"CODE{fake.codes.index(request) + 1:08d}"
        assert f"{code}（20% オフ、2026-12-30まで）" in text
        assert "「リネンシャツ」" in text and f"{SHOP}/products/p-shirt" in text
        # The code is limited to the product she tried on, and comes from the birthday
        # promotion, valid 30 days.
        assert list(request.skus) == ["SHIRT-M", "SHIRT-L"]
        assert request.promotion_id == DEMO_PERSONAL_CODE_PROMOTION
        assert request.valid_for.ToTimedelta() == BIRTHDAY_CODE_VALIDITY
        assert set(fake.catalog_channels) == {"WEB"}  # asked as a web shopper

        async def no_consent_left() -> None:
            [run] = await runs_of(host, no_consent)
            assert run.status == "completed" and run.step_id == "consented?"

        await eventually(no_consent_left)
        assert harness.catcher.to("no-offers@example.jp") == []
        assert [r for r in fake.codes if r.customer_id == no_consent] == []


async def test_a_birthday_without_a_product_looked_at_gets_the_promotions_own_scope(
    harness: Harness, customer_bus: EventBus, upstream: tuple[int, FakeUpstream]
) -> None:
    port, fake = upstream
    customer = harness.directory.add(email="nothing-seen@example.jp", locale="en-US")
    async with harness.start(**settings_for(port)) as (host, _):
        await grant(host, customer)
        await publish(
            customer_bus, customer_events.BirthdayReached(customer_id=customer, year=2026)
        )

        async def mailed() -> None:
            assert len(harness.catcher.to("nothing-seen@example.jp")) == 1

        await eventually(mailed)
        subject, text = text_of(harness, "nothing-seen@example.jp")
        assert subject == "Happy birthday, 花子!"
        assert "20 % off until 2026-12-30" in text and "looked at" not in text
        [request] = [r for r in fake.codes if r.customer_id == customer]
        assert list(request.skus) == []


async def test_a_thank_you_after_an_order_names_complementary_products(
    harness: Harness, buses: dict[str, EventBus], upstream: tuple[int, FakeUpstream]
) -> None:
    port, fake = upstream
    customer = harness.directory.add(email="thanks@example.jp")
    fake.product("p-snk", "スニーカー", "SNK-1")
    fake.product("p-spray", "防水スプレー", "SPRAY-1")
    fake.product("p-socks", "ソックス", "SOCKS-1")
    fake.related["p-snk"] = ["p-spray", "p-socks"]
    async with harness.start(**settings_for(port)) as (host, _):
        await grant(host, customer)
        placed = order_events.OrderPlaced(
            order_id=str(uuid.uuid4()),
            order_number="T-000777",
            customer_id=customer,
            lines=[order_events.OrderEventLine(sku="SNK-1", quantity=1)],
        )
        await publish(buses["order"], placed)

        async def mailed() -> None:
            assert len(harness.catcher.to("thanks@example.jp")) == 1

        await eventually(mailed)
        subject, text = text_of(harness, "thanks@example.jp")
        assert subject == "ご購入ありがとうございます（ご注文T-000777）"
        assert f"・防水スプレー {SHOP}/products/p-spray" in text
        assert f"・ソックス {SHOP}/products/p-socks" in text
        assert "・スニーカー" not in text  # what she bought is not recommended back
        # Complements, not alternatives: cross-sell, accessory, goes-with (no up-sell).
        assert fake.related_types[-1] == [
            catalog_pb.RELATION_TYPE_CROSS_SELL,
            catalog_pb.RELATION_TYPE_ACCESSORY,
            catalog_pb.RELATION_TYPE_GOES_WITH,
        ]


async def test_a_review_request_follows_a_delivery_and_a_pickup(
    harness: Harness, buses: dict[str, EventBus], upstream: tuple[int, FakeUpstream]
) -> None:
    port, _ = upstream
    delivered = harness.directory.add(email="delivered@example.jp")
    collected = harness.directory.add(email="collected@example.jp", locale="en-US")
    async with harness.start(**settings_for(port)) as (host, _):
        for customer in (delivered, collected):
            await grant(host, customer)
        await publish(
            buses["order"],
            order_events.FulfillmentDelivered(
                fulfillment=order_events.FulfillmentRef(
                    order_id=str(uuid.uuid4()), order_number="T-000101", customer_id=delivered
                )
            ),
        )
        await publish(
            buses["order"],
            order_events.PickedUp(
                fulfillment=order_events.FulfillmentRef(
                    order_id=str(uuid.uuid4()), order_number="T-000102", customer_id=collected
                )
            ),
        )

        async def mailed() -> None:
            assert len(harness.catcher.to("delivered@example.jp")) == 1
            assert len(harness.catcher.to("collected@example.jp")) == 1

        await eventually(mailed)
        subject, text = text_of(harness, "delivered@example.jp")
        assert subject == "ご注文T-000101の商品はいかがですか"
        assert f"{SHOP}/orders/T-000101/review" in text
        subject, text = text_of(harness, "collected@example.jp")
        assert subject == "How do you like your order T-000102?"


async def test_lapsed_customers_get_an_offer_by_mail_or_else_by_sms(
    harness: Harness, customer_bus: EventBus, upstream: tuple[int, FakeUpstream]
) -> None:
    port, fake = upstream
    by_mail = harness.directory.add(email="lapsed@example.jp", phone="+819000000001")
    by_sms = harness.directory.add(email="sms-only@example.jp", phone="+819000000002")
    loyal = harness.directory.add(email="loyal@example.jp")
    async with harness.start(**settings_for(port)) as (host, _):
        await grant(host, by_mail)
        await grant(host, by_sms, Channel.SMS)  # no mail consent: the mail is skipped
        await grant(host, loyal)
        for customer, segment in ((by_mail, "lapsed"), (by_sms, "lapsed"), (loyal, "loyal")):
            await publish(
                customer_bus,
                customer_events.SegmentEntered(customer_id=customer, segment=segment),
            )

        async def offered() -> None:
            assert len(harness.catcher.to("lapsed@example.jp")) == 1
            assert [to for to, _ in harness.sms.sent if to == "+819000000002"] == ["+819000000002"]

        await eventually(offered)
        subject, text = text_of(harness, "lapsed@example.jp")
        assert subject == "花子、お久しぶりです"
        [mail_code] = [r for r in fake.codes if r.customer_id == by_mail]
        assert mail_code.valid_for.ToTimedelta() == timedelta(days=14)
        assert "CODE" in text
        # The mail went: no SMS for her. The SMS-only customer's text fits one segment.
        assert [to for to, _ in harness.sms.sent if to == "+819000000001"] == []
        [(_, sms_text)] = [x for x in harness.sms.sent if x[0] == "+819000000002"]
        assert sms_text.startswith("Tenpo: お久しぶりです。クーポンCODE") and len(sms_text) <= 70
        assert harness.catcher.to("sms-only@example.jp") == []
        # Another segment starts nothing.
        assert await runs_of(host, loyal) == []


async def test_a_catalog_that_does_not_answer_keeps_the_run_at_its_step(
    harness: Harness, buses: dict[str, EventBus]
) -> None:
    port = free_port()  # nothing listens: catalog (and cart, customer) down
    customer = harness.directory.add(email="later@example.jp")
    async with harness.start(**settings_for(port)) as (host, _):
        await grant(host, customer)
        await publish(
            buses["order"],
            order_events.OrderPlaced(
                order_id=str(uuid.uuid4()),
                order_number="T-000900",
                customer_id=customer,
                lines=[order_events.OrderEventLine(sku="SNK-1", quantity=1)],
            ),
        )

        async def retried() -> None:
            runs = {r.display_name: r for r in await runs_of(host, customer)}
            assert "Thank you" in runs
            run = runs["Thank you"]
            assert (run.status, run.step_id, run.attempts >= 1) == ("active", "complements", True)

        await eventually(retried)
        assert harness.catcher.to("later@example.jp") == []
