"""InteractionService against real PostgreSQL: in-store devices record interactions (store
and channel from their token), customers and staff page through the timeline, which also
shows the loyalty ledger's entries."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import grpc
import pytest_asyncio
from google.type import money_pb2

from tenpo.common.v1 import common_pb2
from tenpo.customer.v1 import interaction_service_pb2 as api
from tenpo.customer.v1 import interaction_service_pb2_grpc as api_grpc
from tenpo.customer.v1 import loyalty_service_pb2 as loyalty_api
from tenpo.customer.v1 import loyalty_service_pb2_grpc as loyalty_grpc
from tests.services.customer.conftest import Service, bearer, expect_error


@pytest_asyncio.fixture(scope="module")
async def stubs(
    service: Service,
) -> AsyncIterator[tuple[api_grpc.InteractionServiceStub, loyalty_grpc.LoyaltyServiceStub]]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{service.host.port}") as channel:
        yield api_grpc.InteractionServiceStub(channel), loyalty_grpc.LoyaltyServiceStub(channel)


def handed_off(service: Service, customer_id: str, device: str = "mirror-1") -> object:
    """A customer session handed to a mirror in Ginza (what ExchangeDeviceSession mints)."""
    return bearer(
        service.tokens.mint(
            subject=customer_id,
            kind="customer",
            scopes=["profile:read", "carts:write"],
            channel="SMART_MIRROR",
            store_id="tokyo-ginza",
            extra_claims={"dev": device},
        )
    )


def try_on(
    sku: str = "SKU-TEE-M", size: str = "M", **fields: object
) -> api.RecordInteractionRequest:
    return api.RecordInteractionRequest(
        interaction=api.Interaction(kind=api.INTERACTION_KIND_MIRROR_TRY_ON, sku=sku, size=size),
        **fields,  # type: ignore[arg-type]
    )


async def test_a_try_on_on_a_handed_off_mirror_is_hers_with_the_tokens_store(
    service: Service, stubs: tuple[api_grpc.InteractionServiceStub, object]
) -> None:
    interactions, _ = stubs
    customer_id, _, customer = await service.register("mirror")
    recorded = await interactions.RecordInteraction(
        try_on(request_id="t-1"), metadata=handed_off(service, customer_id)
    )
    item = recorded.interaction
    assert item.customer_id == customer_id
    assert (item.store_id, item.channel, item.device_id) == (
        "tokyo-ginza",
        common_pb2.CHANNEL_SMART_MIRROR,
        "mirror-1",
    )
    assert (item.sku, item.size) == ("SKU-TEE-M", "M")
    again = await interactions.RecordInteraction(
        try_on(request_id="t-1"), metadata=handed_off(service, customer_id)
    )
    assert again.interaction.id == item.id  # a retried request records nothing twice
    mine = await interactions.ListInteractions(
        api.ListInteractionsRequest(customer_id="me"), metadata=customer
    )
    assert [i.id for i in mine.interactions] == [item.id]


async def test_a_devices_own_token_records_an_anonymous_interaction(
    service: Service, stubs: tuple[api_grpc.InteractionServiceStub, object]
) -> None:
    interactions, _ = stubs
    shelf = bearer(
        service.tokens.mint(
            subject="shelf-7",
            kind="device",
            scopes=["interactions:write"],
            channel="SMART_SHELF",
            store_id="tokyo-shibuya",
        )
    )
    recorded = await interactions.RecordInteraction(
        api.RecordInteractionRequest(
            interaction=api.Interaction(kind=api.INTERACTION_KIND_SHELF_SCAN, sku="SKU-CAP")
        ),
        metadata=shelf,
    )
    assert recorded.interaction.customer_id == ""
    assert recorded.interaction.store_id == "tokyo-shibuya"
    assert recorded.interaction.device_id == "shelf-7"
    unscoped = bearer(
        service.tokens.mint(
            subject="shelf-8", kind="device", channel="SMART_SHELF", store_id="tokyo-shibuya"
        )
    )
    await expect_error(
        interactions.RecordInteraction(try_on(), metadata=unscoped),
        grpc.StatusCode.PERMISSION_DENIED,
    )


async def test_bad_interactions_are_refused_and_the_app_records_none(
    service: Service, stubs: tuple[api_grpc.InteractionServiceStub, object]
) -> None:
    interactions, _ = stubs
    customer_id, _, customer = await service.register("bad")
    device = handed_off(service, customer_id)
    details = await expect_error(
        interactions.RecordInteraction(try_on(size=""), metadata=device),
        grpc.StatusCode.INVALID_ARGUMENT,
        "FIELD_REQUIRED",
    )
    assert details.field_violations[0].field == "interaction.size"
    await expect_error(
        interactions.RecordInteraction(try_on(sku="no spaces please"), metadata=device),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    await expect_error(
        interactions.RecordInteraction(
            api.RecordInteractionRequest(
                interaction=api.Interaction(kind=api.INTERACTION_KIND_LOYALTY)
            ),
            metadata=device,
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INTERACTION_KIND_INVALID",
    )
    await expect_error(
        interactions.RecordInteraction(try_on(), metadata=customer),
        grpc.StatusCode.PERMISSION_DENIED,
        "DEVICE_SESSION_REQUIRED",
    )
    listed = await interactions.ListInteractions(
        api.ListInteractionsRequest(customer_id="me"), metadata=customer
    )
    assert not listed.interactions


async def test_the_timeline_pages_for_staff_shows_points_and_is_closed_to_strangers(
    service: Service,
    stubs: tuple[api_grpc.InteractionServiceStub, loyalty_grpc.LoyaltyServiceStub],
) -> None:
    interactions, loyalty = stubs
    customer_id, _, _ = await service.register("timeline")
    _, _, stranger = await service.register("stranger")
    device = handed_off(service, customer_id)
    recorded = [
        (
            await interactions.RecordInteraction(try_on(sku=f"SKU-{n}"), metadata=device)
        ).interaction.id
        for n in range(3)
    ]
    await loyalty.EarnPoints(
        loyalty_api.EarnPointsRequest(
            customer_id=customer_id,
            amount=money_pb2.Money(currency_code="JPY", units=2500),
            reference="order-9",
            request_id=uuid.uuid4().hex,
        ),
        metadata=bearer(
            service.tokens.mint(subject="order", kind="service", scopes=["loyalty:write"])
        ),
    )
    staff = bearer(
        service.tokens.mint(
            subject="staff-cs", kind="staff", scopes=["customers:read"], channel="BACK_OFFICE"
        )
    )
    seen: list[api.Interaction] = []
    token = ""
    while True:
        page = await interactions.ListInteractions(
            api.ListInteractionsRequest(customer_id=customer_id, page_size=2, page_token=token),
            metadata=staff,
        )
        assert len(page.interactions) <= 2
        seen.extend(page.interactions)
        token = page.next_page_token
        if not token:
            break
    assert seen[0].kind == api.INTERACTION_KIND_LOYALTY and seen[0].summary == "EARN +25"
    assert [i.id for i in seen[1:]] == list(reversed(recorded))
    await expect_error(
        interactions.ListInteractions(
            api.ListInteractionsRequest(customer_id=customer_id), metadata=stranger
        ),
        grpc.StatusCode.PERMISSION_DENIED,
    )
