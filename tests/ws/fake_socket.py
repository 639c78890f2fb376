"""A server-side WebSocket protocol on a fake transport: the bytes a client sends go to
`data_received`, what the server writes is read back with websockets' own parser."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, cast

import pytest
from uvicorn.config import Config
from uvicorn.server import ServerState
from websockets.frames import Close, Frame, Opcode
from websockets.protocol import Protocol, Side, State

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
        # Each call to `write`, as the socket would see its system calls.
        self.writes: list[bytes] = []
        self.closing = False
        self.reading = True

    def write(self, data: bytes) -> None:
        self.written += data
        self.writes.append(bytes(data))

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
