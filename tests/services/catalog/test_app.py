"""Catalog wiring: a cached product is dropped by the writer's own write at once and, on
another replica, by the product event (the cache TTL is an hour here, so only the event
can refresh it)."""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack

import grpc
from google.protobuf import field_mask_pb2

from services.catalog.app import definition
from services.catalog.config import CatalogSettings
from tenpo.catalog.v1 import catalog_service_pb2 as api
from tenpo.catalog.v1 import catalog_service_pb2_grpc
from tenpo.catalog.v1 import resources_pb2 as pb
from tenpo.devtools.keys import DevKeys
from tenpo.kit import migrations
from tenpo.kit.server import running
from tests.services.catalog.test_products_api import create, new_product
from tests.services.conftest import Tokens, auth_settings

WEB = (("x-tenpo-channel", "WEB"),)


async def test_cached_products_follow_writes_on_every_replica(
    database_url: str, nats_url: str, dev_keys: DevKeys, tokens: Tokens
) -> None:
    await migrations.upgrade(definition.migrations, database_url)  # type: ignore[arg-type]
    settings = CatalogSettings(
        database_url=database_url,
        nats_url=nats_url,
        grpc_port=0,
        product_cache_ttl_seconds=3600,
        **auth_settings(dev_keys),  # type: ignore[arg-type]
    )
    async with AsyncExitStack() as stack:
        stubs = []
        for _ in range(2):
            host = await stack.enter_async_context(running(definition, settings))
            channel = await stack.enter_async_context(
                grpc.aio.insecure_channel(f"127.0.0.1:{host.port}")
            )
            stubs.append(catalog_service_pb2_grpc.CatalogServiceStub(channel))
        writer, reader = stubs

        product = await create(writer, tokens, new_product("CACHE-1", jan=31))
        for stub in stubs:  # both replicas now hold the product and its rendered response
            got = await stub.GetProduct(api.GetProductRequest(id=product.id), metadata=WEB)
            assert got.product.brand == "MINATO"

        updated = (
            await writer.UpdateProduct(
                api.UpdateProductRequest(
                    product=pb.Product(id=product.id, brand="Kaze Works"),
                    update_mask=field_mask_pb2.FieldMask(paths=["brand"]),
                ),
                metadata=tokens.staff,
            )
        ).product
        own = await writer.GetProduct(api.GetProductRequest(id=product.id), metadata=WEB)
        assert own.product.brand == "Kaze Works"

        seen = ""
        for _ in range(200):
            seen = (
                await reader.GetProduct(api.GetProductRequest(id=product.id), metadata=WEB)
            ).product.etag
            if seen == updated.etag:
                break
            await asyncio.sleep(0.05)
        assert seen == updated.etag

        # Archiving on one replica hides the product on the other.
        await writer.DeleteProduct(api.DeleteProductRequest(id=product.id), metadata=tokens.staff)
        code = None
        for _ in range(200):
            try:
                await reader.GetProduct(api.GetProductRequest(id=product.id), metadata=WEB)
            except grpc.aio.AioRpcError as error:
                code = error.code()
                break
            await asyncio.sleep(0.05)
        assert code is grpc.StatusCode.NOT_FOUND
