"""How late a generator process's event loop wakes (`gen_loop_late_max_ms`).

A generator that stalls (a collection, a long turn, a wait for a core) sends late and
stamps arrivals late, and the figures would charge that to the server; this says how
much of a step's tail could be the generator's own. The timer is the service's own
`LoopLag`, sampled every few milliseconds, keeping only the longest lateness."""

from __future__ import annotations

from app.infra.loop_lag import LoopLag


class Lateness:
    def __init__(self, interval_s: float = 0.005) -> None:
        self.longest_s = 0.0
        self._lag = LoopLag(float("inf"), interval_s=interval_s, on_sample=self._sampled)
        self._lag.start()

    def _sampled(self, lag_s: float) -> None:
        self.longest_s = max(self.longest_s, lag_s)

    def take(self) -> float:
        """The longest lateness since the last call, in ms."""
        longest, self.longest_s = self.longest_s, 0.0
        return longest * 1000

    def stop(self) -> None:
        self._lag.stop()
