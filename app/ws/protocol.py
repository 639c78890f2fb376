"""uvicorn's sans-I/O `websockets` protocol, plus what presence and the limits rely on.

uvicorn answers pings and runs the keepalive (a ping every heartbeat, a close with 1011
when one goes unanswered for a heartbeat) inside the protocol, out of the app's sight.
This subclass adds what the app needs from there, and closes gaps of the stock class:

- when the peer was last heard from (any bytes: a frame or a pong), to date the last
  sign of life of a connection that stopped answering (see `app.ws.liveness`);
- a keepalive timeout that actually ends the connection: the stock class closes the
  transport politely, which for a peer with unread data waits for a flush that never
  comes, so the app is never told and the user never goes offline;
- a lingering socket (its close frame stuck behind data the peer does not read) is cut
  once the app is done with it and the close timeout has passed;
- reading on while the app is busy with a frame (up to `ws_max_queue` messages, like
  uvicorn's legacy implementation), so a healthy peer's pongs are not left unread and
  the peer cut off for "not answering";
- a shutdown closes a socket still being set up (its ASGI task not done) with 1001, as
  the app's drain closes those already set up, not with uvicorn's 1012;
- a handshake the parser refuses (e.g. a header line over the limit) gets its 4xx answer
  instead of hanging until the client gives up;
- `send_text_now`: a frame written to the transport at once, without the ASGI round
  (the app's `send` coroutine, its message dict, Starlette's checks) and, for a push to
  many sockets, with the frame encoded once for all of them (`text_frame`);
- `detach`: once a socket is set up, the app hands it a `FrameSink` and returns. Frames
  then go to the sink as they arrive, and the socket stays open with no ASGI task behind
  it: an idle socket is this object, its transport and the app's few small objects, not a
  chain of twenty-odd suspended coroutines through the middleware (see
  `docs/performance.md`, "idle");
- once detached, a text message in one frame is cut from the byte stream and handed to
  the sink here (`FrameSplitter`), without websockets' parser; every other frame still
  goes, whole, through the stock path.

It is passed to uvicorn as `Config(ws=ChatWebSocketProtocol)`.
"""

from __future__ import annotations

import asyncio
import struct
import time
from typing import Any, Protocol, cast

import structlog
from starlette.websockets import WebSocket
from uvicorn.config import Config
from uvicorn.protocols.utils import ClientDisconnected
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from uvicorn.server import ServerState
from websockets.frames import CloseCode
from websockets.protocol import State

from app.ws.flag import Flag
from app.ws.frame_splitter import FrameSplitter, between_frames, text_payload

log = structlog.get_logger(__name__)

# A socket closed because the server shuts down: the client reconnects and syncs.
CLOSE_GOING_AWAY = 1001
GOING_AWAY = "server shutting down"

# After the app has finished and the close timeout has run out, this much longer for the
# transport to flush before it is cut.
LINGER_GRACE_S = 2.0


class FrameSink(Protocol):
    """Where a detached socket's messages go, in the order they arrive."""

    def on_message(self, data: str | bytes) -> None: ...

    def on_end(self) -> None:
        """The connection is gone (either side closed it, or it was lost); called once."""


class _NoQueue:
    """Stands in for the ASGI receive queue of a detached socket, which nobody reads
    (and which, as an `asyncio.Queue`, held four deques)."""

    __slots__ = ()

    def put_nowait(self, item: Any) -> None:
        pass

    def empty(self) -> bool:
        return True

    def qsize(self) -> int:
        return 0


