"""A detached socket's text frames are cut from the byte stream by `FrameSplitter` and
handed to the sink without websockets' parser; every other frame still reaches
websockets whole, which answers, reassembles and closes exactly as before.

The protocol runs here on a fake transport (`tests.ws.fake_socket`).
"""

from __future__ import annotations

import struct
from collections.abc import AsyncIterator

import pytest
from websockets.frames import CloseCode, Opcode

from app.ws.frame_splitter import FrameSplitter
from tests.ws.fake_socket import MAX_SIZE, Socket, close, cont, ping, text


@pytest.fixture
async def socket(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Socket]:
    """Detached, as a session leaves it."""
    opened = Socket(MAX_SIZE)
    await opened.open(monkeypatch)
    opened.protocol.detach(opened.sink)
    yield opened
    await opened.end()


@pytest.fixture
async def undetached(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Socket]:
    opened = Socket(MAX_SIZE)
    await opened.open(monkeypatch)
    yield opened
    await opened.end()


# ---- the splitter on its own ------------------------------------------------------------


def test_several_frames_in_one_read_come_out_in_order_each_whole() -> None:
    frames = [text("one"), text("two" * 100), ping(b"p"), text("three")]
    assert FrameSplitter(MAX_SIZE).split(b"".join(frames)) == frames


def test_a_partial_frame_is_held_back_until_whole() -> None:
    splitter = FrameSplitter(MAX_SIZE)
    frame = text("x" * 300)
    assert splitter.split(frame[:5]) == []
    assert splitter.split(frame[5:200]) == []
    assert splitter.split(frame[200:]) == [frame]
    assert splitter.take_rest() == b""


def test_only_the_unfinished_frame_is_held_back() -> None:
    splitter = FrameSplitter(MAX_SIZE)
    first, second = text("first"), text("second")
    assert splitter.split(first + second[:4]) == [first]
    assert splitter.take_rest() == second[:4]


def test_a_frame_declaring_more_than_max_size_is_not_held() -> None:
    splitter = FrameSplitter(1000)
    head = text("ok")
    oversized = text("x" * 1001)
    assert splitter.split(head + oversized[:20]) == [head]
    assert splitter.refused
    assert splitter.take_rest() == oversized[:20]


def test_an_unmasked_frame_is_not_held() -> None:
    splitter = FrameSplitter(MAX_SIZE)
    assert splitter.split(text("x" * 50, mask=False)[:2]) == []
    assert splitter.refused


# ---- the protocol with the splitter in front of websockets ------------------------------


async def test_several_text_frames_in_one_read_arrive_in_order(socket: Socket) -> None:
    socket.send(text("one") + text("two") + text("three"))
    assert socket.sink.messages == ["one", "two", "three"]
    assert socket.parsed == []


async def test_a_frame_cut_at_any_byte_arrives_once_and_whole(socket: Socket) -> None:
    stream = text("é" * 100) + text("next")
    for cut in range(1, len(stream)):
        socket.sink.messages.clear()
        socket.send(stream[:cut], stream[cut:])
        assert socket.sink.messages == ["é" * 100, "next"], cut
    assert socket.parsed == []


async def test_a_frame_sent_byte_by_byte_arrives_once(socket: Socket) -> None:
    frame = text("byte by byte")
    socket.send(*(frame[i : i + 1] for i in range(len(frame))))
    assert socket.sink.messages == ["byte by byte"]


@pytest.mark.parametrize("size", [0, 125, 126, 65535, 65536, MAX_SIZE])
async def test_16_and_64_bit_lengths_are_read(socket: Socket, size: int) -> None:
    socket.send(text("a" * size) + text("after"))
    assert socket.sink.messages == ["a" * size, "after"]
    assert socket.parsed == []


async def test_a_ping_between_texts_is_answered_and_the_texts_keep_their_order(
    socket: Socket,
) -> None:
    between = ping(b"hi")
    socket.send(text("before") + between + text("after"))
    assert socket.sink.messages == ["before", "after"]
    assert socket.parsed == [between]
    [pong] = socket.replies()
    assert (pong.opcode, pong.data) == (Opcode.PONG, b"hi")


