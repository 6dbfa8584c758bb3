"""The whole system as a new user meets it: `make run`'s stack, every service SERVING, a
generic reflection-based client (no generated code) finding products in Japanese and by JAN,
Ctrl-C, and the data still there on the next run."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import descriptor_pool, json_format, message_factory
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

from tenpo.devtools.stack.config import discover_services
from tenpo.devtools.stack.runner import READY_BANNER
from tenpo.kit.auth import ChannelAssertion
from tenpo.kit.settings import DEV_CHANNEL_ASSERTION_SECRET
from tests.stack import Runner, quiet_ports

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[1]


class ReflectionClient:
    """Calls any method by name, learning the types from the server's reflection service."""

    def __init__(self, target: str) -> None:
        self.channel = grpc.insecure_channel(target)
        self.pool = descriptor_pool.DescriptorPool(ProtoReflectionDescriptorDatabase(self.channel))

    def call(
        self, service: str, method: str, request: dict[str, Any], metadata: Any = ()
    ) -> dict[str, Any]:
        descriptor = self.pool.FindServiceByName(service).methods_by_name[method]
        request_type = message_factory.GetMessageClass(descriptor.input_type)
        response_type = message_factory.GetMessageClass(descriptor.output_type)
        stub = self.channel.unary_unary(
            f"/{service}/{method}",
            request_serializer=request_type.SerializeToString,
            response_deserializer=response_type.FromString,
        )
        response = stub(
            json_format.ParseDict(request, request_type()), metadata=metadata, timeout=30
        )
        return json_format.MessageToDict(response)

    def close(self) -> None:
        self.channel.close()


@pytest.fixture
def system_env(runner_env: dict[str, str]) -> dict[str, str]:
    env = dict(runner_env)
    env.pop("TENPO_SERVICES")  # every service that exists
    env["TENPO_PORT_BASE"] = str(quiet_ports(120))
    env["GATEWAY_HTTP_PORT"] = str(quiet_ports())
    return env


# Two whole start-ups (up to 420 s each on a busy machine) and two shutdowns: more than the
# suite's default budget.
@pytest.mark.timeout(1200)
def test_a_new_user_runs_the_system_and_finds_products(system_env: dict[str, str]) -> None:
    base = int(system_env["TENPO_PORT_BASE"])
    catalog = f"127.0.0.1:{base + 1}"
    first = Runner("run", system_env)
    first.wait_for(READY_BANNER, timeout=420)
    for service in discover_services(ROOT / "services"):
        assert f"start {service}" in first.text, first.text

    # Every gRPC port in the table answers SERVING.
    for line in first.text.splitlines():
        if " grpc 127.0.0.1:" in line:
            address = line.split(" grpc ")[1].split()[0]
            with grpc.insecure_channel(address) as channel:
                status = health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(), timeout=10
                )
                assert status.status == health_pb2.HealthCheckResponse.SERVING, address

    client = ReflectionClient(catalog)
    web = ChannelAssertion(DEV_CHANNEL_ASSERTION_SECRET).metadata("WEB")
    try:
        found = client.call(
            "tenpo.catalog.v1.CatalogService",
            "SearchProducts",
            {"query": "スニーカー", "pageSize": 5},
            web,
        )
        assert found["totalSize"] > 0
        assert all("スニーカー" in r["product"]["title"] for r in found["results"])
        first_id = found["results"][0]["product"]["id"]
        jan = found["results"][0]["product"]["variants"][0]["barcodes"][0]["value"]
        looked_up = client.call(
            "tenpo.catalog.v1.CatalogService", "LookupByBarcode", {"code": jan}, web
        )
        assert looked_up["product"]["id"] == first_id
    finally:
        client.close()

    first.process.send_signal(signal.SIGINT)
    assert first.finish(timeout=90) == 0, first.text

    again = Runner("run", system_env)
    again.wait_for(READY_BANNER, timeout=420)
    client = ReflectionClient(catalog)
    try:
        still = client.call(
            "tenpo.catalog.v1.CatalogService", "LookupByBarcode", {"code": jan}, web
        )
        assert still["product"]["id"] == first_id
    finally:
        client.close()
    again.process.send_signal(signal.SIGINT)
    assert again.finish(timeout=90) == 0, again.text
