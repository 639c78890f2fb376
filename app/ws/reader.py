"""The frames of one connection: checked, dispatched and answered as they arrive.

The protocol hands each message over as it is read (`take`); no task waits for the next
one, so an idle socket costs no coroutine. Writes (`send`, `delivered`, `read`) are
handed to their write lane at once, in the order they arrived (so one room's sends keep
their order), and answered by callback when their batch commits: no task per write,
and later frames are taken meanwhile, up to `frames_in_flight` at once. Other frames are
handled one at a time, each in a task while it runs. A message that arrives while one is
being handled (or while the bound is reached) waits in a backlog, and reading pauses
when that backlog is full. Every answer, ack or error, goes out in the order of the
frames (`answers.py`). Anything a frame does goes through the same domain services as
REST.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import structlog

from app.errors import ChatError, ErrorCode
from app.infra.failures import store_down
from app.ws import frames
from app.ws.answers import AnswerLine, Place
from app.ws.dispatch import HANDLERS, HANDOFFS, Peer, Reply
from app.ws.throttle import TokenBucket

log = structlog.get_logger("chat.ws")

CLOSE_TOO_MANY = 4429
CLOSE_TOO_BIG = 1009
# Rejected frames tolerated (beyond the bucket) before a flooding client is cut off.
FLOOD_STRIKES = 50


class FrameReader:
    __slots__ = (
        "_answers",
        "_backlog",
        "_bucket",
        "_ended",
        "_finished",
        "_in_flight",
        "_on_finished",
        "_peer",
        "_serial",
        "_serial_auth",
        "_strikes",
    )

    def __init__(self, peer: Peer, on_finished: Callable[[], None]) -> None:
        settings = peer.services.settings
        self._peer = peer
        self._answers = AnswerLine(peer.connection.push)
        self._bucket = TokenBucket(settings.frames_per_s, settings.frames_per_s)
        self._strikes = 0
        # Made on first use, as most sockets are idle most of the time.
        self._in_flight: set[asyncio.Future[Any]] | None = None
        self._serial: asyncio.Task[None] | None = None
        self._serial_auth = False  # whether `_serial` handles an `auth` frame
        self._backlog: deque[str | bytes] | None = None
        self._ended = False
        self._finished = False
        # Called once the client has gone and every frame taken before has been started.
        self._on_finished = on_finished

    def take(self, raw: str | bytes) -> None:
        """A message from the client, as it arrives."""
        connection = self._peer.connection
        connection.last_frame_at = time.monotonic()
        if self._backlog or self._busy():
            if self._backlog is None:
                self._backlog = deque()
            self._backlog.append(raw)
            protocol = connection.protocol
            if len(self._backlog) >= protocol.read_ahead:
                protocol.hold_reading()
            return
        self._start(raw)

    def end(self) -> None:
        """The client has gone: what it sent before still gets handled, then finish."""
        self._ended = True
        self._finish_if_done()

    def waiting_renewal(self) -> Callable[[], bool] | None:
        """The `auth` frames taken so far and not handled yet, if any, as a question to ask
        again: does one of them still wait? Frames taken after this call do not count, so
        renewals sent once the token has expired cannot keep the connection open.

        Asked only when a token expires: the backlog is parsed here, never as it fills.
        """
        backlog = self._backlog
        last = next((raw for raw in reversed(backlog) if _is_auth(raw)), None) if backlog else None
        if last is None and not self._handling_auth():
            return None
        return functools.partial(self._renewal_waits, last)

    def _renewal_waits(self, last: str | bytes | None) -> bool:
        """Whether an `auth` frame is being handled, or `last` (and so every one before it)
        is still in the backlog."""
        if self._handling_auth():
            return True
        backlog = self._backlog
        return last is not None and backlog is not None and any(raw is last for raw in backlog)

    def _handling_auth(self) -> bool:
        serial = self._serial
        return serial is not None and self._serial_auth and not serial.done()

    def _busy(self) -> bool:
        if self._serial is not None:
            return True
        in_flight = self._in_flight
        bound = self._peer.services.settings.frames_in_flight
        return in_flight is not None and len(in_flight) >= bound

    def _start(self, raw: str | bytes) -> None:
        peer = self._peer
        connection = peer.connection
        if connection.close_code is not None:
            return
        if len(raw) > peer.services.settings.max_frame_bytes:
            connection.close(CLOSE_TOO_BIG, "frame too large")
            return
        if connection.draining:
            return
        answers = self._answers
        wait = self._bucket.take()
        if wait:
            self._strikes += 1
            if self._strikes > FLOOD_STRIKES:
                connection.close(CLOSE_TOO_MANY, "too many frames")
                return
            peer.services.metrics.rate_limited.inc()
            retry_after_ms = int(wait * 1000) + 1
            answers.answer_now(
                frames.dumps_error(
                    frames.id_of(raw), ErrorCode.RATE_LIMITED, "slow down", retry_after_ms
                )
            )
            return
        self._strikes = 0
        frame = _parse(answers, raw)
        if frame is None:
            return
        connection.frame_started()
        place = answers.take_place()
        handoff = HANDOFFS.get(type(frame))
        if handoff is None:
            task = asyncio.create_task(_handle(peer, frame, answers, place))
            self._serial = task
            self._serial_auth = type(frame) is frames.AuthFrame
            task.add_done_callback(self._serial_done)
            return
        # Handed to its lane now, in the order the frames came; no task waits for it.
        hand, shape = handoff
        try:
            result = hand(peer, frame)
        except Exception as exc:
            answers.answer(place, _failure(frame, exc))
            connection.frame_done()
            return
        if self._in_flight is None:
            self._in_flight = set()
        self._in_flight.add(result)
        result.add_done_callback(functools.partial(self._settled, frame, place, shape))

    def _settled(
        self,
        frame: frames.ClientFrame,
        place: Place,
        shape: Callable[[Any], dict[str, Any]],
        result: asyncio.Future[Any],
    ) -> None:
        """A handed-over write's lane has answered: ack it (or say why not) in its place."""
        exc = result.exception() if not result.cancelled() else asyncio.CancelledError()
        try:
            if exc is None:
                text = frames.dumps_ack(frame.id, shape(result.result()))
            else:
                text = _failure(frame, exc)
        except Exception as failed:
            text = _failure(frame, failed)
        self._answers.answer(place, text)
        self._peer.connection.frame_done()
        in_flight = self._in_flight
        if in_flight is not None:
            in_flight.discard(result)
            if not in_flight:
                self._in_flight = None
        self._drain()

    def _serial_done(self, task: asyncio.Task[None]) -> None:
        self._serial = None
        self._drain()

    def _drain(self) -> None:
        backlog = self._backlog
        if backlog:
            while backlog and not self._busy():
                self._start(backlog.popleft())
            if not backlog:
                self._backlog = None
                self._peer.connection.protocol.release_reading()
        self._finish_if_done()

    def _finish_if_done(self) -> None:
        if self._ended and not self._finished and self._serial is None and not self._backlog:
            self._finished = True
            self._on_finished()


