"""A step second by second (`--timeline S`): latency by when each message was due, next to
the cores each party used over the same interval.

A p99 over a whole step cannot tell a stall (a few hundred milliseconds where everything
waits: a checkpoint, a collection) from a stretch where the server needs more than the
core it gets (the machine's cores change speed: see `machine.reference_loop_ms`). The
timeline can: a stall is one bad interval while the cores look as before; a stretch is
several, with the server's thread near one core and the queue growing interval after
interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from array import array
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.harness import cpu_s, ms, percentile

# Cores used by each party over an interval: name -> CPU seconds read at a moment.
Meters = dict[str, Callable[[], float]]


def idle_cores_s() -> float:
    """CPU seconds every core of the machine has spent idle so far (`/proc/stat`)."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()
        return (int(fields[4]) + int(fields[5])) / os.sysconf("SC_CLK_TCK")  # idle + iowait
    return 0.0


def processes(pids: Sequence[int]) -> Callable[[], float]:
    return lambda: sum(cpu_s(pid) for pid in pids)


@dataclass
class Sampler:
    """Reads every meter four times per interval of `interval_s` while a step runs, so an
    interval's figures come from readings at most a quarter interval outside it."""

    meters: Meters
    interval_s: float
    samples: list[tuple[float, dict[str, float]]] = field(default_factory=list)
    _task: asyncio.Task[None] | None = None

    def _read(self) -> None:
        self.samples.append((time.monotonic(), {k: read() for k, read in self.meters.items()}))

    async def _run(self) -> None:
        while True:
            self._read()
            await asyncio.sleep(self.interval_s / 4)

    def start(self) -> None:
        self.samples.clear()
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self._read()

    def cores(self, start: float, end: float) -> dict[str, float]:
        """Cores each meter used from the last reading at or before `start` to the first
        at or after `end` (empty when the readings do not span the interval)."""
        before = [s for s in self.samples if s[0] <= start]
        after = [s for s in self.samples if s[0] >= end]
        if not before or not after:
            return {}
        (t0, first), (t1, last) = before[-1], after[0]
        return {k: round((last[k] - first[k]) / (t1 - t0), 2) for k in first}


def due_and_latency(results: Sequence[dict[str, Any]]) -> list[tuple[float, float]]:
    """(when a message was due, its send→receive latency) from every worker's arrays."""
    pairs: list[tuple[float, float]] = []
    for result in results:
        due, lat = array("d"), array("d")
        due.frombytes(result["due"])
        lat.frombytes(result["lat"])
        pairs += zip(due, lat, strict=True)
    return pairs


def timeline(
    pairs: Sequence[tuple[float, float]], start_at: float, sampler: Sampler
) -> list[dict[str, Any]]:
    """One row per interval of due times: messages, p50 and p99 ms, and the cores used."""
    width = sampler.interval_s
    buckets: dict[int, list[float]] = {}
    for due, lat in pairs:
        buckets.setdefault(int((due - start_at) // width), []).append(lat)
    rows = []
    for index in sorted(buckets):
        values = sorted(buckets[index])
        start = start_at + index * width
        rows.append(
            {
                "t_s": round(index * width, 2),
                "messages": len(values),
                "p50_ms": ms(percentile(values, 50)),
                "p99_ms": ms(percentile(values, 99)),
                "cores": sampler.cores(start, start + width),
            }
        )
    return rows


def render(rows: Sequence[dict[str, Any]]) -> str:
    """The timeline as text lines for the progress log."""
    lines = []
    for row in rows:
        cores = " ".join(f"{k} {v:.2f}" for k, v in row["cores"].items())
        lines.append(
            f"  t {row['t_s']:6.2f}s  n {row['messages']:6d}  p50 {row['p50_ms']:8.2f}  "
            f"p99 {row['p99_ms']:8.2f} ms  cores: {cores}"
        )
    return "\n".join(lines)
