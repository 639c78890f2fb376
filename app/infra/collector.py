"""Tuning of Python's cyclic garbage collector for a process holding thousands of sockets.

Every socket keeps a few hundred objects alive for as long as it is open. With the
default thresholds (a young collection every 700 allocations) anything that lives a few
milliseconds, such as a frame waiting for its commit, survives two young collections and
is promoted to the old generation; once enough has been promoted, a full collection
traverses every object of every socket. Under load that happened every few seconds and
took about half of the event loop's time (py-spy, `fanout` with acks, 5,000 sockets), in
pauses that showed up as p99 latency. A young generation of tens of thousands lets
short-lived objects die before their first collection, so little is promoted and full
collections become rare. What start-up loaded (modules, settings, the app) is frozen out
of collections altogether: it lives as long as the process.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from typing import Any

from prometheus_client import Counter

# The default older thresholds: a collection of generation 1 every 10 young ones, and
# of generation 2 every 10 of those (and then only once enough has been promoted).
OLDER_THRESHOLDS = (10, 10)


def tune(young_threshold: int, seconds: Counter) -> Callable[[], None]:
    """Freeze what start-up loaded, set the young threshold, and time every collection
    into `seconds` (labelled by generation): its pauses are the event loop's. Returns
    what stops the timing."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(young_threshold, *OLDER_THRESHOLDS)
    started = 0.0

    def timed(phase: str, info: dict[str, Any]) -> None:
        nonlocal started
        if phase == "start":
            started = time.perf_counter()
        else:
            seconds.labels(generation=str(info["generation"])).inc(time.perf_counter() - started)

    gc.callbacks.append(timed)
    return lambda: gc.callbacks.remove(timed)
