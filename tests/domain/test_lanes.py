"""Write lanes: batches, and the next batch's statement started while the last is answered."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from app.domain.lanes import Lanes, Turn
from app.errors import ChatError, Unavailable

WAIT_S = 2.0


class Store:
    """A stand-in handler: each batch "runs its statement" until the test releases it,
    reports it stored, then is answered; what happened is logged in order."""

    def __init__(self, *, report_stored: bool = True) -> None:
        self.report_stored = report_stored
        self.log: list[str] = []
        self.release: dict[int, asyncio.Event] = {}
        self.batches: list[list[int]] = []

    def statement_done(self, batch: int) -> None:
        self.release.setdefault(batch, asyncio.Event()).set()

    async def handle(self, items: list[int], turn: Turn) -> list[int | ChatError]:
        batch = len(self.batches)
        self.batches.append(items)
        self.log.append(f"sent {batch}")
        await self.release.setdefault(batch, asyncio.Event()).wait()
        if self.report_stored:
            await turn.stored()
        else:
            await turn.in_turn()
        self.log.append(f"answered {batch}")
        return [item * 10 for item in items]


async def _until(condition: Callable[[], bool]) -> None:
    async def poll() -> None:
        while not condition():  # noqa: ASYNC110 (the log of a stand-in handler)
            await asyncio.sleep(0.001)

    await asyncio.wait_for(poll(), WAIT_S)


def _first_batch_held(
    store: Store, gate: asyncio.Event
) -> Callable[[list[int], Turn], Awaitable[list[int | ChatError]]]:
    """`store.handle`, except that batch 0, once stored, finishes answering only when
    `gate` is set (a slow publish, say)."""

    async def handle(items: list[int], turn: Turn) -> list[int | ChatError]:
        result = await store.handle(items, turn)
        if items == [1]:
            await gate.wait()
            store.log.append("batch 0 done")
        return result

    return handle


async def _second_batch_sent(lanes: Lanes[int, int], store: Store) -> None:
    """Batch 0 ([1]) stored, and batch 1 ([2]) started early."""
    lanes.enqueue("k", 1)
    await _until(lambda: store.log == ["sent 0"])
    lanes.enqueue("k", 2)
    store.statement_done(0)
    await _until(lambda: "sent 1" in store.log)


def _lane(store: Store) -> Lanes[int, int]:
    return Lanes("test", store.handle, lanes=1)


async def _running(lanes: Lanes[int, int], body: Callable[[], Awaitable[None]]) -> None:
    lanes.start()
    try:
        await body()
    finally:
        await lanes.stop(timeout_s=WAIT_S)


async def test_everything_waiting_goes_as_one_batch_and_each_caller_gets_its_answer() -> None:
    store = Store()
    lanes = _lane(store)

    async def body() -> None:
        first = lanes.enqueue("k", 1)
        await _until(lambda: store.log == ["sent 0"])
        waiting = [lanes.enqueue("k", n) for n in (2, 3, 4)]
        store.statement_done(0)
        store.statement_done(1)
        assert await asyncio.wait_for(first, WAIT_S) == 10
        assert await asyncio.wait_for(asyncio.gather(*waiting), WAIT_S) == [20, 30, 40]
        assert store.batches == [[1], [2, 3, 4]]

    await _running(lanes, body)


async def test_the_next_statement_is_sent_before_the_stored_batch_is_answered() -> None:
    store = Store()
    lanes = _lane(store)

    async def body() -> None:
        lanes.enqueue("k", 1)
        await _until(lambda: store.log == ["sent 0"])
        later = lanes.enqueue("k", 2)
        store.statement_done(0)
        await _until(lambda: len(store.log) == 3)
        assert store.log == ["sent 0", "sent 1", "answered 0"]
        store.statement_done(1)
        assert await asyncio.wait_for(later, WAIT_S) == 20

    await _running(lanes, body)


async def test_a_batch_stored_first_is_answered_after_the_one_before_it() -> None:
    store = Store()
    gate = asyncio.Event()
    lanes = Lanes("test", _first_batch_held(store, gate), lanes=1)

    async def body() -> None:
        await _second_batch_sent(lanes, store)
        store.statement_done(1)
        await _until(lambda: "answered 0" in store.log and "sent 1" in store.log)
        await asyncio.sleep(0.05)
        assert "answered 1" not in store.log
        gate.set()
        await _until(lambda: "answered 1" in store.log)
        assert store.log.index("batch 0 done") < store.log.index("answered 1")

    await _running(lanes, body)


async def test_no_more_than_two_batches_are_in_flight() -> None:
    store = Store()
    gate = asyncio.Event()
    lanes = Lanes("test", _first_batch_held(store, gate), lanes=1)

    async def body() -> None:
        await _second_batch_sent(lanes, store)
        lanes.enqueue("k", 3)
        store.statement_done(1)  # batch 1 stored while batch 0 is still answering
        await asyncio.sleep(0.05)
        assert "sent 2" not in store.log
        gate.set()
        store.statement_done(2)
        await _until(lambda: "answered 2" in store.log)

    await _running(lanes, body)


async def test_a_handler_that_never_reports_stored_runs_one_batch_at_a_time() -> None:
    store = Store(report_stored=False)
    lanes = _lane(store)

    async def body() -> None:
        lanes.enqueue("k", 1)
        await _until(lambda: store.log == ["sent 0"])
        later = lanes.enqueue("k", 2)
        await asyncio.sleep(0.02)
        store.statement_done(0)
        store.statement_done(1)
        assert await asyncio.wait_for(later, WAIT_S) == 20
        assert store.log == ["sent 0", "answered 0", "sent 1", "answered 1"]

    await _running(lanes, body)


async def test_a_failed_batch_answers_unavailable_and_refuses_what_waited() -> None:
    started = asyncio.Event()
    release = asyncio.Event()

    async def failing(items: list[int], turn: Turn) -> list[int | ChatError]:
        started.set()
        await release.wait()
        raise ConnectionError("the store went away")

    lanes: Lanes[int, int] = Lanes("test", failing, lanes=1)

    async def body() -> None:
        first = lanes.enqueue("k", 1)
        await asyncio.wait_for(started.wait(), WAIT_S)
        waiting = lanes.enqueue("k", 2)
        release.set()
        for answer in (first, waiting):
            with pytest.raises(Unavailable):
                await asyncio.wait_for(answer, WAIT_S)

    await _running(lanes, body)


async def test_a_timeout_that_expires_in_a_batch_fails_the_batch_not_the_lane() -> None:
    # A store that times out where the batch's first step set its bound (asyncpg does
    # so while it connects): the lane that started the batch must live on.
    async def timing_out(items: list[int], turn: Turn) -> list[int | ChatError]:
        if items == [1]:
            async with asyncio.timeout(0.01):
                await asyncio.sleep(WAIT_S)
        return [item * 10 for item in items]

    lanes: Lanes[int, int] = Lanes("test", timing_out, lanes=1)

    async def body() -> None:
        with pytest.raises(Unavailable):
            await asyncio.wait_for(lanes.enqueue("k", 1), WAIT_S)
        assert await asyncio.wait_for(lanes.enqueue("k", 2), WAIT_S) == 20

    await _running(lanes, body)
