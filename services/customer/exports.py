"""Outgoing calls for the GDPR export: the order, cart and notification services'
``ExportCustomerData``, asked at once with a deadline, the caller's credentials forwarded (each
service checks for itself who may export whose data).

A service that does not answer makes the export partial, never failed: its part says
``UNAVAILABLE`` with a stable reason, and the response names it."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, cast

import grpc

from tenpo.cart.v1 import cart_service_pb2, cart_service_pb2_grpc
from tenpo.kit.clients import create_channel
from tenpo.kit.grpc_errors import decode_error
from tenpo.notification.v1 import notification_service_pb2, notification_service_pb2_grpc
from tenpo.order.v1 import order_service_pb2, order_service_pb2_grpc

log = logging.getLogger(__name__)

Metadata = tuple[tuple[str, str], ...]

#: The services whose data the export gathers, in the document's order.
EXPORTING_SERVICES = ("order", "cart", "notification")

#: Each service's stub and request type (the same RPC name and shape in every package).
_CONTRACTS: dict[str, tuple[Callable[[grpc.aio.Channel], Any], type[Any]]] = {
    "order": (order_service_pb2_grpc.OrderServiceStub, order_service_pb2.ExportCustomerDataRequest),
    "cart": (cart_service_pb2_grpc.CartServiceStub, cart_service_pb2.ExportCustomerDataRequest),
    "notification": (
        notification_service_pb2_grpc.NotificationServiceStub,
        notification_service_pb2.ExportCustomerDataRequest,
    ),
}
#: Answers that mean "the caller may not", not "the service is away".
_REFUSALS = frozenset({grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED})


@dataclass(frozen=True)
class Part:
    """One service's share of the export."""

    service: str
    #: "OK", "UNAVAILABLE" (down, too slow, not configured, failing) or "REFUSED".
    status: str
    reason: str = ""
    document: Mapping[str, Any] | None = None

    def as_json(self) -> dict[str, Any]:
        found: dict[str, Any] = {"status": self.status}
        if self.reason:
            found["reason"] = self.reason
        if self.document is not None:
            found["document"] = self.document
        return found


class ServiceExports:
    """Channels are made on first use (no I/O at start-up) and closed with the service."""

    def __init__(self, targets: Mapping[str, str], timeout_seconds: float) -> None:
        self.targets = dict(targets)
        self.timeout_seconds = timeout_seconds
        self._channels: dict[str, grpc.aio.Channel] = {}

    async def gather(self, customer_id: str, forward: Metadata) -> list[Part]:
        return list(
            await asyncio.gather(*(self._one(name, customer_id, forward) for name in _CONTRACTS))
        )

    async def _one(self, service: str, customer_id: str, forward: Metadata) -> Part:
        target = self.targets.get(service, "")
        unavailable = f"{service.upper()}_UNAVAILABLE"
        if not target:
            return Part(service, "UNAVAILABLE", f"{service.upper()}_NOT_CONFIGURED")
        stub_type, request_type = _CONTRACTS[service]
        if service not in self._channels:
            # Retries inside the deadline only: the export waits for no service longer.
            self._channels[service] = create_channel(
                target, timeout_seconds=self.timeout_seconds, max_attempts=2
            )
        stub = stub_type(self._channels[service])
        try:
            call = stub.ExportCustomerData(
                request_type(customer_id=customer_id),
                metadata=forward,
                timeout=self.timeout_seconds,
            )
            response = await cast("Awaitable[Any]", call)
            document = json.loads(response.json)
        except grpc.aio.AioRpcError as error:
            code = error.code()
            if code in _REFUSALS:
                return Part(service, "REFUSED", decode_error(error).reason or code.name)
            log.warning(
                "a service's export did not answer", extra={"service": service, "code": code.name}
            )
            return Part(service, "UNAVAILABLE", unavailable)
        except ValueError:
            log.warning("a service's export was not JSON", extra={"service": service})
            return Part(service, "UNAVAILABLE", unavailable)
        return Part(service, "OK", document=document)

    async def close(self) -> None:
        channels, self._channels = self._channels, {}
        for channel in channels.values():
            await channel.close(grace=None)
