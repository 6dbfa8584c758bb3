"""CustomerService.GetCustomer360 against real PostgreSQL: one call gives staff the profile,
consents, points and tier, store card, recent interactions and orders across channels; only
staff holding customers:overview get it."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import grpc
from google.type import money_pb2

from services.customer.domain import earning as ed
from tenpo.common.v1 import common_pb2
from tenpo.customer.v1 import customer_service_pb2 as api
from tenpo.customer.v1 import interaction_service_pb2 as interaction_api
from tenpo.customer.v1 import resources_pb2 as pb
from tenpo.customer.v1 import store_card_service_pb2 as card_api
from tenpo.customer.v1.interaction_service_pb2_grpc import InteractionServiceStub
from tenpo.customer.v1.store_card_service_pb2_grpc import StoreCardServiceStub
from tests.services.customer.conftest import Service, bearer, expect_error


def staff(service: Service, *scopes: str) -> tuple[tuple[str, str], ...]:
    return bearer(
        service.tokens.mint(
            subject=f"staff-{uuid.uuid4().hex[:6]}",
            kind="staff",
            scopes=list(scopes),
            channel="BACK_OFFICE",
        )
    )


async def place(
    service: Service, customer_id: str, order_id: str, channel: int, store: str | None, days: int
) -> None:
    cases = service.host.runtime.parts["use_cases"]
    async with service.host.runtime.db.unit_of_work() as uow:
        await cases.earning.order_placed(
            uow,
            ed.OrderFacts(
                order_id=order_id,
                order_number=order_id.upper(),
                customer_id=uuid.UUID(customer_id),
                channel=channel,
                store_id=store,
                total_yen=4_200,
                units=1,
                placed_at=datetime.now(UTC) - timedelta(days=days),
            ),
        )
        await uow.commit()


async def test_staff_see_everything_about_a_customer_in_one_call(service: Service) -> None:
    customer_id, _, own = await service.register("overview")
    await service.customers.GrantConsent(
        api.GrantConsentRequest(
            customer_id="me",
            purpose=pb.CONSENT_PURPOSE_PERSONALIZATION,
            channel=pb.CONSENT_CHANNEL_PUSH,
            wording_version="v1",
        ),
        metadata=own,
    )
    await place(service, customer_id, f"web-{customer_id[:8]}", common_pb2.CHANNEL_WEB, None, 10)
    await place(
        service, customer_id, f"pos-{customer_id[:8]}", common_pb2.CHANNEL_POS, "tokyo-ginza", 1
    )
    async with grpc.aio.insecure_channel(f"127.0.0.1:{service.host.port}") as channel:
        mirror = bearer(
            service.tokens.mint(
                subject=customer_id,
                kind="customer",
                scopes=["profile:read", "carts:write"],
                channel="SMART_MIRROR",
                store_id="tokyo-ginza",
                extra_claims={"dev": "mirror-9"},
            )
        )
        await InteractionServiceStub(channel).RecordInteraction(
            interaction_api.RecordInteractionRequest(
                interaction=interaction_api.Interaction(
                    kind=interaction_api.INTERACTION_KIND_MIRROR_TRY_ON, sku="SKU-1", size="L"
                )
            ),
            metadata=mirror,
        )
        await StoreCardServiceStub(channel).TopUpStoreCard(
            card_api.TopUpStoreCardRequest(
                customer_id=customer_id,
                amount=money_pb2.Money(currency_code="JPY", units=2_500),
                reference="r",
            ),
            metadata=staff(service, "storecard:write"),
        )
    view = await service.customers.GetCustomer360(
        api.GetCustomer360Request(customer_id=customer_id),
        metadata=staff(service, "customers:overview"),
    )
    assert view.customer.id == customer_id
    assert view.customer.name.given_name == "花子"
    granted = [c for c in view.consents if c.status == pb.CONSENT_STATUS_GRANTED]
    assert [(c.purpose, c.channel) for c in granted] == [
        (pb.CONSENT_PURPOSE_PERSONALIZATION, pb.CONSENT_CHANNEL_PUSH)
    ]
    assert (view.loyalty.pending, view.loyalty.twelve_month_spend.units) == (84, 8_400)
    assert view.store_card.balance.units == 2_500
    assert view.recent_interactions[0].kind == interaction_api.INTERACTION_KIND_MIRROR_TRY_ON
    assert view.recent_interactions[0].size == "L"
    orders = [(o.channel, o.store_id, o.points, o.points_pending) for o in view.recent_orders]
    assert orders == [
        (common_pb2.CHANNEL_POS, "tokyo-ginza", 42, True),
        (common_pb2.CHANNEL_WEB, "", 42, True),
    ]
    limited = await service.customers.GetCustomer360(
        api.GetCustomer360Request(customer_id=customer_id, recent_limit=1),
        metadata=staff(service, "customers:overview"),
    )
    assert len(limited.recent_orders) == 1


async def test_only_staff_with_the_overview_scope_get_it(service: Service) -> None:
    customer_id, _, own = await service.register("overview-denied")
    for metadata in (
        own,  # herself: she uses the other calls
        staff(service, "customers:read"),
        bearer(service.tokens.mint(subject="svc", kind="service", scopes=["customers:overview"])),
    ):
        await expect_error(
            service.customers.GetCustomer360(
                api.GetCustomer360Request(customer_id=customer_id), metadata=metadata
            ),
            grpc.StatusCode.PERMISSION_DENIED,
        )
    details = await expect_error(
        service.customers.GetCustomer360(
            api.GetCustomer360Request(customer_id="not-an-id"),
            metadata=staff(service, "customers:overview"),
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert details.field_violations[0].field == "customer_id"
    details = await expect_error(
        service.customers.GetCustomer360(
            api.GetCustomer360Request(customer_id=customer_id, recent_limit=-1),
            metadata=staff(service, "customers:overview"),
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_RECENT_LIMIT",
    )
    assert details.field_violations[0].field == "recent_limit"