async def test_a_fragmented_message_arrives_whole(socket: Socket) -> None:
    fragments = [text("hel", fin=False), ping(b"p"), cont("l", fin=False), cont("o")]
    socket.send(b"".join(fragments))
    socket.send(text("then"))
    assert socket.sink.messages == ["hello", "then"]
    assert socket.parsed == fragments


async def test_a_text_frame_inside_a_fragmented_message_closes_with_1002(
    socket: Socket,
) -> None:
    socket.send(text("hel", fin=False), text("intruder"))
    assert socket.sink.messages == []
    assert socket.close_code() == CloseCode.PROTOCOL_ERROR


async def test_invalid_utf8_closes_with_1007(socket: Socket) -> None:
    socket.send(text("fine") + text(b"\xff\xfe") + text("dropped"))
    assert socket.sink.messages == ["fine"]
    assert socket.close_code() == CloseCode.INVALID_DATA
    assert socket.transport.closing


async def test_a_frame_over_max_size_closes_with_1009_on_its_header(socket: Socket) -> None:
    header = struct.pack("!BBQ", 0x81, 0x80 | 127, MAX_SIZE + 1) + b"mask"
    socket.send(header)
    assert socket.close_code() == CloseCode.MESSAGE_TOO_BIG
    assert socket.transport.closing


async def test_an_unmasked_frame_closes_with_1002(socket: Socket) -> None:
    socket.send(text("masked") + text("bare", mask=False))
    assert socket.sink.messages == ["masked"]
    assert socket.close_code() == CloseCode.PROTOCOL_ERROR


async def test_a_frame_with_a_reserved_bit_closes_with_1002(socket: Socket) -> None:
    frame = bytearray(text("rsv"))
    frame[0] |= 0x40
    socket.send(bytes(frame))
    assert socket.sink.messages == []
    assert socket.close_code() == CloseCode.PROTOCOL_ERROR


async def test_a_close_frame_is_echoed_and_what_follows_is_dropped(socket: Socket) -> None:
    socket.send(text("last") + close(CloseCode.NORMAL_CLOSURE) + text("too late"))
    socket.send(text("later still"))
    assert socket.sink.messages == ["last"]
    assert socket.close_code() == CloseCode.NORMAL_CLOSURE
    assert socket.transport.closing


async def test_once_closing_every_byte_goes_to_websockets(socket: Socket) -> None:
    goodbye, partial = close(CloseCode.GOING_AWAY), text("unfinished")[:5]
    socket.send(goodbye + partial)
    assert socket.parsed == [goodbye, partial]


async def test_texts_after_the_sink_closes_the_socket_are_dropped(socket: Socket) -> None:
    def close_on_first(_: str | bytes) -> None:
        socket.protocol.send_close(4000, "enough")

    socket.sink.on_each = close_on_first
    socket.send(text("one") + text("two"))
    socket.send(text("three"))
    assert socket.sink.messages == ["one"]
    assert socket.close_code() == 4000


async def test_a_sink_holding_reading_still_gets_the_rest_of_the_read(socket: Socket) -> None:
    socket.sink.on_each = lambda _: socket.protocol.hold_reading()
    socket.send(text("one") + text("two"))
    assert socket.sink.messages == ["one", "two"]
    assert not socket.transport.reading


async def test_before_detach_frames_go_through_websockets(undetached: Socket) -> None:
    early = text("early")
    undetached.send(early)
    assert undetached.parsed == [early]
    undetached.protocol.detach(undetached.sink)
    assert undetached.sink.messages == ["early"]


async def test_detaching_mid_frame_waits_for_the_frame_to_end(undetached: Socket) -> None:
    frame = text("straddles the detach")
    undetached.send(frame[:7])
    undetached.protocol.detach(undetached.sink)
    undetached.send(frame[7:])
    undetached.send(text("split"))
    assert undetached.sink.messages == ["straddles the detach", "split"]
    assert undetached.parsed == [frame[:7], frame[7:]]
