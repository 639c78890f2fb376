"""How late the event loop runs, so advisory work can give way while it is behind.

A timer asks to run every `interval_s`; how late it actually runs is the time the loop
spent on other work first. When that lateness is over `threshold_s` the loop is behind,
and stays so for `hold_s` after the last late sample; meanwhile what the next event
repeats anyway (a typing refresh) is dropped instead of queued. Otherwise a typing storm
(every member of every room, once a second) takes the whole loop and chat messages wait
behind it. The hold keeps shedding from switching off at the first timely sample: the
loop would then take on the whole storm again and fall behind within a turn or two.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

INTERVAL_S = 0.01
HOLD_S = 0.5


class LoopLag:
    def __init__(
        self,
        threshold_s: float,
        *,
        interval_s: float = INTERVAL_S,
        hold_s: float = HOLD_S,
        on_sample: Callable[[float], None] | None = None,
    ) -> None:
        self._threshold_s = threshold_s
        self._interval_s = interval_s
        self._hold_s = hold_s
        self._late_at = float("-inf")
        self._on_sample = on_sample
        self._due = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self.lag_s = 0.0

    @property
    def behind(self) -> bool:
        """A sample was over the threshold within the hold, or the sample now due is
        already late by more (a loop stuck in one long turn has not run the timer yet)."""
        now = time.monotonic()
        return now - self._late_at < self._hold_s or (
            self._timer is not None and now - self._due > self._threshold_s
        )

    def start(self) -> None:
        self._schedule()

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _schedule(self) -> None:
        # Measured on the monotonic clock: the loop's own clock may tick in milliseconds.
        self._due = time.monotonic() + self._interval_s
        self._timer = asyncio.get_running_loop().call_later(self._interval_s, self._sample)

    def _sample(self) -> None:
        now = time.monotonic()
        self.lag_s = max(0.0, now - self._due)
        if self.lag_s > self._threshold_s:
            self._late_at = now
        if self._on_sample is not None:
            self._on_sample(self.lag_s)
        self._schedule()
