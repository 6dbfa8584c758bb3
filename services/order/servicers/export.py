"""OrderService.ExportCustomerData over gRPC: translation only (a mixin of the servicer)."""

from __future__ import annotations

from grpc.aio import ServicerContext

from services.order.usecases.checkout import Checkout
from services.order.usecases.export import CustomerExport
from tenpo.kit.auth import current_principal
from tenpo.kit.export import CONTENT_TYPE
from tenpo.order.v1 import order_service_pb2 as api


class ExportRpcs:
    checkout: Checkout

    async def ExportCustomerData(
        self, request: api.ExportCustomerDataRequest, context: ServicerContext
    ) -> api.ExportCustomerDataResponse:
        document = await CustomerExport(self.checkout.db).export(
            current_principal(), request.customer_id
        )
        return api.ExportCustomerDataResponse(json=document, content_type=CONTENT_TYPE)
