"""A connection lives no longer than its token, unless an `auth` frame renewed it.

A timer per connection, not a task: ten thousand idle sockets each held a task (and the
inner task of its `wait_for`) only to wait for this. A renewal re-arms the timer, since
the new token may expire sooner than the old one. The timer re-checks at least every
`RECHECK_S`, so a wall clock that jumps cannot keep a socket open past its token.

A renewal the client sent in time may still wait behind slower frames when the token
expires: the connection then stays open until it has been handled, and is closed if it
failed. Only renewals taken by then count, so later ones cannot keep it open.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime

from app.ws.connection import Connection

RECHECK_S = 30.0
# How soon to look again while a renewal sent in time waits for the frames ahead of it.
RENEWAL_RECHECK_S = 0.1

# Asked when the token expires: the renewals taken and not yet handled, if any, as a
# question to ask again (does one still wait?).
WaitingRenewal = Callable[[], Callable[[], bool] | None]


class Expiry:
    __slots__ = ("_close_code", "_connection", "_renewal", "_timer", "_waiting_renewal")

    def __init__(self, connection: Connection, close_code: int) -> None:
        self._connection = connection
        self._close_code = close_code
        self._timer: asyncio.TimerHandle | None = None
        self._waiting_renewal: WaitingRenewal | None = None
        # The renewals found waiting when the token expired, while they wait.
        self._renewal: Callable[[], bool] | None = None

    def start(self, waiting_renewal: WaitingRenewal) -> None:
        self._waiting_renewal = waiting_renewal
        self._connection.on_renewed = self._rearm
        self._check()

    def stop(self) -> None:
        self._connection.on_renewed = None
        self._waiting_renewal = None
        self._renewal = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _rearm(self) -> None:
        self._renewal = None
        if self._timer is not None:
            self._timer.cancel()
        self._check()

    def _check(self) -> None:
        self._timer = None
        loop = asyncio.get_running_loop()
        left = (self._connection.expires_at - datetime.now(UTC)).total_seconds()
        if left > 0:
            self._timer = loop.call_later(min(left, RECHECK_S), self._check)
        elif self._renewal_waits():
            # Bounded: each frame ahead of the renewal is bounded by the stores' time-outs.
            self._timer = loop.call_later(RENEWAL_RECHECK_S, self._check)
        else:
            self._connection.close(self._close_code, "token expired")

    def _renewal_waits(self) -> bool:
        if self._renewal is None and self._waiting_renewal is not None:
            self._renewal = self._waiting_renewal()
        return self._renewal is not None and self._renewal()
