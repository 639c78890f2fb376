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
- a handshake the parser refuses (e.g. a header line over the limit) gets its 4xx answer
  instead of hanging until the client gives up;
- `send_text_now`: a frame written to the transport at once, without the ASGI round
  (the app's `send` coroutine, its message dict, Starlette's checks) and, for a push to
  many sockets, with the frame encoded once for all of them (`text_frame`).

It is passed to uvicorn as `Config(ws=ChatWebSocketProtocol)`.
"""

from __future__ import annotations

import asyncio
import struct
import time
from typing import Any

import structlog
from starlette.websockets import WebSocket
from uvicorn.config import Config
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from uvicorn.server import ServerState
from websockets.frames import CloseCode
from websockets.protocol import State

log = structlog.get_logger(__name__)

# After the app has finished and the close timeout has run out, this much longer for the
# transport to flush before it is cut.
LINGER_GRACE_S = 2.0


class ChatWebSocketProtocol(WebSocketsSansIOProtocol):
    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        # Monotonic time the peer was last heard from: bytes of a frame, a pong, anything.
        self.last_heard_at = time.monotonic()
        # Set when this side ended the connection because a ping went unanswered.
        self.timed_out = False
        self._read_ahead = max(1, config.ws_max_queue)

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

    def data_received(self, data: bytes) -> None:
        self.last_heard_at = time.monotonic()
        super().data_received(data)
        if not self.handshake_initiated and self.conn.handshake_exc is not None:
            # The request could not be parsed: websockets has prepared the refusal (431
            # for a header line over the limit) but uvicorn only writes it for a request
            # that parsed. Send it and close.
            self.transport.write(b"".join(self.conn.data_to_send()))
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        # The counterpart of websockets' "connection open", as the legacy implementation
        # logged it: the end of every socket, authenticated or not, shows in the log.
        self.logger.info("connection closed")

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
        if not self.disconnected:
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
        if self.close_sent:
            # The app is past `websocket.close`: drop the message, keep reading until the
            # peer's close reply arrives.
            return
        if self.curr_msg_data_type == "text":
            try:
                text = data.decode()
            except UnicodeDecodeError:
                # The client's fault, not the server's: no error-level log.
                self.logger.info("Invalid UTF-8 sequence received from client.")
                self.conn.send_close(CloseCode.INVALID_DATA)
                self.handle_parser_exception()
                return
            self.queue.put_nowait({"type": "websocket.receive", "text": text})
        else:
            self.queue.put_nowait({"type": "websocket.receive", "bytes": data})
        if not self.read_paused and self.queue.qsize() >= self._read_ahead:
            self.read_paused = True
            self.transport.pause_reading()


def protocol_of(websocket: WebSocket) -> ChatWebSocketProtocol | None:
    """The protocol serving a socket; None when served otherwise (in-process tests)."""
    # Starlette keeps the ASGI `receive` as given: uvicorn's bound `protocol.receive`.
    # (`_send` is Starlette's own wrapper, which leads nowhere.)
    protocol = getattr(getattr(websocket, "_receive", None), "__self__", None)
    return protocol if isinstance(protocol, ChatWebSocketProtocol) else None


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
