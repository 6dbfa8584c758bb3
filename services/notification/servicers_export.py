"""NotificationService.ExportCustomerData over gRPC: translation only (a mixin of the
servicer)."""

from __future__ import annotations

from grpc.aio import ServicerContext

from services.notification.usecases.export import CustomerExport
from services.notification.usecases.messages import Messages
from tenpo.kit.auth import current_principal
from tenpo.kit.export import CONTENT_TYPE
from tenpo.notification.v1 import notification_service_pb2 as api


class ExportRpcs:
    messages: Messages

    async def ExportCustomerData(
        self, request: api.ExportCustomerDataRequest, context: ServicerContext
    ) -> api.ExportCustomerDataResponse:
        document = await CustomerExport(self.messages.db).export(
            current_principal(), request.customer_id
        )
        return api.ExportCustomerDataResponse(json=document, content_type=CONTENT_TYPE)
