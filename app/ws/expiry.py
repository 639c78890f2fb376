"""A connection lives no longer than its token, unless an `auth` frame renewed it.

A timer per connection, not a task: ten thousand idle sockets each held a task (and the
inner task of its `wait_for`) only to wait for this. A renewal re-arms the timer, since
the new token may expire sooner than the old one. The timer re-checks at least every
`RECHECK_S`, so a wall clock that jumps cannot keep a socket open past its token.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from app.ws.connection import Connection

RECHECK_S = 30.0


class Expiry:
    __slots__ = ("_close_code", "_connection", "_timer")

    def __init__(self, connection: Connection, close_code: int) -> None:
        self._connection = connection
        self._close_code = close_code
        self._timer: asyncio.TimerHandle | None = None

    def start(self) -> None:
        self._connection.on_renewed = self._rearm
        self._check()

    def stop(self) -> None:
        self._connection.on_renewed = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _rearm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._check()

    def _check(self) -> None:
        self._timer = None
        left = (self._connection.expires_at - datetime.now(UTC)).total_seconds()
        if left <= 0:
            self._connection.close(self._close_code, "token expired")
            return
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(min(left, RECHECK_S), self._check)
