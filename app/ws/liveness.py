"""When a connection last showed a sign of life, and cutting one off.

Protocol pings are answered inside the WebSocket library and never reach an ASGI app, so
both go through the connection's protocol object (`app.ws.protocol`), which uvicorn hands
the app as the `receive` callable's owner. Served any other way (in-process tests) there
is none: the end of the connection is then the best estimate, and there is nothing to
abort.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from starlette.websockets import WebSocket

from app.ws.protocol import protocol_of


def last_sign_of_life(websocket: WebSocket, last_frame_at: float) -> datetime:
    """Wall-clock time of the last sign of life, judged now, as the connection ends.

    A peer that was answering pings (or ended the connection itself: its close, FIN or
    reset) was alive until now. One that left a ping unanswered, and was cut off for it
    or went while it was pending, was last alive when it was last heard from: a frame or
    a pong. `last_frame_at` (monotonic) is the app's own record of the last frame.
    """
    now = datetime.now(UTC)
    protocol = protocol_of(websocket)
    if protocol is None or protocol.answering:
        return now
    heard_at = max(protocol.last_heard_at, last_frame_at)
    return now - timedelta(seconds=max(0.0, time.monotonic() - heard_at))


def abort(websocket: WebSocket) -> None:
    """Cut the TCP connection now, dropping whatever is buffered for it.

    For a peer that stopped reading: a polite close waits for the buffer to drain, which
    for such a peer is never. The app is told through `receive()`, as for any lost peer.
    """
    protocol = protocol_of(websocket)
    if protocol is not None:
        protocol.transport.abort()
