"""StoreCardService against real PostgreSQL: top-up by staff and a POS, pay through holds
(commit, release, expiry), the balance is the ledger sum and exact under concurrency, bad
input changes nothing."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import grpc
import pytest
import pytest_asyncio
import sqlalchemy as sa
from google.type import money_pb2

from services.customer.models import store_card_entries, store_cards
from services.customer.usecases.bundle import CustomerUseCases
from tenpo.common.v1 import common_pb2
from tenpo.customer.v1 import store_card_service_pb2 as api
from tenpo.customer.v1 import store_card_service_pb2_grpc as api_grpc
from tests.services.customer.conftest import Service, bearer, expect_error


def yen(units: int, currency: str = "JPY") -> money_pb2.Money:
    return money_pb2.Money(currency_code=currency, units=units)


@dataclass
class Cards:
    service: Service
    stub: api_grpc.StoreCardServiceStub
    staff: tuple[tuple[str, str], ...]
    order: tuple[tuple[str, str], ...]
    pos: tuple[tuple[str, str], ...]

    async def top_up(
        self, customer_id: str, units: int, **fields: Any
    ) -> api.TopUpStoreCardResponse:
        metadata = fields.pop("metadata", None) or self.staff
        fields.setdefault("reference", "receipt-1")
        fields.setdefault("request_id", uuid.uuid4().hex)
        return await self.stub.TopUpStoreCard(  # type: ignore[no-any-return]
            api.TopUpStoreCardRequest(customer_id=customer_id, amount=yen(units), **fields),
            metadata=metadata,
        )

    async def hold(self, customer_id: str, units: int, **fields: Any) -> api.StoreCardHold:
        metadata = fields.pop("metadata", None) or self.order
        fields.setdefault("request_id", uuid.uuid4().hex)
        response = await self.stub.ReserveStoreCardPayment(
            api.ReserveStoreCardPaymentRequest(
                customer_id=customer_id, amount=yen(units), reference="order-1", **fields
            ),
            metadata=metadata,
        )
        return response.hold

    async def card(self, customer_id: str) -> api.StoreCard:
        response = await self.stub.GetStoreCard(
            api.GetStoreCardRequest(customer_id=customer_id), metadata=self.order
        )
        return response.card

    async def ledger_sum_and_balance(self, customer_id: str) -> tuple[int, int]:
        key = uuid.UUID(customer_id)
        async with self.service.db.engine.connect() as conn:
            summed = (
                await conn.execute(
                    sa.select(sa.func.coalesce(sa.func.sum(store_card_entries.c.amount), 0)).where(
                        store_card_entries.c.customer_id == key
                    )
                )
            ).scalar_one()
            balance = (
                await conn.execute(
                    sa.select(store_cards.c.balance).where(store_cards.c.customer_id == key)
                )
            ).scalar_one()
        return int(summed), int(balance)


@pytest_asyncio.fixture(scope="module")
async def cards(service: Service) -> AsyncIterator[Cards]:
    tokens = service.tokens
    staff = bearer(
        tokens.mint(
            subject="staff-card", kind="staff", scopes=["storecard:write"], channel="BACK_OFFICE"
        )
    )
    order = bearer(
        tokens.mint(subject="order", kind="service", scopes=["storecard:write", "customers:read"])
    )
    pos = bearer(
        tokens.mint(
            subject="pos-1",
            kind="device",
            scopes=["storecard:write"],
            channel="POS",
            store_id="tokyo-ginza",
        )
    )
    async with grpc.aio.insecure_channel(f"127.0.0.1:{service.host.port}") as channel:
        yield Cards(service, api_grpc.StoreCardServiceStub(channel), staff, order, pos)


async def test_top_up_pay_and_release_keep_the_balance_the_ledger_sum(cards: Cards) -> None:
    customer_id, _, own = await cards.service.register("card")
    assert (await cards.card(customer_id)).balance.units == 0
    at_pos = await cards.top_up(
        customer_id, 5_000, metadata=cards.pos, channel=common_pb2.CHANNEL_WEB, store_id="x-y"
    )
    # A POS is where its token says, whatever it asks.
    assert (at_pos.entry.channel, at_pos.entry.store_id) == (common_pb2.CHANNEL_POS, "tokyo-ginza")
    assert at_pos.entry.kind == api.STORE_CARD_ENTRY_KIND_TOP_UP
    assert at_pos.card.balance.units == 5_000
    held = await cards.hold(customer_id, 3_000)
    assert (await cards.card(customer_id)).available.units == 2_000
    await expect_error(
        cards.hold(customer_id, 2_001), grpc.StatusCode.FAILED_PRECONDITION, "INSUFFICIENT_FUNDS"
    )
    paid = await cards.stub.CommitStoreCardPayment(
        api.CommitStoreCardPaymentRequest(customer_id=customer_id, hold_id=held.id),
        metadata=cards.order,
    )
    assert paid.hold.state == api.STORE_CARD_HOLD_STATE_COMMITTED
    again = await cards.stub.CommitStoreCardPayment(
        api.CommitStoreCardPaymentRequest(customer_id=customer_id, hold_id=held.id),
        metadata=cards.order,
    )
    assert again.hold.entry_id == paid.hold.entry_id  # committing twice pays once
    other = await cards.hold(customer_id, 1_000)
    released = await cards.stub.ReleaseStoreCardPayment(
        api.ReleaseStoreCardPaymentRequest(customer_id=customer_id, hold_id=other.id),
        metadata=cards.order,
    )
    assert released.hold.state == api.STORE_CARD_HOLD_STATE_RELEASED
    await expect_error(
        cards.stub.CommitStoreCardPayment(
            api.CommitStoreCardPaymentRequest(customer_id=customer_id, hold_id=other.id),
            metadata=cards.order,
        ),
        grpc.StatusCode.FAILED_PRECONDITION,
        "HOLD_RELEASED",
    )
    mine = await cards.stub.GetStoreCard(api.GetStoreCardRequest(customer_id="me"), metadata=own)
    assert (mine.card.balance.units, mine.card.reserved.units) == (2_000, 0)
    entries = await cards.stub.ListStoreCardEntries(
        api.ListStoreCardEntriesRequest(customer_id="me", page_size=1), metadata=own
    )
    assert entries.entries[0].amount.units == -3_000
    assert entries.next_page_token
    assert await cards.ledger_sum_and_balance(customer_id) == (2_000, 2_000)


async def test_retries_answer_the_first_result_and_bad_input_changes_nothing(cards: Cards) -> None:
    customer_id, _, own = await cards.service.register("card-bad")
    request_id = uuid.uuid4().hex
    first = await cards.top_up(customer_id, 1_000, request_id=request_id)
    again = await cards.top_up(customer_id, 1_000, request_id=request_id)
    assert first.entry.id == again.entry.id
    await expect_error(
        cards.top_up(customer_id, 2_000, request_id=request_id),
        grpc.StatusCode.INVALID_ARGUMENT,
        "REQUEST_ID_REUSED",
    )
    details = await expect_error(
        cards.stub.TopUpStoreCard(
            api.TopUpStoreCardRequest(customer_id=customer_id, amount=yen(5, "USD"), reference="r"),
            metadata=cards.staff,
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "CURRENCY_NOT_SUPPORTED",
    )
    assert details.field_violations[0].field == "amount.currency_code"
    details = await expect_error(
        cards.top_up(customer_id, 0), grpc.StatusCode.INVALID_ARGUMENT, "INVALID_AMOUNT"
    )
    assert details.field_violations[0].field == "amount.units"
    await expect_error(
        cards.top_up(customer_id, 10, reference=" "),
        grpc.StatusCode.INVALID_ARGUMENT,
        "FIELD_REQUIRED",
    )
    await expect_error(
        cards.stub.TopUpStoreCard(
            api.TopUpStoreCardRequest(customer_id=customer_id, reference="r"), metadata=cards.staff
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "FIELD_REQUIRED",
    )
    await expect_error(
        cards.top_up("me", 10), grpc.StatusCode.INVALID_ARGUMENT, "CUSTOMER_ID_REQUIRED"
    )
    # Beyond the maximum (100,000 by default): refused, nothing added.
    await expect_error(
        cards.top_up(customer_id, 99_001), grpc.StatusCode.FAILED_PRECONDITION, "STORE_CARD_LIMIT"
    )
    # The customer never tops up or pays by herself.
    await expect_error(
        cards.top_up(customer_id, 10, metadata=own), grpc.StatusCode.PERMISSION_DENIED
    )
    await expect_error(
        cards.stub.GetStoreCard(
            api.GetStoreCardRequest(customer_id=customer_id), metadata=cards.pos
        ),
        grpc.StatusCode.PERMISSION_DENIED,
    )
    assert (await cards.card(customer_id)).balance.units == 1_000


async def test_concurrent_payments_never_overdraw_and_concurrent_top_ups_never_exceed_the_maximum(
    cards: Cards,
) -> None:
    customer_id, _, _ = await cards.service.register("card-conc")
    await cards.top_up(customer_id, 10_000)

    async def pay(n: int) -> grpc.StatusCode:
        try:
            held = await cards.hold(customer_id, 1_000, request_id=f"pay-{customer_id}-{n}")
        except grpc.aio.AioRpcError as error:
            return error.code()
        await cards.stub.CommitStoreCardPayment(
            api.CommitStoreCardPaymentRequest(customer_id=customer_id, hold_id=held.id),
            metadata=cards.order,
        )
        return grpc.StatusCode.OK

    paid = await asyncio.gather(*(pay(n) for n in range(25)))
    assert paid.count(grpc.StatusCode.OK) == 10
    assert paid.count(grpc.StatusCode.FAILED_PRECONDITION) == 15
    assert (await cards.card(customer_id)).balance.units == 0

    async def top_up(n: int) -> grpc.StatusCode:
        try:
            await cards.top_up(customer_id, 30_000)
        except grpc.aio.AioRpcError as error:
            return error.code()
        return grpc.StatusCode.OK

    added = await asyncio.gather(*(top_up(n) for n in range(8)))
    assert added.count(grpc.StatusCode.OK) == 3  # 90,000 of the 100,000 maximum
    assert added.count(grpc.StatusCode.FAILED_PRECONDITION) == 5
    assert await cards.ledger_sum_and_balance(customer_id) == (90_000, 90_000)


async def test_an_expired_hold_is_given_back_by_the_sweep(cards: Cards) -> None:
    customer_id, _, _ = await cards.service.register("card-exp")
    await cards.top_up(customer_id, 2_000)
    held = await cards.hold(customer_id, 1_500)
    cases: CustomerUseCases = cards.service.host.runtime.parts["use_cases"]
    real = cases.context.clock
    cases.context.clock = lambda: real() + timedelta(hours=1)
    try:
        assert await cases.store_cards.sweep() >= 1
    finally:
        cases.context.clock = real
    assert (await cards.card(customer_id)).available.units == 2_000
    await expect_error(
        cards.stub.CommitStoreCardPayment(
            api.CommitStoreCardPaymentRequest(customer_id=customer_id, hold_id=held.id),
            metadata=cards.order,
        ),
        grpc.StatusCode.FAILED_PRECONDITION,
        "HOLD_RELEASED",
    )


async def test_the_database_refuses_a_card_balance_that_is_not_the_ledger_sum(cards: Cards) -> None:
    customer_id, _, _ = await cards.service.register("card-db")
    await cards.top_up(customer_id, 700)
    with pytest.raises(sa.exc.DBAPIError, match="ledger sum"):
        async with cards.service.db.engine.begin() as conn:
            await conn.execute(
                sa.update(store_cards)
                .where(store_cards.c.customer_id == uuid.UUID(customer_id))
                .values(balance=9_999)
            )
    assert (await cards.card(customer_id)).balance.units == 700
