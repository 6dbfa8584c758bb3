"""LoyaltyService over gRPC: proto ⇄ use-case translation only."""

from __future__ import annotations

from collections.abc import AsyncIterator

from grpc.aio import ServicerContext

from services.customer import convert
from services.customer import domain as d
from services.customer.domain import loyalty as ld
from services.customer.servicers.ledger import change_request
from services.customer.usecases.loyalty import Loyalty
from tenpo.customer.v1 import loyalty_service_pb2 as api
from tenpo.customer.v1 import loyalty_service_pb2_grpc as api_grpc
from tenpo.kit.auth import current_principal
from tenpo.kit.pagination import PageTokenCodec, page_size


def _answer(entry: ld.Entry | None, account: ld.Account) -> dict[str, object]:
    return {
        "entry": convert.ledger_entry(entry) if entry else None,
        "balance": convert.loyalty_balance(account),
    }


class LoyaltyServicer(api_grpc.LoyaltyServiceServicer):
    def __init__(self, loyalty: Loyalty, page_tokens: PageTokenCodec) -> None:
        self.loyalty = loyalty
        self.page_tokens = page_tokens

    async def GetBalance(
        self, request: api.GetBalanceRequest, context: ServicerContext
    ) -> api.GetBalanceResponse:
        account = await self.loyalty.balance(current_principal(), request.customer_id)
        return api.GetBalanceResponse(balance=convert.loyalty_balance(account))

    async def ListLedgerEntries(
        self, request: api.ListLedgerEntriesRequest, context: ServicerContext
    ) -> api.ListLedgerEntriesResponse:
        size = page_size(request.page_size, default=50, maximum=200)
        shape = {"c": request.customer_id}
        cursor = self.page_tokens.decode(request.page_token, query=shape)
        found = await self.loyalty.entries(
            current_principal(),
            request.customer_id,
            before_seq=int(cursor["s"]) if cursor else None,
            limit=size + 1,
        )
        response = api.ListLedgerEntriesResponse(
            entries=[convert.ledger_entry(entry) for _, entry in found[:size]]
        )
        if len(found) > size:
            response.next_page_token = self.page_tokens.encode(
                {"s": found[size - 1][0]}, query=shape
            )
        return response

    async def WatchBalance(
        self, request: api.WatchBalanceRequest, context: ServicerContext
    ) -> AsyncIterator[api.WatchBalanceResponse]:
        async for update in self.loyalty.watch(current_principal(), request.customer_id):
            yield api.WatchBalanceResponse(
                balance=convert.loyalty_balance(update.account), snapshot=update.snapshot
            )

    async def EarnPoints(
        self, request: api.EarnPointsRequest, context: ServicerContext
    ) -> api.EarnPointsResponse:
        if not request.HasField("amount"):
            raise d.invalid("amount", "is required", "FIELD_REQUIRED")
        yen = ld.earn_amount(
            request.amount.currency_code, request.amount.units, request.amount.nanos
        )
        entry, account = await self.loyalty.earn(
            current_principal(),
            request.customer_id,
            yen=yen,
            change=change_request(request),
        )
        return api.EarnPointsResponse(**_answer(entry, account))  # type: ignore[arg-type]

    async def AdjustPoints(
        self, request: api.AdjustPointsRequest, context: ServicerContext
    ) -> api.AdjustPointsResponse:
        entry, account = await self.loyalty.adjust(
            current_principal(),
            request.customer_id,
            points=request.points,
            reason=request.reason,
            request_id=request.request_id,
            request=request,
        )
        return api.AdjustPointsResponse(**_answer(entry, account))  # type: ignore[arg-type]

    async def ReverseEntry(
        self, request: api.ReverseEntryRequest, context: ServicerContext
    ) -> api.ReverseEntryResponse:
        entry, account = await self.loyalty.reverse(
            current_principal(),
            request.customer_id,
            request.entry_id,
            request_id=request.request_id,
            request=request,
        )
        return api.ReverseEntryResponse(**_answer(entry, account))  # type: ignore[arg-type]

    async def ReservePoints(
        self, request: api.ReservePointsRequest, context: ServicerContext
    ) -> api.ReservePointsResponse:
        reservation = await self.loyalty.reserve(
            current_principal(),
            request.customer_id,
            points=request.points,
            change=change_request(request),
        )
        return api.ReservePointsResponse(reservation=convert.points_reservation(reservation))

    async def CommitReservation(
        self, request: api.CommitReservationRequest, context: ServicerContext
    ) -> api.CommitReservationResponse:
        reservation = await self.loyalty.commit(
            current_principal(), request.customer_id, request.reservation_id
        )
        return api.CommitReservationResponse(reservation=convert.points_reservation(reservation))

    async def ReleaseReservation(
        self, request: api.ReleaseReservationRequest, context: ServicerContext
    ) -> api.ReleaseReservationResponse:
        reservation = await self.loyalty.release(
            current_principal(), request.customer_id, request.reservation_id
        )
        return api.ReleaseReservationResponse(reservation=convert.points_reservation(reservation))
