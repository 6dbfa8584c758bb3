"""HTTP connection limits against the real server (uvicorn + httptools) on loopback: idle
and header timeouts, the header size limit, the per-address and global caps. Small caps and
short timeouts are configured here so every flood stays a few connections; each wait has
an upper bound and asserts what happened, not how long it took."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from services.gateway.connections import ConnectionLimits, ConnectionTracker, file_handle_budget
from tests.services.gateway.conftest import WEB_KEY, GatewayFactory, RunningGateway

FAST = {
    "http_idle_timeout_seconds": 0.5,
    "http_header_timeout_seconds": 0.5,
    "http_body_timeout_seconds": 0.5,
    "access_log": False,
}
#: Connections that must stay open while a cap is tested.
HELD = FAST | {"http_idle_timeout_seconds": 60.0}
#: Upper bound for the server to act; the timeouts above are far shorter.
PATIENCE = 15.0
Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]


async def _connect(gw: RunningGateway, source: str = "127.0.0.1") -> Connection:
    return await asyncio.open_connection("127.0.0.1", gw.gateway.http_port, local_addr=(source, 0))


async def _answer(reader: asyncio.StreamReader) -> bytes:
    """Everything the server sends until it closes the connection (bounded)."""
    chunks: list[bytes] = []
    with contextlib.suppress(ConnectionError):
        while True:
            chunk = await asyncio.wait_for(reader.read(65536), PATIENCE)
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks)


async def _healthz(gw: RunningGateway, source: str = "127.0.0.1") -> bytes:
    reader, writer = await _connect(gw, source)
    writer.write(b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
    await writer.drain()
    try:
        return await _answer(reader)
    finally:
        writer.close()


@contextlib.asynccontextmanager
async def _open(
    gw: RunningGateway, count: int, source: str = "127.0.0.1"
) -> AsyncIterator[list[Connection]]:
    connections = [await _connect(gw, source) for _ in range(count)]
    try:
        yield connections
    finally:
        for _, writer in connections:
            writer.close()


async def test_idle_connections_are_closed(start_gateway: GatewayFactory) -> None:
    async with start_gateway(**FAST) as gw, _open(gw, 20) as idle:
        # Never a byte: closed without an answer.
        answers = await asyncio.gather(*(_answer(reader) for reader, _ in idle))
        assert answers == [b""] * 20
        # Between keep-alive requests, also when bare CRLFs (no request) keep arriving.
        reader, writer = await _connect(gw)
        writer.write(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        first = await asyncio.wait_for(reader.readuntil(b"SERVING"), PATIENCE)
        assert first.startswith(b"HTTP/1.1 200")
        for _ in range(10):
            writer.write(b"\r\n")
            await asyncio.sleep(0.1)
        rest = await _answer(reader)
        writer.close()
        assert b"HTTP/1.1" not in rest
        assert gw.gateway.connections is not None
        assert gw.gateway.connections.total <= 1  # only what the last check left open


async def test_dribbled_headers_time_out(start_gateway: GatewayFactory) -> None:
    async with start_gateway(**FAST) as gw:
        reader, writer = await _connect(gw)
        writer.write(b"GET /healthz HTTP/1.1\r\nhost: x\r\n")

        async def dribble() -> None:
            with contextlib.suppress(ConnectionError):
                for i in range(200):  # bounded: at most 20 s
                    writer.write(b"x-slow-%d: y\r\n" % i)
                    await writer.drain()
                    await asyncio.sleep(0.1)

        dribbling = asyncio.create_task(dribble())
        answer = await _answer(reader)
        dribbling.cancel()
        writer.close()
        tracker = gw.gateway.connections
    assert answer.startswith(b"HTTP/1.1 408")
    assert tracker is not None
    assert tracker.timed_out >= 1


async def test_slow_body_times_out(start_gateway: GatewayFactory) -> None:
    head = (
        b"POST /v1/products:search HTTP/1.1\r\nhost: x\r\ncontent-length: 1000\r\n"
        b"content-type: application/json\r\n"
    )
    async with start_gateway(**FAST, targets={"catalog": "127.0.0.1:9"}) as gw:
        reader, writer = await _connect(gw)
        writer.write(head + b"x-api-key: " + WEB_KEY.encode() + b"\r\n\r\n{")
        waiting = await _answer(reader)  # the rest of the body never comes
        writer.close()
        # Refused before its body was read (no key): that answer stands, then the
        # connection still goes, with nothing more written.
        reader, writer = await _connect(gw)
        writer.write(head + b"\r\n{")
        refused = await _answer(reader)
        writer.close()
    assert waiting.startswith(b"HTTP/1.1 408")
    assert refused.startswith(b"HTTP/1.1 401")
    assert refused.count(b"HTTP/1.1") == 1


async def test_headers_beyond_the_limit_are_431(start_gateway: GatewayFactory) -> None:
    async with start_gateway(**FAST, http_max_header_bytes=8192) as gw:
        small = b"x-pad: " + b"a" * 4000 + b"\r\n"
        reader, writer = await _connect(gw)
        writer.write(b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n" + small + b"\r\n")
        within = await _answer(reader)
        writer.close()
        # Too big, but all in one write (the server may read it all at once).
        reader, writer = await _connect(gw)
        writer.write(b"GET /healthz HTTP/1.1\r\nhost: x\r\n" + small * 3 + b"\r\n")
        at_once = await _answer(reader)
        writer.close()
        # One huge header, sent in pieces (up to 4 MiB; the server stops reading early).
        reader, writer = await _connect(gw)

        async def send_huge() -> None:
            with contextlib.suppress(ConnectionError):
                writer.write(b"GET /healthz HTTP/1.1\r\nhost: x\r\nx-huge: ")
                for _ in range(64):
                    writer.write(b"a" * 65536)
                    await writer.drain()

        sending = asyncio.create_task(send_huge())
        beyond = await _answer(reader)
        await sending
        writer.close()
    assert within.startswith(b"HTTP/1.1 200")
    assert at_once.startswith(b"HTTP/1.1 431")
    # The 431 may be lost to a reset when the server closes with unread bytes; either way
    # the connection was cut and nothing else was answered.
    assert beyond == b"" or beyond.startswith(b"HTTP/1.1 431")


async def test_one_address_cannot_take_every_connection(start_gateway: GatewayFactory) -> None:
    async with (
        start_gateway(**HELD, http_max_connections_per_address=5) as gw,
        _open(gw, 5) as held,
    ):
        await asyncio.sleep(0.2)  # let the server accept them
        refused = await _healthz(gw)
        other = await _healthz(gw, "127.0.0.2")  # another client is still served
        for _, writer in held[:2]:
            writer.close()
        await asyncio.sleep(0.2)
        again = await _healthz(gw)  # room again once some closed
        tracker = gw.gateway.connections
    assert refused.startswith(b"HTTP/1.1 503") or refused == b""
    assert b"SERVING" not in refused
    assert other.startswith(b"HTTP/1.1 200")
    assert again.startswith(b"HTTP/1.1 200")
    assert tracker is not None
    assert tracker.refused >= 1


async def test_the_global_cap_holds_across_addresses(start_gateway: GatewayFactory) -> None:
    async with start_gateway(
        **HELD,
        http_max_connections=6,
        http_max_connections_per_address=0,
    ) as gw:
        async with (
            _open(gw, 3, "127.0.0.3"),
            _open(gw, 3, "127.0.0.4"),
        ):
            await asyncio.sleep(0.2)
            refused = await _healthz(gw, "127.0.0.5")
        await asyncio.sleep(0.2)
        after = await _healthz(gw, "127.0.0.5")
    assert b"SERVING" not in refused
    assert after.startswith(b"HTTP/1.1 200")


def test_the_cap_never_exceeds_the_file_handle_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    import resource

    monkeypatch.setattr(resource, "getrlimit", lambda _kind: (1000, 4000))
    assert file_handle_budget(4096) == 1000 - 256
    assert file_handle_budget(100) == 100
    monkeypatch.setattr(resource, "getrlimit", lambda _kind: (100, 100))
    assert file_handle_budget(4096) == 1


def test_tracker_counts_per_address() -> None:
    tracker = ConnectionTracker(
        ConnectionLimits(1, 1, 1, 1024, max_connections=3, max_per_address=2)
    )
    assert [tracker.admit("a") for _ in range(3)] == [True, True, False]
    assert tracker.admit("b")
    assert not tracker.admit("c")  # global cap
    tracker.release("a")
    assert tracker.admit("c")
    assert tracker.by_address == {"a": 1, "b": 1, "c": 1}
    assert tracker.refused == 2


@pytest.mark.parametrize("hops", [0, 1])
def test_no_per_address_cap_behind_proxies(hops: int) -> None:
    from services.gateway.app import connection_limits
    from services.gateway.config import GatewaySettings

    limits = connection_limits(
        GatewaySettings(forwarded_for_hops=hops, http_max_connections_per_address=7)
    )
    assert limits.max_per_address == (7 if hops == 0 else 0)
