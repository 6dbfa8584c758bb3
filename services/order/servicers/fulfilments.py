"""The fulfilment rpcs of OrderService over gRPC (a mixin of the order servicer, which the
one proto service needs): proto ⇄ use-case translation only."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence

from grpc.aio import ServicerContext

from services.order.convert_fulfilments import (
    delivery_status,
    fulfilment_to,
    missing_lines,
    return_to,
    view_to,
)
from services.order.domain.orders import Order
from services.order.usecases.fulfilments import Fulfilments
from services.order.usecases.returns import Returns
from services.order.usecases.waves import PickWaves
from tenpo.kit.auth import Principal, current_principal
from tenpo.kit.pagination import PageTokenCodec, page_size
from tenpo.kit.wire import parse_id, timestamp
from tenpo.order.v1 import order_service_pb2 as api
from tenpo.order.v1 import resources_pb2 as pb


class FulfilmentRpcs:
    fulfilments: Fulfilments
    returns: Returns
    page_tokens: PageTokenCodec
    waves: PickWaves

    async def shown(self, principal: Principal, order: Order, *, guest: bool = False) -> pb.Order:
        """An order as callers see it: with its fulfilments (``guest``: as its guest)."""
        return view_to(await self.fulfilments.view(principal, order, guest=guest))

    async def all_shown(self, principal: Principal, orders: Sequence[Order]) -> list[pb.Order]:
        return [view_to(v) for v in await self.fulfilments.views(principal, orders)]

    async def MarkReadyForPickup(
        self, request: api.MarkReadyForPickupRequest, context: ServicerContext
    ) -> api.MarkReadyForPickupResponse:
        view = await self.fulfilments.mark_ready(
            current_principal(),
            parse_id(request.order_id, "order_id"),
            parse_id(request.fulfillment_id, "fulfillment_id"),
            request.request_id,
        )
        return api.MarkReadyForPickupResponse(order=view_to(view))

    async def ConfirmPickup(
        self, request: api.ConfirmPickupRequest, context: ServicerContext
    ) -> api.ConfirmPickupResponse:
        view = await self.fulfilments.confirm_pickup(
            current_principal(),
            parse_id(request.order_id, "order_id"),
            parse_id(request.fulfillment_id, "fulfillment_id"),
            request.pickup_code,
            request.request_id,
        )
        return api.ConfirmPickupResponse(order=view_to(view))

    async def ShipFulfillment(
        self, request: api.ShipFulfillmentRequest, context: ServicerContext
    ) -> api.ShipFulfillmentResponse:
        view = await self.fulfilments.ship(
            current_principal(),
            parse_id(request.order_id, "order_id"),
            parse_id(request.fulfillment_id, "fulfillment_id"),
            request.carrier,
            request.tracking_number,
            request.request_id,
        )
        return api.ShipFulfillmentResponse(order=view_to(view))

    async def UpdateDeliveryStatus(
        self, request: api.UpdateDeliveryStatusRequest, context: ServicerContext
    ) -> api.UpdateDeliveryStatusResponse:
        view = await self.fulfilments.update_delivery(
            current_principal(),
            parse_id(request.order_id, "order_id"),
            parse_id(request.fulfillment_id, "fulfillment_id"),
            delivery_status(request.status),
            request.request_id,
        )
        return api.UpdateDeliveryStatusResponse(order=view_to(view))

    async def ListStoreFulfillments(
        self, request: api.ListStoreFulfillmentsRequest, context: ServicerContext
    ) -> api.ListStoreFulfillmentsResponse:
        size = page_size(request.page_size, default=50, maximum=200)
        query = {"store": request.store_id}
        after = self.page_tokens.decode_keyset(request.page_token, query=query)
        position = (after[0], uuid.UUID(after[1])) if after else None
        fetched = await self.fulfilments.list_for_store(
            current_principal(), request.store_id, position, size + 1
        )
        page, token = self.page_tokens.keyset_page(
            fetched, size, lambda item: (item[0].due_at, item[0].id), query=query
        )
        # Store devices never see pickup codes: the customer shows hers.
        return api.ListStoreFulfillmentsResponse(
            fulfillments=[
                fulfilment_to(f, currency, owner_view=False, order_number=number)
                for f, number, currency in page
            ],
            next_page_token=token,
        )

    async def PickFulfillment(
        self, request: api.PickFulfillmentRequest, context: ServicerContext
    ) -> api.PickFulfillmentResponse:
        view = await self.fulfilments.pick(
            current_principal(),
            parse_id(request.order_id, "order_id"),
            parse_id(request.fulfillment_id, "fulfillment_id"),
            missing_lines(request.missing_lines),
            request.request_id,
        )
        return api.PickFulfillmentResponse(order=view_to(view))

    async def PackFulfillment(
        self, request: api.PackFulfillmentRequest, context: ServicerContext
    ) -> api.PackFulfillmentResponse:
        view = await self.fulfilments.pack(
            current_principal(),
            parse_id(request.order_id, "order_id"),
            parse_id(request.fulfillment_id, "fulfillment_id"),
            request.request_id,
        )
        return api.PackFulfillmentResponse(order=view_to(view))

    async def ReturnOrderLines(
        self, request: api.ReturnOrderLinesRequest, context: ServicerContext
    ) -> api.ReturnOrderLinesResponse:
        value, currency = await self.returns.return_lines(
            current_principal(),
            parse_id(request.order_id, "order_id"),
            request.store_id,
            missing_lines(request.lines),
            request.request_id,
        )
        return api.ReturnOrderLinesResponse(order_return=return_to(value, currency))

    async def WatchOrder(
        self, request: api.WatchOrderRequest, context: ServicerContext
    ) -> AsyncIterator[api.WatchOrderResponse]:
        order_id = parse_id(request.order_id, "order_id")
        principal = current_principal()
        async for view in self.fulfilments.watch(principal, order_id, request.order_token):
            yield api.WatchOrderResponse(order=view_to(view))

    async def ListPickWaves(
        self, request: api.ListPickWavesRequest, context: ServicerContext
    ) -> api.ListPickWavesResponse:
        waves, truncated = await self.waves.list(
            current_principal(), request.store_id, request.wave_minutes, request.max_fulfillments
        )
        return api.ListPickWavesResponse(
            waves=[
                api.PickWave(
                    number=wave.number,
                    due_from=timestamp(wave.due_from),
                    due_until=timestamp(wave.due_until),
                    fulfillment_ids=[str(f.id) for f in wave.fulfilments],
                    pick_lines=[
                        pb.FulfillmentLine(sku=sku, quantity=units)
                        for sku, units in wave.pick_lines
                    ],
                )
                for wave in waves
            ],
            truncated=truncated,
        )
