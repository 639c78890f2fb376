"""Exponential backoff with full jitter.

The n-th retry waits a uniformly random time in `[0, min(cap, base * 2**n)]`. Full jitter
spreads a crowd of clients that lost their server at the same instant over the whole
window instead of bringing them back in synchronized waves.
"""

from __future__ import annotations

import random


class Backoff:
    def __init__(
        self, base_s: float = 0.25, cap_s: float = 15.0, rng: random.Random | None = None
    ) -> None:
        if base_s <= 0 or cap_s < base_s:
            raise ValueError("backoff needs 0 < base_s <= cap_s")
        self.base_s = base_s
        self.cap_s = cap_s
        self.attempt = 0
        self._rng = rng or random.Random()  # noqa: S311 (jitter, not cryptography)

    def next_delay(self) -> float:
        """The wait before the next attempt; each call widens the window (up to the cap)."""
        window = min(self.cap_s, self.base_s * 2 ** min(self.attempt, 32))
        self.attempt += 1
        return self._rng.uniform(0, window)

    def reset(self) -> None:
        self.attempt = 0
