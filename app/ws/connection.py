"""One WebSocket connection: who it is, what it follows, and a bounded outbox.

A frame to the client, ack or push, is written to the socket at once when nothing waits
before it and the socket takes data (its buffer under the high-water mark): no task, no
queue, for the common case of a client that keeps up. Otherwise it joins the outbox,
which a writer task drains in order while there is a backlog. A client that stops
reading cannot stall anyone else: when its outbox is full it is closed (it reconnects and
`sync`s) instead of buffered forever. A sender of many frames at once (a `sync`'s replay)
waits for the backlog to shrink (`backlog_under`) instead of overflowing it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections import deque
from collections.abc import Callable
from datetime import datetime

import structlog

from app.ws.flag import Flag
from app.ws.protocol import ChatWebSocketProtocol

log = structlog.get_logger(__name__)

CLOSE_TIMEOUT_S = 2.0
CLOSE_TOO_SLOW = 4429
TOO_SLOW_REASON = "not reading fast enough; reconnect and sync"


class Connection:
    def __init__(
        self,
        protocol: ChatWebSocketProtocol,
        user_id: str,
        expires_at: datetime,
        outbox_size: int,
    ) -> None:
        self.id = uuid.uuid4().hex
        self.protocol = protocol
        self.user_id = user_id
        self._expires_at = expires_at
        # Called whenever an `auth` frame renews the token, so the expiry re-reads it.
        self.on_renewed: Callable[[], None] | None = None
        self.rooms: set[str] = set()
        self.watching: set[str] = set()
        # Monotonic time of the last frame from the client: a sign of life.
        self.last_frame_at = time.monotonic()
        # One slot beyond the outbox for the close marker: a client closed for falling
        # behind still gets what was queued, then the 4429 close and its reason.
        self._outbox_size = outbox_size
        # Frames waiting for the writer (None: close after them); made on first use, as
        # most sockets never have a backlog.
        self._outbox: deque[str | None] | None = None
        self._writer: asyncio.Task[None] | None = None
        # The writer has taken a frame from the outbox and not yet written it.
        self._holding = False
        # Frames the writer has written from the outbox: the client's progress, for those
        # waiting for the backlog to shrink.
        self._taken = 0
        # Those waiting (`backlog_under`), each with the backlog it waits to go under.
        self._waiters: list[tuple[int, asyncio.Future[None]]] | None = None
        self.close_code: int | None = None
        self._reason = ""
        self._deadline: asyncio.TimerHandle | None = None
        self.closed = Flag()
        # Called once `closed` is set: the session ends without a task waiting for it.
        self.on_closed: Callable[[], None] | None = None
        # Shutdown stops taking new frames and waits for those in hand (their acks).
        self.draining = False
        self._in_hand = 0
        # Made only while shutdown waits for the frames in hand.
        self._idle: asyncio.Future[None] | None = None

    @property
    def expires_at(self) -> datetime:
        return self._expires_at

    @expires_at.setter
    def expires_at(self, value: datetime) -> None:
        self._expires_at = value
        if self.on_renewed is not None:
            self.on_renewed()

    def peer_gone(self) -> bool:
        """The client has already left."""
        return self.protocol.disconnected

    def frame_started(self) -> None:
        self._in_hand += 1

    def frame_done(self) -> None:
        self._in_hand -= 1
        if not self._in_hand and self._idle is not None and not self._idle.done():
            self._idle.set_result(None)

    async def wait_idle(self) -> None:
        """Until no frame is in hand (answered, or given up)."""
        if self._in_hand:
            if self._idle is None or self._idle.done():
                self._idle = asyncio.get_running_loop().create_future()
            await asyncio.shield(self._idle)

    @property
    def outbox_size(self) -> int:
        return self._outbox_size

    @property
    def backlog(self) -> int:
        """Frames queued for the writer and not yet written."""
        outbox = self._outbox
        return (len(outbox) if outbox else 0) + self._holding

    async def backlog_under(self, frames: int, stall_s: float) -> bool:
        """Wait until fewer than `frames` frames are queued: True; False once the
        connection is closing instead (anything pushed now would be dropped).

        It looks after one turn of the loop, so that a writer task started by the pushes
        before it has taken its first frame. A client that takes no frame for
        `stall_s` is not reading: it is closed as one whose outbox overflowed.
        """
        if frames < 1:
            raise ValueError("no backlog is under 0 frames")
        await asyncio.sleep(0)
        while self.close_code is None and self.backlog >= frames:
            taken = self._taken
            if not await self._shrunk_under(frames, stall_s) and self._taken == taken:
                log.warning("outbox_stalled", connection_id=self.id, user_id=self.user_id)
                self.close(CLOSE_TOO_SLOW, TOO_SLOW_REASON)
        return self.close_code is None

    async def _shrunk_under(self, frames: int, timeout_s: float) -> bool:
        """Until the backlog is under `frames` or the connection closing: False if that
        took longer than `timeout_s`."""
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (frames, waiter)
        if self._waiters is None:
            self._waiters = []
        self._waiters.append(entry)
        try:
            async with asyncio.timeout(timeout_s):
                await waiter
        except TimeoutError:
            return False
        finally:
            if self._waiters is not None and entry in self._waiters:
                self._waiters.remove(entry)
        return True

    def _wake_waiters(self) -> None:
        waiters = self._waiters
        if not waiters:
            return
        closing, backlog = self.close_code is not None, self.backlog
        for frames, waiter in waiters:
            if (closing or backlog < frames) and not waiter.done():
                waiter.set_result(None)

    def push(self, text: str, wire: bytes | None = None) -> None:
        """Send a frame without waiting; a full outbox means the client is not keeping up.
        `wire`: the same frame encoded for the socket, when it goes to many."""
        if self.close_code is not None:
            return
        outbox = self._outbox
        backlog = self._holding or bool(outbox)
        if not backlog and self.protocol.send_text_now(text, wire):
            return
        outbox = self._backlog()
        if len(outbox) >= self._outbox_size:
            log.warning("outbox_overflow", connection_id=self.id, user_id=self.user_id)
            self.close(CLOSE_TOO_SLOW, TOO_SLOW_REASON)
            return
        outbox.append(text)
        self._ensure_writer()

    def _backlog(self) -> deque[str | None]:
        if self._outbox is None:
            self._outbox = deque()
        return self._outbox

    def _ensure_writer(self) -> None:
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write(), name=f"ws-writer-{self.id}")

    def close(self, code: int, reason: str = "") -> None:
        """Close after what is already queued has been written; a peer that does not take
        it within CLOSE_TIMEOUT_S is cut off."""
        if self.close_code is not None:
            return
        self.close_code = code
        self._reason = reason
        self._wake_waiters()
        loop = asyncio.get_running_loop()
        self._deadline = loop.call_later(CLOSE_TIMEOUT_S * 2, self._force_close)
        outbox = self._backlog()
        if len(outbox) > self._outbox_size:
            self._force_close()
            return
        outbox.append(None)
        # The close goes after whatever is queued: the writer sends it once it gets there.
        self._ensure_writer()

    def _force_close(self) -> None:
        if self.closed.is_set():
            return
        if self._writer is not None:
            self._writer.cancel()
        self.protocol.transport.abort()
        self._set_closed()

    def _set_closed(self) -> None:
        if not self.closed.is_set():
            self.closed.set()
            self._wake_waiters()
            if self.on_closed is not None:
                self.on_closed()

    async def _write(self) -> None:
        """Drain the backlog in order, then end: the next backlog starts a new writer."""
        try:
            while self._outbox:
                text = self._outbox.popleft()
                if text is None:
                    await self._send_close()
                    return
                self._holding = True
                await self.protocol.send_text(text)
                self._holding = False
                self._taken += 1
                self._wake_waiters()
        except asyncio.CancelledError:
            return
        except Exception:  # a write to a vanished peer; the protocol reports the end
            self.close_code = self.close_code or 1006
            self._set_closed()
        finally:
            self._holding = False

    async def _send_close(self) -> None:
        try:
            # Behind what the peer has not taken yet; a peer that takes nothing is cut off.
            await asyncio.wait_for(self.protocol.writable.wait(), CLOSE_TIMEOUT_S)
            self.protocol.send_close(self.close_code or 1000, self._reason)
        except Exception:  # closing a socket that is already gone (or stuck) is not an error
            log.debug("close_failed", connection_id=self.id)
            self.protocol.transport.abort()
        finally:
            self._set_closed()

    async def finish(self) -> None:
        """Stop the writer when the connection has ended from the client's side."""
        if self._deadline is not None:
            self._deadline.cancel()
        if self._writer is not None and not self._writer.done():
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer
        self._set_closed()
