"""Garbage collector tuning: the young threshold is the setting's, and pauses are timed."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from app.infra.collector import tune
from app.infra.metrics import Metrics


@pytest.fixture
def metrics() -> Iterator[Metrics]:
    before = gc.get_threshold()
    yield Metrics()
    gc.set_threshold(*before)
    gc.unfreeze()


def test_the_young_threshold_is_the_one_given(metrics: Metrics) -> None:
    stop = tune(12_345, metrics.gc_seconds)
    try:
        assert gc.get_threshold()[0] == 12_345
    finally:
        stop()


def test_every_collection_is_timed_by_generation(metrics: Metrics) -> None:
    stop = tune(50_000, metrics.gc_seconds)
    try:
        gc.collect(0)
        gc.collect(2)
    finally:
        stop()

    timed = metrics.gc_seconds.labels(generation="2")._value.get()
    assert timed > 0
    assert metrics.gc_seconds.labels(generation="0")._value.get() > 0


def test_collections_after_stopping_are_not_timed(metrics: Metrics) -> None:
    tune(50_000, metrics.gc_seconds)()
    gc.collect(2)

    assert metrics.gc_seconds.labels(generation="2")._value.get() == 0