class ChatWebSocketProtocol(WebSocketsSansIOProtocol):
    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.writable = Flag(True)
        # Monotonic time the peer was last heard from: bytes of a frame, a pong, anything.
        self.last_heard_at = time.monotonic()
        # Set when this side ended the connection because a ping went unanswered.
        self.timed_out = False
        # Messages read ahead of the app (queued, or in the sink's backlog) before reading pauses.
        self.read_ahead = max(1, config.ws_max_queue)
        self._sink: FrameSink | None = None
        # Reading held back by the sink (its own backlog is full), as opposed to the
        # ASGI queue's `read_paused`.
        self._held = False
        # Detached, and the splitter not yet started (see `_start_splitting`).
        self._may_split = False
        self._splitter: FrameSplitter | None = None

    @property
    def answering(self) -> bool:
        """No ping is waiting for its pong, and none went unanswered."""
        return self.pending_ping_payload is None and not self.timed_out

    def send_text_now(self, text: str, wire: bytes | None = None) -> bool:
        """Write a text frame now if the socket is open and takes data without waiting
        (its buffer under the high-water mark); False, writing nothing, otherwise.
        `wire` is the frame already encoded (`text_frame`), shared by every recipient."""
        if (
            not self.handshake_complete
            or self.close_sent
            or self.disconnected
            or self.initial_response is not None
            or self.conn.state is not State.OPEN
            or not self.writable.is_set()
            or self.transport.is_closing()
        ):
            return False
        # A whole, unfragmented frame: the protocol object keeps no count of them, so
        # writing the bytes itself leaves it consistent.
        self.transport.write(wire if wire is not None else text_frame(text.encode()))
        return True

    async def send_text(self, text: str) -> None:
        """Write a text frame once the socket takes data; ConnectionError if it is gone."""
        await self.writable.wait()
        if self.disconnected or self.close_sent or self.transport.is_closing():
            raise ConnectionError("the socket is closed")
        self.transport.write(text_frame(text.encode()))

    def send_close(self, code: int, reason: str) -> None:
        """Start the closing handshake (as uvicorn does for the ASGI `websocket.close`):
        the close frame now, the transport closed on the peer's reply or at the timeout."""
        if self.close_sent or self.disconnected or self.transport.is_closing():
            return
        self.conn.send_close(code, reason)
        self.transport.write(b"".join(self.conn.data_to_send()))
        self.close_sent = True
        self.queue.put_nowait({"type": "websocket.disconnect", "code": code, "reason": reason})
        # Read on, whatever held reading back: the peer's close reply has to get through.
        paused = self.read_paused or self._held
        self.read_paused = self._held = False
        if paused:
            self.transport.resume_reading()
        self.close_timer = self.loop.call_later(self.close_timeout, self.transport.close)
        if self._sink is not None:
            # No app task ends for a detached socket (see `on_task_complete`): a close
            # stuck behind data the peer does not read is cut from here.
            self.loop.call_later(self.close_timeout + LINGER_GRACE_S, self._abort_if_lingering)

    def detach(self, sink: FrameSink) -> None:
        """From now on messages go to `sink`, and the socket outlives the ASGI app.

        Messages that arrived while the app was setting up are handed over first, in
        order; a connection that ended meanwhile is then reported ended.
        """
        pending: list[str | bytes] = []
        while not self.queue.empty():
            message = self.queue.get_nowait()
            if message["type"] == "websocket.receive":
                text = message.get("text")
                pending.append(text if text is not None else message.get("bytes") or b"")
        self._sink = sink
        self.queue = cast("asyncio.Queue[Any]", _NoQueue())
        # What only the handshake and the ASGI app needed.
        self.scope = {}  # type: ignore[typeddict-item]
        self.request = self.response = None  # type: ignore[assignment]
        self._may_split = True
        self._start_splitting()
        self._resume()
        for data in pending:
            sink.on_message(data)
        if self.disconnected:
            sink.on_end()

    def hold_reading(self) -> None:
        """The sink has enough waiting: stop reading until `release_reading`."""
        if not self._held and not self.disconnected:
            self._held = True
            self.transport.pause_reading()

    def release_reading(self) -> None:
        if self._held:
            self._held = False
            if not self.disconnected:
                self.transport.resume_reading()

    def _resume(self) -> None:
        if self.read_paused:
            self.read_paused = False
            if not self._held and not self.disconnected:
                self.transport.resume_reading()

    async def run_asgi(self) -> None:
        # As uvicorn's, except that a detached socket is left open when the app returns.
        try:
            result = await self.app(self.scope, self.receive, self.send)
        except ClientDisconnected:
            pass
        except BaseException:
            self.logger.exception("Exception in ASGI application\n")
            self.send_500_response()
        else:
            if not self.handshake_complete:
                self.logger.error("ASGI callable returned without completing handshake.")
                self.send_500_response()
            elif result is not None:
                self.logger.error("ASGI callable should return None, but returned '%s'.", result)
        if self._sink is None and self.close_timer is None:
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        self.last_heard_at = time.monotonic()
        if self._splitter is not None:
            self._split_received(self._splitter, data)
            return
        self._parse_received(data)
        if self._may_split:
            self._start_splitting()

    def _parse_received(self, data: bytes) -> None:
        """The stock path: websockets parses `data`, uvicorn handles the events."""
        super().data_received(data)
        if not self.handshake_initiated and self.conn.handshake_exc is not None:
            # The request could not be parsed: websockets has prepared the refusal (431
            # for a header line over the limit) but uvicorn only writes it for a request
            # that parsed. Send it and close.
            self.transport.write(b"".join(self.conn.data_to_send()))
            self.transport.close()

    def _split_received(self, splitter: FrameSplitter, data: bytes) -> None:
        conn = self.conn
        frames = splitter.split(data)
        for index, frame in enumerate(frames):
            if conn.state is not State.OPEN or self.close_sent:
                # Closing (the last frame, the sink, a timer): what follows is
                # websockets' to discard or answer, as it always was.
                self._stop_splitting(frames[index:])
                return
            # A frame in the middle of a fragmented message belongs to websockets'
            # reassembly, whatever its opcode (a text frame there is an error it reports).
            payload = text_payload(frame) if conn.current_size is None else None
            if payload is None:
                self._parse_received(frame)
            else:
                self._text_received(payload)
        if splitter.refused or conn.state is not State.OPEN or self.close_sent:
            self._stop_splitting([])

    def _start_splitting(self) -> None:
        """Split frames here from now on, if websockets is between two frames: it must
        never be handed the second half of a frame whose start it did not see."""
        conn = self.conn
        if conn.state is not State.OPEN or self.close_sent or conn.extensions:
            # Nothing left to speed up (or a compressed frame's bits to interpret).
            self._may_split = False
        elif conn.current_size is None and between_frames(conn):
            self._may_split = False
            limit, fragment_limit = conn.max_message_size, conn.max_fragment_size
            if fragment_limit is not None and (limit is None or fragment_limit < limit):
                limit = fragment_limit
            self._splitter = FrameSplitter(limit)

    def _stop_splitting(self, frames: list[bytes]) -> None:
        """For good: `frames`, then any bytes held back, go to websockets."""
        assert self._splitter is not None
        rest = b"".join(frames) + self._splitter.take_rest()
        self._splitter = None
        if rest:
            self._parse_received(rest)

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        # The counterpart of websockets' "connection open", as the legacy implementation
        # logged it: the end of every socket, authenticated or not, shows in the log.
        self.logger.info("connection closed")
        if self._sink is not None:
            self._sink.on_end()

    def track(self, task: asyncio.Task[Any]) -> None:
        """Count `task` among the server's, so a graceful shutdown waits for it (as it
        waits for the ASGI tasks) before the app's lifespan ends."""
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def shutdown(self) -> None:
        # The server is going down. uvicorn closes with 1012 ("service restart"), but the
        # contract says 1001 for every socket closed by a shutdown, and the app's own drain
        # (`app.server`) reaches only the sockets already set up: a socket still in its
        # ASGI task (waiting for its `auth` frame, its registration) is closed here.
        if self.handshake_complete and not self.close_sent and self.conn.state is State.OPEN:
            self.stop_keepalive()
            self.queue.put_nowait(
                {"type": "websocket.disconnect", "code": CLOSE_GOING_AWAY, "reason": GOING_AWAY}
            )
            self.conn.send_close(CLOSE_GOING_AWAY, GOING_AWAY)
            self.transport.write(b"".join(self.conn.data_to_send()))
            self.close_sent = True
            self.transport.close()
            return
        super().shutdown()

    def keepalive_timeout(self) -> None:
        if not (self.close_sent or self.transport.is_closing()):
            self.timed_out = True
            backlog = self.transport.get_write_buffer_size()
            log.info("ws_keepalive_timeout", client=self.client, write_backlog=backlog)
        super().keepalive_timeout()
        if not self.disconnected and self.transport.get_write_buffer_size():
            # The 1011 close sits behind data the peer has not taken, and close() waits
            # to flush it: for a peer that stopped answering, forever. Cut it now.
            self.transport.abort()

    def on_task_complete(self, task: asyncio.Task[None]) -> None:
        super().on_task_complete(task)
        # The app is done; uvicorn closes the transport now or at the close timeout, and
        # a close waits for unsent data to flush. A peer that does not read is cut off.
        # (A detached socket lives on: its session closes it.)
        if self._sink is None and not self.disconnected:
            delay = self.close_timeout + LINGER_GRACE_S
            self.loop.call_later(delay, self._abort_if_lingering)

    def _abort_if_lingering(self) -> None:
        if not self.disconnected:
            self.transport.abort()

    def send_receive_event_to_app(self) -> None:
        # As uvicorn's, except that reading pauses only once `ws_max_queue` messages wait
        # for the app, not after each one (see the module docstring).
        data = self.frames[0] if len(self.frames) == 1 else b"".join(self.frames)
        self.frames = []
        if self.curr_msg_data_type == "text":
            self._text_received(data)
        elif not self.close_sent:
            self._message_received(data)

    def _text_received(self, data: bytes) -> None:
        """A whole text message, from websockets or from the splitter."""
        if self.close_sent:
            # The app is past `websocket.close`: drop the message, keep reading until the
            # peer's close reply arrives.
            return
        try:
            text = data.decode()
        except UnicodeDecodeError:
            # The client's fault, not the server's: no error-level log.
            self.logger.info("Invalid UTF-8 sequence received from client.")
            self.conn.send_close(CloseCode.INVALID_DATA)
            self.handle_parser_exception()
            return
        self._message_received(text)

    def _message_received(self, message: str | bytes) -> None:
        if self._sink is not None:
            self._sink.on_message(message)
            return
        if isinstance(message, str):
            self.queue.put_nowait({"type": "websocket.receive", "text": message})
        else:
            self.queue.put_nowait({"type": "websocket.receive", "bytes": message})
        if not self.read_paused and self.queue.qsize() >= self.read_ahead:
            self.read_paused = True
            self.transport.pause_reading()


def protocol_of(websocket: WebSocket) -> ChatWebSocketProtocol:
    """The protocol serving a socket. The service serves WebSockets only through it
    (`app.cli`): the connection, liveness and detaching all need it."""
    # Starlette keeps the ASGI `receive` as given: uvicorn's bound `protocol.receive`.
    # (`_send` is Starlette's own wrapper, which leads nowhere.)
    protocol = getattr(getattr(websocket, "_receive", None), "__self__", None)
    if not isinstance(protocol, ChatWebSocketProtocol):
        raise RuntimeError("WebSockets must be served with ChatWebSocketProtocol")
    return protocol


def text_frame(payload: bytes) -> bytes:
    """A server's text frame on the wire (RFC 6455, section 5.2): FIN and the text
    opcode, the payload length, no mask (only clients mask), no extension."""
    size = len(payload)
    if size < 126:
        header = struct.pack("!BB", 0x81, size)
    elif size < 1 << 16:
        header = struct.pack("!BBH", 0x81, 126, size)
    else:
        header = struct.pack("!BBQ", 0x81, 127, size)
    return header + payload
