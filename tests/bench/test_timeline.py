"""The benchmarks' timeline: latencies grouped by when each message was due, and the
cores each party used over the readings that span the interval."""

from __future__ import annotations

from array import array

from bench.timeline import Sampler, due_and_latency, timeline


def _sampler(readings: list[tuple[float, float]], interval_s: float = 1.0) -> Sampler:
    sampler = Sampler({}, interval_s)
    sampler.samples = [(t, {"server": cpu}) for t, cpu in readings]
    return sampler


def test_messages_are_grouped_by_the_interval_they_were_due_in() -> None:
    pairs = [(10.1, 0.010), (10.9, 0.030), (11.2, 0.200), (12.5, 0.001)]

    rows = timeline(pairs, 10.0, _sampler([]))

    assert [(r["t_s"], r["messages"]) for r in rows] == [(0.0, 2), (1.0, 1), (2.0, 1)]
    assert rows[1]["p99_ms"] == 200.0


def test_cores_come_from_the_readings_that_span_the_interval() -> None:
    # 0.5 CPU s per second until t=2, then 1.0 per second.
    sampler = _sampler([(0.0, 0.0), (1.0, 0.5), (2.0, 1.0), (3.0, 2.0), (4.0, 3.0)])

    assert sampler.cores(0.0, 2.0) == {"server": 0.5}
    assert sampler.cores(2.0, 4.0) == {"server": 1.0}
    assert sampler.cores(1.5, 2.5) == {"server": 0.75}  # readings at 1.0 and 3.0


def test_an_interval_the_readings_do_not_span_has_no_cores() -> None:
    sampler = _sampler([(1.0, 0.0), (2.0, 1.0)])

    assert sampler.cores(0.5, 1.5) == {}
    assert sampler.cores(1.5, 2.5) == {}


def test_each_workers_due_times_pair_with_its_own_latencies() -> None:
    first = {"due": array("d", [1.0, 2.0]).tobytes(), "lat": array("d", [0.1, 0.2]).tobytes()}
    second = {"due": array("d", [3.0]).tobytes(), "lat": array("d", [0.3]).tobytes()}

    assert due_and_latency([first, second]) == [(1.0, 0.1), (2.0, 0.2), (3.0, 0.3)]
