"""Frames pushed to a socket within one turn of the event loop leave in one write
(`app.ws.coalesce`), in the order they were pushed, and never after a close."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from websockets.frames import CloseCode, Opcode

from app.ws.protocol import FLUSH_AT_BYTES, text_frame
from tests.ws.fake_socket import MAX_SIZE, Socket, close

# Turns of the loop a test lets pass for the end-of-turn write: one is enough.
TURNS = 5


async def turns() -> None:
    for _ in range(TURNS):
        await asyncio.sleep(0)


@pytest.fixture
async def socket(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Socket]:
    opened = Socket(MAX_SIZE)
    await opened.open(monkeypatch)
    opened.protocol.detach(opened.sink)
    await turns()
    opened.transport.writes.clear()
    yield opened
    await opened.end()


def texts(socket: Socket) -> list[str]:
    return [bytes(f.data).decode() for f in socket.replies() if f.opcode is Opcode.TEXT]


async def test_frames_pushed_in_one_turn_leave_in_one_write_in_order(socket: Socket) -> None:
    for text in ("one", "two", "three"):
        assert socket.protocol.send_text_now(text)
    assert socket.transport.writes == []
    await turns()
    assert socket.transport.writes == [
        text_frame(b"one") + text_frame(b"two") + text_frame(b"three")
    ]
    assert texts(socket) == ["one", "two", "three"]


async def test_frames_pushed_in_later_turns_leave_in_later_writes(socket: Socket) -> None:
    socket.protocol.send_text_now("one")
    await turns()
    socket.protocol.send_text_now("two")
    await turns()
    assert socket.transport.writes == [text_frame(b"one"), text_frame(b"two")]


async def test_every_socket_pushed_to_in_a_turn_gets_its_own_write(
    socket: Socket, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = Socket(MAX_SIZE)
    await other.open(monkeypatch)
    other.protocol.detach(other.sink)
    await turns()
    other.transport.writes.clear()
    wire = text_frame(b"to all")
    for target in (socket, other, socket, other):
        target.protocol.send_text_now("to all", wire)
    await turns()
    assert socket.transport.writes == [wire + wire]
    assert other.transport.writes == [wire + wire]
    await other.end()


async def test_a_burst_past_the_flush_size_is_written_without_waiting_for_the_turn(
    socket: Socket,
) -> None:
    chunk = "x" * 1000
    count = FLUSH_AT_BYTES // len(text_frame(chunk.encode())) + 1
    for _ in range(count):
        socket.protocol.send_text_now(chunk)
    assert len(socket.transport.writes) == 1
    assert socket.transport.writes[0] == text_frame(chunk.encode()) * count


async def test_a_close_goes_after_the_frames_pushed_before_it(socket: Socket) -> None:
    socket.protocol.send_text_now("last words")
    socket.protocol.send_close(1000, "bye")
    await turns()
    opcodes = [f.opcode for f in socket.replies()]
    assert opcodes == [Opcode.TEXT, Opcode.CLOSE]
    assert texts(socket) == ["last words"]


async def test_frames_pending_when_the_peer_closes_are_not_written_after_its_close(
    socket: Socket,
) -> None:
    socket.protocol.send_text_now("too late")
    socket.send(close(CloseCode.NORMAL_CLOSURE))
    await turns()
    opcodes = [f.opcode for f in socket.replies()]
    assert opcodes == [Opcode.CLOSE]
