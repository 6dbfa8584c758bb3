"""StoreCardService over gRPC: proto ⇄ use-case translation only."""

from __future__ import annotations

from google.type import money_pb2
from grpc.aio import ServicerContext

from services.customer import convert
from services.customer import domain as d
from services.customer.domain import store_card as sd
from services.customer.servicers.ledger import change_request
from services.customer.usecases.store_card import StoreCards
from tenpo.customer.v1 import store_card_service_pb2 as api
from tenpo.customer.v1 import store_card_service_pb2_grpc as api_grpc
from tenpo.kit.auth import current_principal
from tenpo.kit.pagination import PageTokenCodec, page_size


def _yen(amount: int) -> money_pb2.Money:
    return money_pb2.Money(currency_code=sd.CURRENCY, units=amount)


def card_message(card: sd.Card) -> api.StoreCard:
    return api.StoreCard(
        customer_id=str(card.customer_id),
        balance=_yen(card.balance),
        reserved=_yen(card.reserved),
        available=_yen(card.available),
        version=card.version,
        update_time=convert.timestamp(card.updated_at),
    )


def entry_message(entry: sd.Entry) -> api.StoreCardEntry:
    return api.StoreCardEntry(
        id=str(entry.id),
        kind=int(entry.kind),  # type: ignore[arg-type]
        amount=_yen(entry.amount),
        channel=entry.channel,  # type: ignore[arg-type]
        store_id=entry.store_id or "",
        request_id=entry.request_id,
        reference=entry.reference,
        create_time=convert.timestamp(entry.created_at),
    )


def hold_message(hold: sd.Hold) -> api.StoreCardHold:
    return api.StoreCardHold(
        id=str(hold.id),
        customer_id=str(hold.customer_id),
        amount=_yen(hold.amount),
        state=int(hold.state),  # type: ignore[arg-type]
        reference=hold.reference,
        expire_time=convert.timestamp(hold.expires_at),
        entry_id=str(hold.entry_id) if hold.entry_id else "",
    )


def _amount(request: api.TopUpStoreCardRequest | api.ReserveStoreCardPaymentRequest) -> int:
    if not request.HasField("amount"):
        raise d.invalid("amount", "is required", "FIELD_REQUIRED")
    return sd.check_amount(request.amount.currency_code, request.amount.units, request.amount.nanos)


class StoreCardServicer(api_grpc.StoreCardServiceServicer):
    def __init__(self, cards: StoreCards, page_tokens: PageTokenCodec) -> None:
        self.cards = cards
        self.page_tokens = page_tokens

    async def GetStoreCard(
        self, request: api.GetStoreCardRequest, context: ServicerContext
    ) -> api.GetStoreCardResponse:
        card = await self.cards.card(current_principal(), request.customer_id)
        return api.GetStoreCardResponse(card=card_message(card))

    async def ListStoreCardEntries(
        self, request: api.ListStoreCardEntriesRequest, context: ServicerContext
    ) -> api.ListStoreCardEntriesResponse:
        size = page_size(request.page_size, default=50, maximum=200)
        shape = {"c": request.customer_id}
        cursor = self.page_tokens.decode(request.page_token, query=shape)
        found = await self.cards.entries(
            current_principal(),
            request.customer_id,
            before_seq=int(cursor["s"]) if cursor else None,
            limit=size + 1,
        )
        response = api.ListStoreCardEntriesResponse(
            entries=[entry_message(entry) for _, entry in found[:size]]
        )
        if len(found) > size:
            response.next_page_token = self.page_tokens.encode(
                {"s": found[size - 1][0]}, query=shape
            )
        return response

    async def TopUpStoreCard(
        self, request: api.TopUpStoreCardRequest, context: ServicerContext
    ) -> api.TopUpStoreCardResponse:
        entry, card = await self.cards.top_up(
            current_principal(),
            request.customer_id,
            yen=_amount(request),
            change=change_request(request),
        )
        return api.TopUpStoreCardResponse(entry=entry_message(entry), card=card_message(card))

    async def ReserveStoreCardPayment(
        self, request: api.ReserveStoreCardPaymentRequest, context: ServicerContext
    ) -> api.ReserveStoreCardPaymentResponse:
        hold = await self.cards.reserve(
            current_principal(),
            request.customer_id,
            yen=_amount(request),
            change=change_request(request),
        )
        return api.ReserveStoreCardPaymentResponse(hold=hold_message(hold))

    async def CommitStoreCardPayment(
        self, request: api.CommitStoreCardPaymentRequest, context: ServicerContext
    ) -> api.CommitStoreCardPaymentResponse:
        hold = await self.cards.commit(current_principal(), request.customer_id, request.hold_id)
        return api.CommitStoreCardPaymentResponse(hold=hold_message(hold))

    async def ReleaseStoreCardPayment(
        self, request: api.ReleaseStoreCardPaymentRequest, context: ServicerContext
    ) -> api.ReleaseStoreCardPaymentResponse:
        hold = await self.cards.release(current_principal(), request.customer_id, request.hold_id)
        return api.ReleaseStoreCardPaymentResponse(hold=hold_message(hold))
