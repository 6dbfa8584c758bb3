"""The store door greets her: a welcome banner of a store streams the given name and one
suggestion of each customer who checks in there (her app, or a hand-off to a kiosk of the
store) and granted personalization — nothing for anyone else, nothing identifying."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest_asyncio

from services.customer.domain import greetings as gd
from services.customer.domain import timeline as td
from tenpo.customer.v1 import customer_service_pb2 as api
from tenpo.customer.v1 import identity_service_pb2 as ids
from tenpo.customer.v1 import interaction_service_pb2 as ipb
from tenpo.customer.v1 import interaction_service_pb2_grpc as ipb_grpc
from tenpo.customer.v1 import resources_pb2 as pb
from tests.services.customer.conftest import Service, bearer, expect_error
from tests.services.customer.identity_helpers import client_admin

SHIBUYA, GINZA = "tokyo-shibuya", "tokyo-ginza"


@dataclass
class Door:
    service: Service
    interactions: ipb_grpc.InteractionServiceStub

    @property
    def hub(self) -> Any:
        return self.service.host.runtime.parts["use_cases"].greetings.hub

    def banner(self, store: str = SHIBUYA, scopes: tuple[str, ...] = ("greetings:read",)) -> Any:
        return bearer(
            self.service.tokens.mint(
                subject=f"banner-{uuid.uuid4().hex[:6]}",
                kind="device",
                channel="KIOSK",
                store_id=store or None,
                scopes=list(scopes),
            )
        )

    async def customer(self, given: str, *, consent: bool) -> tuple[str, Any]:
        customer_id, _, auth = await self.service.register(
            "door", name=pb.PersonName(family_name="山田", given_name=given)
        )
        if consent:
            await self.service.customers.GrantConsent(
                api.GrantConsentRequest(
                    customer_id="me",
                    purpose=pb.CONSENT_PURPOSE_PERSONALIZATION,
                    channel=pb.CONSENT_CHANNEL_PUSH,
                    wording_version="personalization-2026-11",
                    request_id=str(uuid.uuid4()),
                ),
                metadata=auth,
            )
        return customer_id, auth

    async def check_in(self, auth: Any, store: str = SHIBUYA) -> None:
        await self.interactions.CheckIn(ipb.CheckInRequest(store_id=store), metadata=auth)

    async def watching(self, count: int) -> None:
        for _ in range(600):
            if self.hub.watcher_count >= count:
                return
            await asyncio.sleep(0.05)
        raise AssertionError("the banner's stream never started")

    async def closed(self, stream: Any) -> None:
        """Cancel a banner's stream and wait until the service let go of it."""
        stream.cancel()
        for _ in range(600):
            if self.hub.watcher_count == 0:
                return
            await asyncio.sleep(0.05)
        raise AssertionError("the banner's stream never ended")


@pytest_asyncio.fixture(scope="module")
async def door(service_factory: Callable[..., Any]) -> AsyncIterator[Door]:
    service: Service = await service_factory(greeting_repeat_after_seconds=600)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{service.host.port}") as channel:
        yield Door(service, ipb_grpc.InteractionServiceStub(channel))


async def test_a_consenting_customer_checking_in_is_greeted_by_first_name_only(
    door: Door,
) -> None:
    stream = door.interactions.WatchGreetings(ipb.WatchGreetingsRequest(), metadata=door.banner())
    try:
        await door.watching(1)
        _, silent = await door.customer("静香", consent=False)
        _, elsewhere = await door.customer("銀子", consent=True)
        welcome_id, welcome = await door.customer("花子", consent=True)
        await door.check_in(silent)  # no consent: nothing
        await door.check_in(elsewhere, GINZA)  # another store's door
        await door.check_in(welcome)
        await door.check_in(welcome)  # at the same door again moments later: once
        async with asyncio.timeout(30):
            greeting = await stream.read()
        assert greeting.given_name == "花子"
        assert greeting.suggestion_reason == ipb.SUGGESTION_REASON_WELCOME
        assert greeting.display_seconds == 20 and greeting.check_in_time.seconds > 0
        # Nothing identifying: no field of the message holds her id or family name.
        assert welcome_id not in str(greeting) and "山田" not in str(greeting)

        # The next greeting is the next consenting customer's: the repeat was dropped.
        _, next_one = await door.customer("次郎", consent=True)
        await door.check_in(next_one)
        async with asyncio.timeout(30):
            assert (await stream.read()).given_name == "次郎"
    finally:
        await door.closed(stream)


