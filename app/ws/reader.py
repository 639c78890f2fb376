"""The frame loop of one authenticated connection: read, check, dispatch, answer.

Writes (`send`, `delivered`, `read`) are pipelined: each is handed to its write lane in
the order it arrived (so one room's sends keep their order) and answered when its batch
commits, while the loop reads on, up to `frames_in_flight` at once. Other frames are
handled one at a time. Every answer, ack or error, goes out in the order of the frames
(`answers.py`). Anything a frame does goes through the same domain services as REST.
"""

from __future__ import annotations

import asyncio
import time

import structlog
from starlette.websockets import WebSocketDisconnect

from app.errors import ChatError, ErrorCode
from app.infra.failures import store_down
from app.ws import frames
from app.ws.answers import AnswerLine, Place
from app.ws.dispatch import HANDLERS, Peer
from app.ws.throttle import TokenBucket

log = structlog.get_logger("chat.ws")

CLOSE_TOO_MANY = 4429
CLOSE_TOO_BIG = 1009
# Rejected frames tolerated (beyond the bucket) before a flooding client is cut off.
FLOOD_STRIKES = 50

# Frames that only wait for a write lane: handled concurrently (see the module docstring).
PIPELINED = (frames.SendFrame, frames.DeliveredFrame, frames.ReadFrame)


async def read_frames(peer: Peer) -> None:
    """Until the client goes or the connection is closed from this side."""
    settings = peer.services.settings
    connection = peer.connection
    answers = AnswerLine(connection.push)
    bucket = TokenBucket(settings.frames_per_s, settings.frames_per_s)
    strikes = 0
    in_flight: set[asyncio.Task[None]] = set()
    # Made only when the bound is reached, and resolved by the next frame answered.
    slot_free: asyncio.Future[None] | None = None

    def done(task: asyncio.Task[None]) -> None:
        in_flight.discard(task)
        if slot_free is not None and not slot_free.done():
            slot_free.set_result(None)

    while connection.close_code is None:
        try:
            message = await connection.websocket.receive()
        except (RuntimeError, WebSocketDisconnect):
            return
        if message["type"] == "websocket.disconnect":
            return
        connection.last_frame_at = time.monotonic()
        raw = message.get("text")
        if raw is None:
            raw = message.get("bytes") or b""
        if len(raw) > settings.max_frame_bytes:
            connection.close(CLOSE_TOO_BIG, "frame too large")
            return
        if connection.draining:
            continue
        wait = bucket.take()
        if wait:
            strikes += 1
            if strikes > FLOOD_STRIKES:
                connection.close(CLOSE_TOO_MANY, "too many frames")
                return
            peer.services.metrics.rate_limited.inc()
            answers.answer_now(
                frames.dumps_error(None, ErrorCode.RATE_LIMITED, "slow down", int(wait * 1000) + 1)
            )
            continue
        strikes = 0
        frame = _parse(answers, raw)
        if frame is None:
            continue
        if not isinstance(frame, PIPELINED):
            connection.frame_started()
            await _handle(peer, frame, answers, answers.take_place())
            continue
        if len(in_flight) >= settings.frames_in_flight:
            slot_free = asyncio.get_running_loop().create_future()
            await slot_free
        connection.frame_started()
        # A task starts in creation order and reaches its lane before its first await, so
        # frames keep their order into the lanes.
        task = asyncio.create_task(_handle(peer, frame, answers, answers.take_place()))
        in_flight.add(task)
        task.add_done_callback(done)


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
    except ChatError as exc:
        answers.answer(place, frames.dumps_error(frame.id, exc.code, exc.message))
    except Exception as exc:
        if store_down(exc):
            log.warning("store_unavailable", error=type(exc).__name__, frame=type(frame).__name__)
            error = frames.dumps_error(
                frame.id, ErrorCode.UNAVAILABLE, "a data store is unreachable"
            )
        else:
            log.exception("frame_failed", frame=type(frame).__name__)
            error = frames.dumps_error(frame.id, ErrorCode.INTERNAL, "an unexpected error occurred")
        answers.answer(place, error)
    else:
        answers.answer(place, frames.dumps_ack(frame.id, data))
    finally:
        peer.connection.frame_done()
