"""The client-channel factory: UNAVAILABLE retried with backoff, a deadline on every call,
credentials forwarded."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
import pytest_asyncio
from google.protobuf import empty_pb2, struct_pb2, wrappers_pb2

from tenpo.devtools.keys import DevKeys, ensure_dev_keys, mint_token
from tenpo.kit.clients import create_channel
from tenpo.kit.server import ServiceHost, running
from tests.conftest import scratch_dir
from tests.kit.sample_service import SERVICE, SampleSettings, definition

ISSUER = "https://auth.test.tenpo"


@pytest.fixture(scope="module")
def keys() -> Any:
    with scratch_dir("tenpo-test-keys-") as root:
        yield ensure_dev_keys(root)


@pytest_asyncio.fixture
async def sample(keys: DevKeys) -> AsyncIterator[ServiceHost[SampleSettings]]:
    settings = SampleSettings(
        service_name="sample", auth_jwks_file=keys.jwks_path, auth_issuer=ISSUER
    )
    async with running(definition, settings) as host:
        yield host


def method(channel: grpc.aio.Channel, name: str, response_type: Any) -> Any:
    return channel.unary_unary(
        f"/{SERVICE}/{name}",
        request_serializer=lambda m: m.SerializeToString(),
        response_deserializer=response_type.FromString,
    )


async def test_unavailable_is_retried_with_backoff(sample: ServiceHost[SampleSettings]) -> None:
    async with create_channel(f"127.0.0.1:{sample.port}", max_attempts=4) as channel:
        result = await method(channel, "Flaky", wrappers_pb2.Int64Value)(
            wrappers_pb2.StringValue(value="a")
        )
    assert result.value == 3  # two UNAVAILABLE answers were retried transparently

    async with create_channel(f"127.0.0.1:{sample.port}", max_attempts=2) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await method(channel, "Flaky", wrappers_pb2.Int64Value)(
                wrappers_pb2.StringValue(value="b")
            )
    assert caught.value.code() is grpc.StatusCode.UNAVAILABLE


async def test_every_call_gets_a_deadline(sample: ServiceHost[SampleSettings]) -> None:
    async with create_channel(f"127.0.0.1:{sample.port}", timeout_seconds=0.5) as channel:
        slow = method(channel, "Slow", wrappers_pb2.DoubleValue)
        # Within the budget: answered (grpcio's service-config timeout fired ~1 s early).
        assert (await slow(wrappers_pb2.DoubleValue(value=0.1))).value == 0.1
        started = time.monotonic()
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await slow(wrappers_pb2.DoubleValue(value=3.0))
        waited = time.monotonic() - started
        # The caller's own deadline wins over the default.
        assert (await slow(wrappers_pb2.DoubleValue(value=0.8), timeout=2.0)).value == 0.8
    assert caught.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
    assert 0.4 < waited < 1.5


async def test_token_provider_forwards_credentials(
    sample: ServiceHost[SampleSettings], keys: DevKeys
) -> None:
    token = mint_token(
        keys.private_key_pem,
        keys.kid,
        subject="svc-order",
        kind="service",
        issuer=ISSUER,
        audience="tenpo",
    )
    async with create_channel(f"127.0.0.1:{sample.port}", token_provider=lambda: token) as channel:
        who = await method(channel, "WhoAmI", struct_pb2.Struct)(empty_pb2.Empty())
    assert who["kind"] == "service"
    assert who["subject"] == "svc-order"
