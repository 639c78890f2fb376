"""How late a generator process's event loop wakes (`gen_loop_late_max_ms`)."""

from __future__ import annotations

import asyncio
import time


class Lateness:
    """How late this process's event loop wakes: a timer every `interval_s`, and the
    longest delay past it. A generator that stalls (a collection, a long turn, a wait
    for a core) sends late and stamps receptions late, and the figures would charge that
    to the server; this says how much of a step's tail could be the generator's own."""

    def __init__(self, interval_s: float = 0.005) -> None:
        self.interval_s = interval_s
        self.longest_s = 0.0
        self._task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        while True:
            before = time.monotonic()
            await asyncio.sleep(self.interval_s)
            self.longest_s = max(self.longest_s, time.monotonic() - before - self.interval_s)

    def take(self) -> float:
        """The longest lateness since the last call, in ms."""
        longest, self.longest_s = self.longest_s, 0.0
        return longest * 1000

    def stop(self) -> None:
        self._task.cancel()
