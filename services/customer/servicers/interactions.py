"""InteractionService over gRPC: proto ⇄ use-case translation only."""

from __future__ import annotations

import uuid

from grpc.aio import ServicerContext

from services.customer import convert
from services.customer.domain import timeline as td
from services.customer.usecases.timeline import Timeline
from tenpo.customer.v1 import interaction_service_pb2 as api
from tenpo.customer.v1 import interaction_service_pb2_grpc as api_grpc
from tenpo.kit.auth import current_principal
from tenpo.kit.pagination import PageTokenCodec, page_size


class InteractionServicer(api_grpc.InteractionServiceServicer):
    def __init__(self, timeline: Timeline, page_tokens: PageTokenCodec) -> None:
        self.timeline = timeline
        self.page_tokens = page_tokens

    async def RecordInteraction(
        self, request: api.RecordInteractionRequest, context: ServicerContext
    ) -> api.RecordInteractionResponse:
        message = request.interaction
        recorded = await self.timeline.record(
            current_principal(),
            convert.required_enum(td.InteractionKind, message.kind, "interaction.kind"),
            message.sku,
            message.size,
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
