"""gRPC ingress details: a rate-limited call carries a ``retry-after`` trailer besides the
ErrorInfo (reason RATE_LIMITED, retry_after_seconds) in its status details."""

from __future__ import annotations

import grpc
from google.rpc import error_details_pb2, status_pb2

from tenpo.catalog.v1 import catalog_service_pb2 as catalog_api
from tests.services.gateway.conftest import WEB_KEY, GatewayFactory

GET_PRODUCT = "/tenpo.catalog.v1.CatalogService/GetProduct"


async def test_rate_limited_calls_carry_retry_after(start_gateway: GatewayFactory) -> None:
    async with (
        start_gateway(targets={"catalog": "127.0.0.1:9"}, address_rate=0.01, address_burst=1) as gw,
        grpc.aio.insecure_channel(gw.grpc_target) as channel,
    ):
        call = channel.unary_unary(GET_PRODUCT)
        request = catalog_api.GetProductRequest(id="x").SerializeToString()
        codes = []
        limited: grpc.aio.AioRpcError | None = None
        for _ in range(2):
            try:
                await call(request, metadata=(("x-api-key", WEB_KEY),), timeout=10)
            except grpc.aio.AioRpcError as error:
                codes.append(error.code())
                limited = error
    # The first call passes the limiter (and finds no backend), the second does not.
    assert codes == [grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED]
    assert limited is not None
    trailers = dict(limited.trailing_metadata() or ())
    assert int(trailers["retry-after"]) >= 1
    status = status_pb2.Status.FromString(trailers["grpc-status-details-bin"])
    info = error_details_pb2.ErrorInfo()
    assert status.details[0].Unpack(info)
    assert info.reason == "RATE_LIMITED"
    assert info.metadata["retry_after_seconds"] == trailers["retry-after"]
