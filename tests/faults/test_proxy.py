"""The fault proxy itself, against a local echo server: each mode does what the fault
tests rely on."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import pytest

from tests.faults.proxy import FaultProxy, via

TIMEOUT_S = 3.0


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    writer.close()


@pytest.fixture
async def proxy() -> AsyncIterator[FaultProxy]:
    server = await asyncio.start_server(_echo, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    proxied = FaultProxy("127.0.0.1", port, name="echo").start()
    try:
        yield proxied
    finally:
        proxied.close()
        server.close()
        await server.wait_closed()


async def _open(proxy: FaultProxy) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.wait_for(asyncio.open_connection(*proxy.address), TIMEOUT_S)


async def _round_trip(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> float:
    started = time.monotonic()
    writer.write(b"ping")
    await writer.drain()
    assert await asyncio.wait_for(reader.readexactly(4), TIMEOUT_S) == b"ping"
    return time.monotonic() - started


async def test_pass_relays_both_ways(proxy: FaultProxy) -> None:
    reader, writer = await _open(proxy)
    assert await _round_trip(reader, writer) < 0.5
    writer.close()


async def test_delay_holds_each_chunk_back_in_both_directions(proxy: FaultProxy) -> None:
    reader, writer = await _open(proxy)
    proxy.delay(150)
    took = await _round_trip(reader, writer)
    assert 0.3 <= took < 1.5, took  # 150 ms out, 150 ms back
    proxy.pass_through()
    assert await _round_trip(reader, writer) < 0.3
    writer.close()


async def test_blackhole_holds_sockets_open_and_forwards_nothing(proxy: FaultProxy) -> None:
    reader, writer = await _open(proxy)
    proxy.blackhole()
    writer.write(b"lost")
    await writer.drain()
    late_reader, late_writer = await _open(proxy)  # new connections are accepted, and held
    late_writer.write(b"lost too")
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(reader.read(1), 0.5)
    assert not reader.at_eof()
    assert proxy.stats.bytes_dropped > 0
    # Bytes were lost: once the mode changes, those streams are cut, not resumed corrupt.
    proxy.pass_through()
    for stale in (reader, late_reader):
        with contextlib.suppress(ConnectionResetError):
            assert await asyncio.wait_for(stale.read(1), TIMEOUT_S) == b""
    fresh_reader, fresh_writer = await _open(proxy)
    assert await _round_trip(fresh_reader, fresh_writer) < 0.5
    for w in (writer, late_writer, fresh_writer):
        w.close()


async def test_reset_cuts_connections_and_refuses_new_ones(proxy: FaultProxy) -> None:
    reader, writer = await _open(proxy)
    proxy.reset()
    with pytest.raises(ConnectionResetError):
        await asyncio.wait_for(reader.read(1), TIMEOUT_S)
    with pytest.raises(ConnectionRefusedError):
        await _open(proxy)
    proxy.pass_through()  # listening again, on the same port
    fresh_reader, fresh_writer = await _open(proxy)
    assert await _round_trip(fresh_reader, fresh_writer) < 0.5
    for w in (writer, fresh_writer):
        w.close()


def test_via_rewrites_host_and_port_only() -> None:
    url = "postgresql+asyncpg://postgres:pw@db.example:5432/chat?ssl=off"
    assert via(url, 6000) == "postgresql+asyncpg://postgres:pw@127.0.0.1:6000/chat?ssl=off"
    assert via("redis://127.0.0.1:6379/0", 7000) == "redis://127.0.0.1:7000/0"
