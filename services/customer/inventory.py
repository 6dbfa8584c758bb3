"""Outgoing calls to the inventory service: is a store id one of its locations."""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from typing import cast

import grpc

from services.customer import domain as d
from tenpo.inventory.v1 import inventory_service_pb2 as inventory_api
from tenpo.inventory.v1 import inventory_service_pb2_grpc as inventory_grpc
from tenpo.inventory.v1 import resources_pb2 as inventory_pb
from tenpo.kit.clients import create_channel
from tenpo.kit.errors import Unavailable

log = logging.getLogger(__name__)


class InventoryLocations:
    """Asks inventory's ``GetLocation`` (public) with a deadline. Asked, not projected from
    inventory's events: a store is checked only when staff create a device client (rare),
    and the stream keeps events for seven days, so a projection built later would miss
    locations created before it."""

    def __init__(self, target: str, timeout_seconds: float) -> None:
        self.target = target
        self.timeout_seconds = timeout_seconds
        self._channel: grpc.aio.Channel | None = None

    def _stub(self) -> inventory_grpc.InventoryServiceStub:
        if not self.target:
            raise Unavailable(
                "no inventory service is configured (inventory_target)",
                reason="INVENTORY_NOT_CONFIGURED",
            )
        if self._channel is None:  # created on first use: no I/O at start-up
            self._channel = create_channel(
                self.target, timeout_seconds=self.timeout_seconds, max_attempts=3
            )
        return inventory_grpc.InventoryServiceStub(self._channel)

    async def find(self, location_id: str) -> d.KnownLocation | None:
        """The location, None if inventory does not know it; Unavailable if inventory
        cannot say within the deadline."""
        stub = self._stub()
        try:
            # The generated stubs are typed for the synchronous API.
            call = stub.GetLocation(
                inventory_api.GetLocationRequest(id=location_id), timeout=self.timeout_seconds
            )
            response = await cast("Awaitable[inventory_api.GetLocationResponse]", call)
        except grpc.aio.AioRpcError as error:
            if error.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT):
                return None
            log.warning("inventory location lookup failed", extra={"code": error.code().name})
            raise Unavailable(
                "the inventory service did not answer; try again",
                reason="INVENTORY_UNAVAILABLE",
            ) from None
        location = response.location
        return d.KnownLocation(
            id=location.id, is_store=location.type == inventory_pb.LOCATION_TYPE_STORE
        )

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close(grace=None)
            self._channel = None
