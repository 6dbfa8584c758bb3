"""The kit's server bootstrap: error mapping, authentication, health, reflection, draining."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import pytest_asyncio
from google.protobuf import empty_pb2, struct_pb2, wrappers_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from tenpo.common.v1 import common_pb2
from tenpo.devtools.keys import ensure_dev_keys, generate_key, mint_token
from tenpo.kit.auth import ChannelAssertion
from tenpo.kit.grpc_errors import decode_error
from tenpo.kit.server import ServiceHost, running
from tenpo.kit.settings import DEV_CHANNEL_ASSERTION_SECRET
from tests.kit.sample_service import SERVICE, SampleSettings, definition

ISSUER = "https://auth.test.tenpo"


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return ensure_dev_keys(tmp_path_factory.mktemp("keys"))


@pytest_asyncio.fixture
async def sample(keys: Any) -> AsyncIterator[ServiceHost[SampleSettings]]:
    settings = SampleSettings(
        service_name="sample",
        auth_jwks_file=keys.jwks_path,
        auth_issuer=ISSUER,
        auth_audience="tenpo",
    )
    async with running(definition, settings) as host:
        yield host


def call(channel: grpc.aio.Channel, method: str, response_type: Any) -> Any:
    return channel.unary_unary(
        f"/{SERVICE}/{method}",
        request_serializer=lambda m: m.SerializeToString(),
        response_deserializer=response_type.FromString,
    )


async def test_domain_error_reaches_client_with_reason_and_field_violations(
    sample: ServiceHost[SampleSettings],
) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{sample.port}") as channel:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call(channel, "Fail", empty_pb2.Empty)(wrappers_pb2.StringValue(value="x"))
        details = decode_error(caught.value)
        assert details.code is grpc.StatusCode.INVALID_ARGUMENT
        assert details.reason == "QUANTITY_INVALID"
        assert [(v.field, v.description) for v in details.field_violations] == [
            ("lines[2].quantity", "must be at least 1")
        ]

        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call(channel, "Fail", empty_pb2.Empty)(wrappers_pb2.StringValue(value="missing"))
        details = decode_error(caught.value)
        assert details.code is grpc.StatusCode.NOT_FOUND
        assert details.reason == "NOTE_NOT_FOUND"
        assert details.metadata == {"id": "42"}


async def test_unexpected_error_is_internal_with_only_a_trace_id(
    sample: ServiceHost[SampleSettings],
) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{sample.port}") as channel:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call(channel, "Boom", empty_pb2.Empty)(empty_pb2.Empty())
    details = decode_error(caught.value)
    assert details.code is grpc.StatusCode.INTERNAL
    assert details.reason == "INTERNAL"
    trace_id = details.metadata["trace_id"]
    assert len(trace_id) == 32
    assert trace_id in details.message
    assert "postgres" not in details.message
    assert "secret" not in repr(caught.value)


async def test_principal_from_token_reaches_the_handler(
    sample: ServiceHost[SampleSettings], keys: Any
) -> None:
    token = mint_token(
        keys.private_key_pem,
        keys.kid,
        subject="device-kiosk-7",
        kind="device",
        issuer=ISSUER,
        audience="tenpo",
        scopes=["catalog:read", "inventory:read"],
        channel="KIOSK",
        store_id="shibuya",
    )
    async with grpc.aio.insecure_channel(f"127.0.0.1:{sample.port}") as channel:
        who = await call(channel, "WhoAmI", struct_pb2.Struct)(
            empty_pb2.Empty(), metadata=(("authorization", f"Bearer {token}"),)
        )
        assert who["kind"] == "device"
        assert who["subject"] == "device-kiosk-7"
        assert who["store"] == "shibuya"
        assert int(who["channel"]) == common_pb2.CHANNEL_KIOSK
        assert list(who["scopes"]) == ["catalog:read", "inventory:read"]

        vouched = ChannelAssertion(DEV_CHANNEL_ASSERTION_SECRET).metadata("WEB")
        anonymous = await call(channel, "WhoAmI", struct_pb2.Struct)(
            empty_pb2.Empty(), metadata=vouched
        )
        assert anonymous["kind"] == "anonymous"
        assert int(anonymous["channel"]) == common_pb2.CHANNEL_WEB
        # A header without the gateway's proof is ignored.
        bare = await call(channel, "WhoAmI", struct_pb2.Struct)(
            empty_pb2.Empty(), metadata=(("x-tenpo-channel", "KIOSK"),)
        )
        assert int(bare["channel"]) == common_pb2.CHANNEL_UNSPECIFIED


async def test_bad_tokens_are_rejected_even_on_public_methods(
    sample: ServiceHost[SampleSettings], keys: Any
) -> None:
    other_private, _ = generate_key(kid=keys.kid)
    forged = mint_token(
        other_private, keys.kid, subject="staff-1", kind="staff", issuer=ISSUER, audience="tenpo"
    )
    wrong_audience = mint_token(
        keys.private_key_pem,
        keys.kid,
        subject="c1",
        kind="customer",
        issuer=ISSUER,
        audience="somebody-else",
    )
    async with grpc.aio.insecure_channel(f"127.0.0.1:{sample.port}") as channel:
        for token in (forged, wrong_audience, "not-a-jwt"):
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await call(channel, "Echo", wrappers_pb2.StringValue)(
                    wrappers_pb2.StringValue(value="hi"),
                    metadata=(("authorization", f"Bearer {token}"),),
                )
            assert caught.value.code() is grpc.StatusCode.UNAUTHENTICATED
            assert decode_error(caught.value).reason is not None


async def test_health_reflection_and_streaming(sample: ServiceHost[SampleSettings]) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{sample.port}") as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for name in ("", SERVICE):
            response = await health.Check(health_pb2.HealthCheckRequest(service=name))
            assert response.status == health_pb2.HealthCheckResponse.SERVING

        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        responses = stub.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")])
        )
        listed = [s.name async for r in responses for s in r.list_services_response.service]
        assert SERVICE in listed
        assert "grpc.health.v1.Health" in listed

        stream = channel.unary_stream(
            f"/{SERVICE}/Count",
            request_serializer=wrappers_pb2.StringValue.SerializeToString,
            response_deserializer=wrappers_pb2.Int64Value.FromString,
        )
        values = [m.value async for m in stream(wrappers_pb2.StringValue(value="4"))]
        assert values == [0, 1, 2, 3]


async def test_concurrent_calls_with_one_request_id_have_one_effect(
    keys: Any, database_url: str
) -> None:
    import sqlalchemy as sa
    from sqlalchemy.ext.asyncio import create_async_engine

    from tenpo.kit.db import KIT_METADATA
    from tests.kit.sample_service import notes, sample_metadata

    engine = create_async_engine(database_url)
    async with engine.begin() as conn:
        await conn.run_sync(sample_metadata.create_all)
        await conn.run_sync(KIT_METADATA.create_all)
    settings = SampleSettings(service_name="sample", database_url=database_url)
    with_db = dataclasses.replace(definition, uses_database=True)
    async with (
        running(with_db, settings) as host,
        grpc.aio.insecure_channel(f"127.0.0.1:{host.port}") as channel,
    ):
        add = call(channel, "AddNote", wrappers_pb2.Int64Value)

        def note(text: str, request_id: str) -> struct_pb2.Struct:
            message = struct_pb2.Struct()
            message.update({"text": text, "request_id": request_id})
            return message

        results = await asyncio.gather(*(add(note("buy milk", "req-1")) for _ in range(20)))
        assert len({r.value for r in results}) == 1

        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await add(note("buy bread", "req-1"))
        assert decode_error(caught.value).reason == "REQUEST_ID_REUSED"

        other = await add(note("buy bread", "req-2"))
        assert other.value != results[0].value
    async with engine.connect() as conn:
        texts = (await conn.execute(sa.select(notes.c.text).order_by(notes.c.id))).scalars().all()
    await engine.dispose()
    assert texts == ["buy milk", "buy bread"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_sigterm_drains_in_flight_calls(tmp_path: Path) -> None:
    port = _free_port()
    env = {
        **os.environ,
        "SAMPLE_GRPC_PORT": str(port),
        "SAMPLE_SHUTDOWN_DELAY_SECONDS": "1.0",
        "SAMPLE_SHUTDOWN_GRACE_SECONDS": "10",
        "SAMPLE_MIGRATE_ON_START": "false",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.kit.sample_service"],
        env=env,
        cwd=Path(__file__).resolve().parents[2],
        stdout=subprocess.DEVNULL,
        stderr=open(tmp_path / "stderr.log", "wb"),  # noqa: SIM115
    )
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            health = health_pb2_grpc.HealthStub(channel)
            await health.Check(health_pb2.HealthCheckRequest(), wait_for_ready=True, timeout=30)
            slow = call(channel, "Slow", wrappers_pb2.DoubleValue)
            in_flight = asyncio.ensure_future(slow(wrappers_pb2.DoubleValue(value=2.0)))
            await asyncio.sleep(0.3)
            process.send_signal(signal.SIGTERM)
            await asyncio.sleep(0.3)
            status = await health.Check(health_pb2.HealthCheckRequest(), timeout=2)
            assert status.status == health_pb2.HealthCheckResponse.NOT_SERVING
            result = await in_flight
            assert result.value == 2.0
        assert await asyncio.to_thread(process.wait, 15) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


async def test_several_workers_share_one_port_and_stop_together() -> None:
    port = _free_port()
    env = {
        **os.environ,
        "SAMPLE_GRPC_PORT": str(port),
        "SAMPLE_WORKERS": "2",
        "SAMPLE_MIGRATE_ON_START": "false",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.kit.sample_service"],
        env=env,
        cwd=Path(__file__).resolve().parents[2],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        # Its own process group: a failed run takes the workers down with the parent.
        start_new_session=True,
    )
    try:
        pids: set[int] = set()
        # The kernel spreads new connections over the listeners once both listen; on a busy
        # machine the second worker may start well after the first answers.
        deadline = asyncio.get_running_loop().time() + 120
        while asyncio.get_running_loop().time() < deadline:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                # Generous: on a loaded two-core machine starting two workers takes a while.
                await health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(), wait_for_ready=True, timeout=120
                )
                pid = await call(channel, "Pid", wrappers_pb2.Int64Value)(empty_pb2.Empty())
                pids.add(pid.value)
            if len(pids) == 2:
                break
            await asyncio.sleep(0.1)
        assert len(pids) == 2
        assert process.pid not in pids  # workers serve, the parent supervises
        process.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(process.wait, 60) == 0
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)  # workers included; none is left behind
        process.wait()


async def test_a_service_serves_while_nats_is_down_and_drains_the_outbox_when_it_returns(
    database_url: str, nats_factory: Any
) -> None:
    import sqlalchemy as sa
    from sqlalchemy.ext.asyncio import create_async_engine

    from tenpo.kit.db import KIT_METADATA, outbox_table
    from tenpo.kit.events import EventBus, stream_name
    from tests.kit.sample_service import sample_metadata
    from tests.kit.test_events import eventually

    engine = create_async_engine(database_url)
    async with engine.begin() as conn:
        await conn.run_sync(sample_metadata.create_all)
        await conn.run_sync(KIT_METADATA.create_all)

    async def pending() -> int:
        async with engine.connect() as conn:
            found = await conn.scalar(
                sa.select(sa.func.count())
                .select_from(outbox_table)
                .where(outbox_table.c.published_at.is_(None))
            )
        return int(found or 0)

    broker = nats_factory()
    broker.stop()  # its port stays ours, with nothing listening
    settings = SampleSettings(service_name="sample", database_url=database_url, nats_url=broker.url)
    with_events = dataclasses.replace(definition, uses_database=True, uses_events=True)
    host = ServiceHost(with_events, settings)
    try:
        # Bounded only so that a regression fails instead of hanging the suite.
        async with asyncio.timeout(60):
            await host.start()
        async with grpc.aio.insecure_channel(f"127.0.0.1:{host.port}") as channel:
            health = health_pb2_grpc.HealthStub(channel)
            status = await health.Check(health_pb2.HealthCheckRequest(service=SERVICE))
            assert status.status == health_pb2.HealthCheckResponse.SERVING
            announce = call(channel, "Announce", empty_pb2.Empty)
            for text in ("while-down-1", "while-down-2"):
                await announce(wrappers_pb2.StringValue(value=text))
            assert await pending() == 2  # kept by the outbox
            broker.start()

            async def drained() -> bool:
                return await pending() == 0

            await eventually(drained, timeout=60)
        bus = EventBus(broker.url)
        await bus.connect()
        info = await bus.js.stream_info(stream_name("sample"))
        await bus.close()
        assert info.state.messages == 2
    finally:
        await host.stop()
        await engine.dispose()


async def test_connections_that_never_finish_the_handshake_or_sit_idle_are_closed(
    keys: Any,
) -> None:
    # Found from outside: 400 raw connections to the gateway's gRPC ingress (no HTTP/2
    # preface, or a preface and nothing after) stayed open; grpcio's defaults are a 120 s
    # handshake and no idle limit at all. Devices reconnect transparently when closed.
    settings = SampleSettings(
        service_name="sample",
        auth_jwks_file=keys.jwks_path,
        auth_issuer=ISSUER,
        auth_audience="tenpo",
        grpc_handshake_timeout_seconds=0.5,
        grpc_max_connection_idle_seconds=0.5,
    )
    async with running(definition, settings) as host:
        silent = await asyncio.open_connection("127.0.0.1", host.port)
        idle = await asyncio.open_connection("127.0.0.1", host.port)
        # The client preface and an empty SETTINGS frame: a connection with no call on it.
        idle[1].write(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0]))
        await idle[1].drain()
        for reader, writer in (silent, idle):
            # read() returns at EOF, when the server has closed the connection; the wait
            # only bounds a failing test.
            await asyncio.wait_for(reader.read(), 30)
            assert reader.at_eof()
            writer.close()
        async with grpc.aio.insecure_channel(f"127.0.0.1:{host.port}") as channel:
            health = health_pb2_grpc.HealthStub(channel)
            assert (await health.Check(health_pb2.HealthCheckRequest())).status == 1


async def test_stop_ends_a_background_loop_that_swallows_a_cancellation(keys: Any) -> None:
    """Python 3.11's ``asyncio.wait_for`` can lose a cancellation; a loop that then goes
    round again must still end with the service, not keep running in the event loop."""
    rounds = 0

    async def stubborn() -> None:
        nonlocal rounds
        swallowed = False
        while True:
            rounds += 1
            try:
                await asyncio.sleep(0.01)
            except asyncio.CancelledError:
                if swallowed:
                    raise
                swallowed = True  # what the lost cancellation looks like to the loop

    async def build(runtime: Any) -> None:
        await definition.build(runtime)
        runtime.background.append(stubborn)

    settings = SampleSettings(
        service_name="sample",
        auth_jwks_file=keys.jwks_path,
        auth_issuer=ISSUER,
        auth_audience="tenpo",
    )
    async with running(dataclasses.replace(definition, build=build), settings) as host:
        await asyncio.sleep(0.1)
        tasks = list(host._tasks)
    assert all(task.done() for task in tasks)
    after_stop = rounds
    await asyncio.sleep(0.1)
    assert rounds == after_stop


async def test_connections_beyond_grpc_max_connections_are_closed(keys: Any) -> None:
    """Found from outside: HTTP/2 connections that finish their handshake and then stay
    silent are kept for the whole idle time (5 min), so one client opening them in a loop
    could hold thousands (3,000 in a second against the gateway's ingress) until the
    process ran out of file handles, its HTTP side included. Beyond ``grpc_max_connections``
    a new connection is now closed at once, and a place frees when one closes."""
    settings = SampleSettings(
        service_name="sample",
        auth_jwks_file=keys.jwks_path,
        auth_issuer=ISSUER,
        auth_audience="tenpo",
        grpc_max_connections=2,
    )
    preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])
    async with running(definition, settings) as host:
        held = []
        for _ in range(2):
            reader, writer = await asyncio.open_connection("127.0.0.1", host.port)
            writer.write(preface)
            await writer.drain()
            # The server's SETTINGS frame: this connection was taken.
            assert await asyncio.wait_for(reader.read(9), 30)
            held.append((reader, writer))
        reader, writer = await asyncio.open_connection("127.0.0.1", host.port)
        writer.write(preface)
        await writer.drain()
        # read() returns at EOF, when the server has closed the connection; the wait only
        # bounds a failing test.
        assert await asyncio.wait_for(reader.read(), 30) == b""
        writer.close()
        for _, held_writer in held:
            assert not held_writer.is_closing()
        held[0][1].close()

        async def serves() -> bool:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{host.port}") as channel:
                try:
                    health = health_pb2_grpc.HealthStub(channel)
                    answer = await health.Check(health_pb2.HealthCheckRequest(), timeout=5)
                except grpc.aio.AioRpcError:
                    return False
                return answer.status == health_pb2.HealthCheckResponse.SERVING

        from tests.kit.test_events import eventually

        await eventually(serves, timeout=60)
        held[1][1].close()