async def test_a_hand_off_to_a_kiosk_of_the_store_is_a_check_in(door: Door) -> None:
    created = await door.service.identity.CreateClient(
        ids.CreateClientRequest(
            client=pb.Client(
                display_name="entrance kiosk",
                kind=pb.CLIENT_KIND_KIOSK,
                store_id=SHIBUYA,
                scopes=["greetings:read"],
            )
        ),
        metadata=client_admin(door.service.tokens),
    )
    signed_in = await door.service.identity.SignInClient(
        ids.SignInClientRequest(client_id=created.client.id, client_secret=created.client_secret)
    )
    kiosk = bearer(signed_in.tokens.access_token)
    stream = door.interactions.WatchGreetings(ipb.WatchGreetingsRequest(), metadata=kiosk)
    try:
        await door.watching(1)
        _, auth = await door.customer("美咲", consent=True)
        started = await door.service.identity.StartDeviceSession(
            ids.StartDeviceSessionRequest(), metadata=kiosk
        )
        await door.service.identity.ApproveDeviceSession(
            ids.ApproveDeviceSessionRequest(user_code=started.user_code), metadata=auth
        )
        exchanged = await door.service.identity.ExchangeDeviceSession(
            ids.ExchangeDeviceSessionRequest(device_code=started.device_code), metadata=kiosk
        )
        assert exchanged.tokens.access_token
        async with asyncio.timeout(30):
            assert (await stream.read()).given_name == "美咲"
    finally:
        await door.closed(stream)


async def test_who_may_watch_and_check_in(door: Door) -> None:
    _, auth = await door.customer("拓海", consent=True)
    for metadata, code in (
        (auth, grpc.StatusCode.PERMISSION_DENIED),  # a customer watches no banner
        (door.banner(scopes=("catalog:read",)), grpc.StatusCode.PERMISSION_DENIED),
        (door.banner(store=""), grpc.StatusCode.FAILED_PRECONDITION),  # no store: no door
    ):
        stream = door.interactions.WatchGreetings(ipb.WatchGreetingsRequest(), metadata=metadata)
        with_error = await expect_error(stream.read(), code)
        assert with_error is not None
    await expect_error(
        door.interactions.CheckIn(ipb.CheckInRequest(store_id="Not A Store!"), metadata=auth),
        grpc.StatusCode.INVALID_ARGUMENT,
        "STORE_ID_INVALID",
    )
    await expect_error(
        door.interactions.CheckIn(ipb.CheckInRequest(store_id=SHIBUYA), metadata=door.banner()),
        grpc.StatusCode.PERMISSION_DENIED,
    )


def test_the_suggestion_is_her_latest_try_on_or_scan_else_birthday_else_welcome() -> None:
    now = datetime(2027, 6, 1, 3, 0, tzinfo=UTC)

    def entry(kind: td.InteractionKind, sku: str, days_ago: float) -> td.Interaction:
        return td.Interaction(
            id=uuid.uuid4(),
            customer_id=uuid.uuid4(),
            kind=kind,
            sku=sku,
            size="M" if kind is td.InteractionKind.MIRROR_TRY_ON else "",
            channel=4,
            store_id=SHIBUYA,
            device_id="d",
            summary="",
            created_at=now - timedelta(days=days_ago),
        )

    recent = [
        entry(td.InteractionKind.ORDER, "", 1),
        entry(td.InteractionKind.MIRROR_TRY_ON, "SKU-TRY", 2),
        entry(td.InteractionKind.SHELF_SCAN, "SKU-SCAN", 3),
    ]
    tried = gd.compose("花子", recent, False, now, 20)
    assert (tried.reason, tried.sku) == (gd.SuggestionReason.RECENTLY_TRIED_ON, "SKU-TRY")
    scanned = gd.compose("花子", recent[2:], True, now, 20)
    assert (scanned.reason, scanned.sku) == (gd.SuggestionReason.RECENTLY_VIEWED, "SKU-SCAN")
    old = [entry(td.InteractionKind.SHELF_SCAN, "SKU-OLD", 120)]
    assert gd.compose("花子", old, True, now, 20).reason is gd.SuggestionReason.BIRTHDAY_MONTH
    assert gd.compose("花子", old, False, now, 20).reason is gd.SuggestionReason.WELCOME
