"""CartService.ExportCustomerData over gRPC: translation only (a mixin of the servicer)."""

from __future__ import annotations

from grpc.aio import ServicerContext

from services.cart.usecases.carts import Carts
from services.cart.usecases.export import CustomerExport
from tenpo.cart.v1 import cart_service_pb2 as api
from tenpo.kit.auth import current_principal
from tenpo.kit.export import CONTENT_TYPE


class ExportRpcs:
    carts: Carts

    async def ExportCustomerData(
        self, request: api.ExportCustomerDataRequest, context: ServicerContext
    ) -> api.ExportCustomerDataResponse:
        document = await CustomerExport(self.carts.db).export(
            current_principal(), request.customer_id
        )
        return api.ExportCustomerDataResponse(json=document, content_type=CONTENT_TYPE)
