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
from tenpo.customer.v1 import identity_service_pb2 as ids
from tenpo.customer.v1 import interaction_service_pb2 as api
from tenpo.customer.v1 import interaction_service_pb2_grpc as api_grpc
from tenpo.customer.v1 import loyalty_service_pb2 as loyalty_api
from tenpo.customer.v1 import loyalty_service_pb2_grpc as loyalty_grpc
from tenpo.customer.v1 import resources_pb2 as pb
from tests.services.conftest import Tokens
from tests.services.customer.conftest import Service, bearer, expect_error
from tests.services.customer.identity_helpers import client_admin


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


async def test_anonymous_try_ons_become_hers_when_she_hands_off_to_that_mirror(
    service: Service, stubs: tuple[api_grpc.InteractionServiceStub, object], tokens: Tokens
) -> None:
    interactions, _ = stubs
    created = await service.identity.CreateClient(
        ids.CreateClientRequest(
            client=pb.Client(
                display_name="linking mirror",
                kind=pb.CLIENT_KIND_SMART_MIRROR,
                store_id="tokyo-shibuya",
                scopes=["interactions:write"],
            )
        ),
        metadata=client_admin(tokens),
    )
    signed_in = await service.identity.SignInClient(
        ids.SignInClientRequest(client_id=created.client.id, client_secret=created.client_secret)
    )
    mirror = bearer(signed_in.tokens.access_token)

    async def hand_off(customer: object) -> None:
        started = await service.identity.StartDeviceSession(
            ids.StartDeviceSessionRequest(), metadata=mirror
        )
        await service.identity.ApproveDeviceSession(
            ids.ApproveDeviceSessionRequest(user_code=started.user_code), metadata=customer
        )
        handed = await service.identity.ExchangeDeviceSession(
            ids.ExchangeDeviceSessionRequest(device_code=started.device_code), metadata=mirror
        )
        assert handed.state == pb.DEVICE_SESSION_STATE_APPROVED

    async def mine(customer: object) -> set[str]:
        listed = await interactions.ListInteractions(
            api.ListInteractionsRequest(customer_id="me"), metadata=customer
        )
        return {i.id for i in listed.interactions}

    first_id, _, first = await service.register("first-visitor")
    before = await interactions.RecordInteraction(try_on(sku="SKU-OLD-1"), metadata=mirror)
    await hand_off(first)
    assert await mine(first) == {before.interaction.id}

    # The next visitor tries two things on anonymously, then signs in on the same mirror.
    second_id, _, second = await service.register("second-visitor")
    tried = [
        await interactions.RecordInteraction(try_on(sku=f"SKU-NEW-{n}"), metadata=mirror)
        for n in range(2)
    ]
    await hand_off(second)
    assert await mine(second) == {t.interaction.id for t in tried}
    assert await mine(first) == {before.interaction.id}  # nothing of hers went to the next one
    assert first_id != second_id


async def test_the_shelf_pick_up_of_the_item_she_tried_on_becomes_hers_at_the_hand_off(
    service: Service, stubs: tuple[api_grpc.InteractionServiceStub, object], tokens: Tokens
) -> None:
    interactions, _ = stubs
    created = await service.identity.CreateClient(
        ids.CreateClientRequest(
            client=pb.Client(
                display_name="fitting-room mirror",
                kind=pb.CLIENT_KIND_SMART_MIRROR,
                store_id="tokyo-shibuya",
                scopes=["interactions:write"],
            )
        ),
        metadata=client_admin(tokens),
    )
    signed_in = await service.identity.SignInClient(
        ids.SignInClientRequest(client_id=created.client.id, client_secret=created.client_secret)
    )
    mirror = bearer(signed_in.tokens.access_token)

    def shelf(store_id: str) -> object:
        return bearer(
            tokens.mint(
                subject=f"shelf-{uuid.uuid4().hex[:6]}",
                kind="device",
                scopes=["interactions:write"],
                channel="SMART_SHELF",
                store_id=store_id,
            )
        )

    async def read(device: object, kind: int, tag: str, **fields: str) -> str:
        recorded = await interactions.RecordInteraction(
            api.RecordInteractionRequest(
                interaction=api.Interaction(kind=kind, sku="SNK-1", item_tag=tag, **fields)  # type: ignore[arg-type]
            ),
            metadata=device,
        )
        assert recorded.interaction.customer_id == ""
        return recorded.interaction.id

    # The pair's own tag (SGTIN-96: unique per physical item), read in upper case by a
    # reader that prints it so; another pair on the same shelf.
    pair, other_pair = uuid.uuid4().hex[:24], uuid.uuid4().hex[:24]
    shibuya_shelf, ginza_shelf = shelf("tokyo-shibuya"), shelf("tokyo-ginza")
    put_back = await read(shibuya_shelf, api.INTERACTION_KIND_SHELF_SCAN, pair)
    lifted = await read(shibuya_shelf, api.INTERACTION_KIND_SHELF_SCAN, pair.upper())
    not_tried = await read(shibuya_shelf, api.INTERACTION_KIND_SHELF_SCAN, other_pair)
    elsewhere = await read(ginza_shelf, api.INTERACTION_KIND_SHELF_SCAN, pair)
    tried = await read(mirror, api.INTERACTION_KIND_MIRROR_TRY_ON, pair, size="25.0")

    customer_id, _, customer = await service.register("shelf-to-mirror")
    started = await service.identity.StartDeviceSession(
        ids.StartDeviceSessionRequest(), metadata=mirror
    )
    await service.identity.ApproveDeviceSession(
        ids.ApproveDeviceSessionRequest(user_code=started.user_code), metadata=customer
    )
    await service.identity.ExchangeDeviceSession(
        ids.ExchangeDeviceSessionRequest(device_code=started.device_code), metadata=mirror
    )
    listed = await interactions.ListInteractions(
        api.ListInteractionsRequest(customer_id="me"), metadata=customer
    )
    # Her try-on and her pick-up of that very pair in this store (its latest read: an earlier
    # one was someone who put it back); not another pair, not the same tag in another store.
    assert {i.id for i in listed.interactions} == {tried, lifted}
    assert {i.item_tag for i in listed.interactions} == {pair}
    assert all(i.customer_id == customer_id for i in listed.interactions)
    assert {put_back, not_tried, elsewhere}.isdisjoint(i.id for i in listed.interactions)


async def test_an_item_tag_that_is_no_epc_is_refused(
    service: Service, stubs: tuple[api_grpc.InteractionServiceStub, object]
) -> None:
    interactions, _ = stubs
    shelf = bearer(
        service.tokens.mint(
            subject="shelf-9",
            kind="device",
            scopes=["interactions:write"],
            channel="SMART_SHELF",
            store_id="tokyo-shibuya",
        )
    )
    for kind, tag, reason in (
        (api.INTERACTION_KIND_SHELF_SCAN, "4912345001078", "ITEM_TAG_INVALID"),  # a JAN
        (api.INTERACTION_KIND_SHELF_SCAN, "zz" * 12, "ITEM_TAG_INVALID"),
        (api.INTERACTION_KIND_KIOSK_SESSION, "ab" * 12, "ITEM_TAG_NOT_ALLOWED"),
    ):
        await expect_error(
            interactions.RecordInteraction(
                api.RecordInteractionRequest(
                    interaction=api.Interaction(kind=kind, sku="SNK-1", item_tag=tag)
                ),
                metadata=shelf,
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            reason,
        )
