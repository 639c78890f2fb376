"""A detached socket's text frames are cut from the byte stream by `FrameSplitter` and
handed to the sink without websockets' parser; every other frame still reaches
websockets whole, which answers, reassembles and closes exactly as before.

The protocol runs here on a fake transport: the bytes a client sends go to
`data_received`, what the server writes is read back with websockets' own parser.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import AsyncIterator, Callable
from typing import Any, cast

import pytest
from uvicorn.config import Config
from uvicorn.server import ServerState
from websockets.frames import Close, CloseCode, Frame, Opcode
from websockets.protocol import Protocol, Side, State

from app.ws.frame_splitter import FrameSplitter
from app.ws.protocol import ChatWebSocketProtocol

MAX_SIZE = 100_000

HANDSHAKE = (
    b"GET /ws HTTP/1.1\r\n"
    b"Host: test\r\n"
    b"Upgrade: websocket\r\n"
    b"Connection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    b"Sec-WebSocket-Version: 13\r\n"
    b"\r\n"
)


def text(payload: str | bytes, *, fin: bool = True, mask: bool = True) -> bytes:
    data = payload.encode() if isinstance(payload, str) else payload
    return Frame(Opcode.TEXT, data, fin=fin).serialize(mask=mask)


def cont(payload: str, *, fin: bool = True) -> bytes:
    return Frame(Opcode.CONT, payload.encode(), fin=fin).serialize(mask=True)


def ping(payload: bytes) -> bytes:
    return Frame(Opcode.PING, payload).serialize(mask=True)


def close(code: int) -> bytes:
    return Frame(Opcode.CLOSE, Close(code, "").serialize()).serialize(mask=True)


class FakeTransport:
    def __init__(self) -> None:
        self.written = bytearray()
        self.closing = False
        self.reading = True

    def write(self, data: bytes) -> None:
        self.written += data

    def close(self) -> None:
        self.closing = True

    def abort(self) -> None:
        self.closing = True

    def is_closing(self) -> bool:
        return self.closing

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def get_write_buffer_size(self) -> int:
        return 0

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        addresses = {"peername": ("127.0.0.1", 50000), "sockname": ("127.0.0.1", 8000)}
        return addresses.get(name, default)


class Sink:
    def __init__(self) -> None:
        self.messages: list[str | bytes] = []
        self.on_each: Callable[[str | bytes], None] | None = None

    def on_message(self, data: str | bytes) -> None:
        self.messages.append(data)
        if self.on_each is not None:
            self.on_each(data)

    def on_end(self) -> None:
        pass


class Socket:
    """A server-side socket past its handshake, its ASGI app waiting to be let go."""

    def __init__(self, max_size: int) -> None:
        self.sink = Sink()
        self.transport = FakeTransport()
        self.accepted = asyncio.Event()
        self.release = asyncio.Event()
        # Every chunk websockets' parser is given after the handshake.
        self.parsed: list[bytes] = []

        async def app(scope: Any, receive: Any, send: Any) -> None:
            await receive()
            await send({"type": "websocket.accept"})
            self.accepted.set()
            await self.release.wait()

        config = Config(
            app=app,
            ws=ChatWebSocketProtocol,
            ws_per_message_deflate=False,
            ws_max_size=max_size,
            ws_ping_interval=None,
            lifespan="off",
            log_config=None,
        )
        config.load()
        self.state = ServerState()
        self.protocol = ChatWebSocketProtocol(config, self.state, {}, asyncio.get_running_loop())
        self.protocol.connection_made(cast(Any, self.transport))

    async def open(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.protocol.data_received(HANDSHAKE)
        await self.accepted.wait()
        receive_data = self.protocol.conn.receive_data

        def spy(data: bytes) -> None:
            self.parsed.append(bytes(data))
            receive_data(data)

        monkeypatch.setattr(self.protocol.conn, "receive_data", spy)

    def send(self, *chunks: bytes) -> None:
        for chunk in chunks:
            self.protocol.data_received(chunk)

    def replies(self) -> list[Frame]:
        """The frames the server wrote after its handshake response."""
        _, _, frames = bytes(self.transport.written).partition(b"\r\n\r\n")
        client = Protocol(Side.CLIENT, state=State.OPEN, max_size=None)
        client.receive_data(frames)
        return [event for event in client.events_received() if isinstance(event, Frame)]

    def close_code(self) -> int | None:
        closes = [frame for frame in self.replies() if frame.opcode is Opcode.CLOSE]
        return Close.parse(closes[0].data).code if closes else None

    async def end(self) -> None:
        self.release.set()
        await asyncio.gather(*self.state.tasks)


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
