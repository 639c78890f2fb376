"""When a connection last showed a sign of life: a frame from it, or a pong to a ping.

Protocol pings are answered inside the WebSocket library and never reach an ASGI app.
Under uvicorn's `websockets` implementation the protocol object is reachable, and its
table of unanswered pings tells how long the peer has been silent: a connection that died
with a ping outstanding was last heard from before that ping was sent. Elsewhere the end
of the connection itself is the best estimate.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from starlette.websockets import WebSocket


def _protocol(websocket: WebSocket) -> object:
    return getattr(getattr(websocket, "_receive", None), "__self__", None)


def _silent_for_s(websocket: WebSocket) -> float:
    pings = getattr(_protocol(websocket), "pings", None)
    if not isinstance(pings, dict) or not pings:
        return 0.0
    try:
        oldest = float(min(sent for _, sent in pings.values()))
    except (TypeError, ValueError):
        return 0.0
    return max(0.0, time.perf_counter() - oldest)


def cut_off_if_unanswering(websocket: WebSocket, ping_timeout_s: float) -> bool:
    """Abort the TCP connection of a peer that left a ping unanswered past the timeout.

    The WebSocket library notices the missing pong too, but then waits up to its close
    timeout (10 s) for a closing handshake that a silent peer never completes, and only
    then tells the app: far past the 3 x heartbeat in which a dead connection must be
    found. Aborting ends it now; its outstanding pings still date its last sign of life.
    """
    if _silent_for_s(websocket) <= ping_timeout_s:
        return False
    abort = getattr(getattr(_protocol(websocket), "transport", None), "abort", None)
    if not callable(abort):
        return False
    abort()
    return True


def last_sign_of_life(websocket: WebSocket, last_frame_at: float) -> datetime:
    """Wall-clock time of the last sign of life, judged now, as the connection ends."""
    now = datetime.now(UTC)
    by_pings = now - timedelta(seconds=_silent_for_s(websocket))
    by_frames = now - timedelta(seconds=time.monotonic() - last_frame_at)
    return max(by_pings, by_frames)


def abort(websocket: WebSocket) -> None:
    """Cut the TCP connection now, dropping whatever is buffered for it.

    For a peer that stopped reading: a polite close waits for the buffer to drain, which
    for such a peer is never.
    """
    protocol = getattr(getattr(websocket, "_send", None), "__self__", None)
    transport = getattr(protocol, "transport", None)
    if transport is not None and hasattr(transport, "abort"):
        transport.abort()
