"""InteractionService over gRPC: proto ⇄ use-case translation only."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

from grpc.aio import ServicerContext

from services.customer import convert
from services.customer.domain import timeline as td
from services.customer.usecases.greetings import Greetings
from services.customer.usecases.timeline import Timeline
from tenpo.customer.v1 import interaction_service_pb2 as api
from tenpo.customer.v1 import interaction_service_pb2_grpc as api_grpc
from tenpo.kit.auth import current_principal
from tenpo.kit.pagination import PageTokenCodec, page_size


class InteractionServicer(api_grpc.InteractionServiceServicer):
    def __init__(
        self, timeline: Timeline, page_tokens: PageTokenCodec, greetings: Greetings
    ) -> None:
        self.timeline = timeline
        self.page_tokens = page_tokens
        self.greetings = greetings

    async def RecordInteraction(
        self, request: api.RecordInteractionRequest, context: ServicerContext
    ) -> api.RecordInteractionResponse:
        message = request.interaction
        recorded = await self.timeline.record(
            current_principal(),
            convert.required_enum(td.InteractionKind, message.kind, "interaction.kind"),
            message.sku,
            message.size,
            item_tag=message.item_tag,
            request_id=request.request_id,
            request=request,
        )
        return api.RecordInteractionResponse(interaction=convert.interaction(recorded))

    async def ListInteractions(
        self, request: api.ListInteractionsRequest, context: ServicerContext
    ) -> api.ListInteractionsResponse:
        size = page_size(request.page_size, default=50, maximum=200)
        shape = {"c": request.customer_id}
        position = self.page_tokens.decode_keyset(request.page_token, query=shape)
        after = (position[0], uuid.UUID(position[1])) if position else None
        found = await self.timeline.list(current_principal(), request.customer_id, after, size + 1)
        page, next_token = self.page_tokens.keyset_page(
            found, size, lambda i: (i.created_at, i.id), query=shape
        )
        return api.ListInteractionsResponse(
            interactions=[convert.interaction(i) for i in page], next_page_token=next_token
        )

    async def CheckIn(
        self, request: api.CheckInRequest, context: ServicerContext
    ) -> api.CheckInResponse:
        at = await self.greetings.check_in(current_principal(), request.store_id)
        return api.CheckInResponse(check_in_time=convert.timestamp(at))

    async def WatchGreetings(
        self, request: api.WatchGreetingsRequest, context: ServicerContext
    ) -> AsyncIterator[api.WatchGreetingsResponse]:
        async for greeting in self.greetings.watch(current_principal()):
            yield api.WatchGreetingsResponse(
                given_name=greeting.given_name,
                suggestion_reason=int(greeting.reason),  # type: ignore[arg-type]
                suggested_sku=greeting.sku,
                check_in_time=convert.timestamp(greeting.checked_in_at),
                display_seconds=greeting.display_seconds,
            )