def _is_auth(raw: str | bytes) -> bool:
    """Whether a frame not yet started is an `auth` frame (one that does not parse is not)."""
    if isinstance(raw, bytes):
        return False
    try:
        return isinstance(frames.parse(raw), frames.AuthFrame)
    except frames.FrameError:
        return False


def _parse(answers: AnswerLine, raw: str | bytes) -> frames.ClientFrame | None:
    """The frame, or None once it has been answered here (an error, or a ping's pong)."""
    if isinstance(raw, bytes):
        answers.answer_now(
            frames.dumps_error(None, ErrorCode.INVALID_FRAME, "frames are JSON text, not binary")
        )
        return None
    try:
        frame = frames.parse(raw)
    except frames.FrameError as exc:
        answers.answer_now(frames.dumps_error(exc.frame_id, exc.code, exc.message))
        return None
    if isinstance(frame, frames.PingFrame):
        pong = frames.PongFrame(type="pong", id=frame.id)
        answers.answer_now(pong.model_dump_json(exclude_none=True))
        return None
    return frame


async def _handle(peer: Peer, frame: frames.ClientFrame, answers: AnswerLine, place: Place) -> None:
    """Run a frame's handler and answer it; the caller has counted it as started."""
    try:
        data = await HANDLERS[type(frame)](peer, frame)
    except Exception as exc:
        answers.answer(place, _failure(frame, exc))
    else:
        if isinstance(data, Reply):
            answers.answer(place, frames.dumps_ack(frame.id, data.data), data.then)
        else:
            answers.answer(place, frames.dumps_ack(frame.id, data))
    finally:
        peer.connection.frame_done()


def _failure(frame: frames.ClientFrame, exc: BaseException) -> str:
    """The error answer to a frame whose handling raised `exc`."""
    if isinstance(exc, ChatError):
        return frames.dumps_error(frame.id, exc.code, exc.message)
    if store_down(exc):
        log.warning("store_unavailable", error=type(exc).__name__, frame=type(frame).__name__)
        return frames.dumps_error(frame.id, ErrorCode.UNAVAILABLE, "a data store is unreachable")
    log.error("frame_failed", frame=type(frame).__name__, exc_info=exc)
    return frames.dumps_error(frame.id, ErrorCode.INTERNAL, "an unexpected error occurred")
