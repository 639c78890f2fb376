"""When a connection last showed a sign of life.

Protocol pings are answered inside the WebSocket library and never reach the app, so
this reads the connection's protocol object (`app.ws.protocol`).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from app.ws.protocol import ChatWebSocketProtocol


def last_sign_of_life(protocol: ChatWebSocketProtocol, last_frame_at: float) -> datetime:
    """Wall-clock time of the last sign of life, judged now, as the connection ends.

    A peer that was answering pings (or ended the connection itself: its close, FIN or
    reset) was alive until now. One that left a ping unanswered, and was cut off for it
    or went while it was pending, was last alive when it was last heard from: a frame or
    a pong. `last_frame_at` (monotonic) is the app's own record of the last frame.
    """
    now = datetime.now(UTC)
    if protocol.answering:
        return now
    heard_at = max(protocol.last_heard_at, last_frame_at)
    return now - timedelta(seconds=max(0.0, time.monotonic() - heard_at))
