"""A service's own token: client credentials signed in at a real gRPC identity server,
reused, fetched again after invalidate; a server that is down or refuses is Unavailable
with a stable reason."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
import pytest_asyncio

from tenpo.customer.v1 import identity_service_pb2 as identity_api
from tenpo.customer.v1 import identity_service_pb2_grpc as identity_grpc
from tenpo.customer.v1 import resources_pb2 as customer_pb
from tenpo.devtools.stack.net import free_port
from tenpo.kit.errors import Unavailable
from tenpo.kit.service_token import ClientCredentials, StaticToken, configured_credentials
from tenpo.kit.settings import Environment


class FakeIdentity(identity_grpc.IdentityServiceServicer):
    def __init__(self) -> None:
        self.sign_ins = 0

    async def SignInClient(
        self, request: identity_api.SignInClientRequest, context: grpc.aio.ServicerContext
    ) -> identity_api.SignInClientResponse:
        if request.client_secret != "right":
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "wrong secret")
        self.sign_ins += 1
        return identity_api.SignInClientResponse(
            tokens=customer_pb.TokenSet(access_token=f"token-{self.sign_ins}")
        )


@pytest_asyncio.fixture
async def identity() -> AsyncIterator[tuple[FakeIdentity, str, grpc.aio.Server]]:
    fake = FakeIdentity()
    server = grpc.aio.server()
    identity_grpc.add_IdentityServiceServicer_to_server(fake, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield fake, f"127.0.0.1:{port}", server
    finally:
        await server.stop(None)


async def test_signs_in_once_reuses_and_signs_in_again_after_invalidate(
    identity: tuple[FakeIdentity, str, grpc.aio.Server],
) -> None:
    fake, target, _ = identity
    async with grpc.aio.insecure_channel(target) as channel:
        tokens = ClientCredentials(channel, "svc", "right", timeout_seconds=2)
        assert await tokens.metadata() == (("authorization", "Bearer token-1"),)
        assert await tokens.metadata() == (("authorization", "Bearer token-1"),)
        tokens.invalidate()
        assert await tokens.metadata() == (("authorization", "Bearer token-2"),)
    assert fake.sign_ins == 2


async def test_refused_credentials_are_a_stable_reason(
    identity: tuple[FakeIdentity, str, grpc.aio.Server],
) -> None:
    _, target, _ = identity
    async with grpc.aio.insecure_channel(target) as channel:
        tokens = ClientCredentials(channel, "svc", "wrong", timeout_seconds=2)
        with pytest.raises(Unavailable) as caught:
            await tokens.metadata()
    assert caught.value.reason == "SERVICE_CREDENTIALS_REJECTED"


async def test_a_stopped_identity_server_is_unavailable_not_internal() -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{free_port()}") as channel:
        tokens = ClientCredentials(channel, "svc", "right", timeout_seconds=0.5)
        with pytest.raises(Unavailable) as caught:
            await tokens.metadata()
    assert caught.value.reason == "CUSTOMER_UNAVAILABLE"


async def test_static_token() -> None:
    assert await StaticToken("t").metadata() == (("authorization", "Bearer t"),)
    assert await StaticToken("").metadata() == ()


def test_development_credentials_come_from_the_seed_file_never_in_production(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "dev-credentials.json").write_text(
        json.dumps({"services": {"notification": {"client_id": "c1", "client_secret": "s1"}}})
    )
    monkeypatch.setenv("TENPO_DATA_DIR", str(tmp_path))
    dev = Environment.DEVELOPMENT
    assert configured_credentials("notification", "", "", dev) == ("c1", "s1")
    assert configured_credentials("notification", "c2", "s2", dev) == ("c2", "s2")
    assert configured_credentials("order", "", "", dev) is None
    assert configured_credentials("notification", "", "", Environment.PRODUCTION) is None
    (tmp_path / "dev-credentials.json").write_text("not json")
    assert configured_credentials("notification", "", "", dev) is None
