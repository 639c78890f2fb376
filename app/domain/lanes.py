"""Ordered lanes that turn many small writes into few transactions.

A durable commit costs a disk flush (about 0.3 ms here) however many rows it carries. So
writes are queued instead of committed one by one: every key (a room, say) hashes to one
lane, which keeps that key's writes in order, and a lane hands everything waiting in it
to `handle` as one batch. Each caller is answered with its own result or error, once the
batch is done.

A batch's statement and its answering (pushes, acks, the publish) take turns on one
thread: while the lane answers batch N, PostgreSQL would sit idle, and while PostgreSQL
runs the next statement, the lane would. So a handler says when its batch is stored
(`Turn.stored`): the lane sends the next batch's statement at once (`eager.start_now`)
and only then goes on answering this one. Batches are still answered in order: a batch
stored early waits in `Turn.stored` until the one before it is answered.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import structlog

from app import background, eager
from app.errors import ChatError, Unavailable

log = structlog.get_logger(__name__)

T = TypeVar("T")
R = TypeVar("R")

LANES = 4
MAX_BATCH = 128
CAPACITY = 10_000


@dataclass(slots=True)
class _Job(Generic[T, R]):
    item: T
    answer: asyncio.Future[R] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class Turn:
    """A batch's place in its lane, given to the handler with the batch."""

    __slots__ = ("_next", "_previous")

    def __init__(
        self, previous: asyncio.Future[bool] | None, start_next: Callable[[], None]
    ) -> None:
        self._previous = previous
        self._next: Callable[[], None] | None = start_next

    async def stored(self) -> None:
        """The batch's writes are committed: the lane starts the next batch now. Returns
        once the batch before this one has been answered (at once, as a rule)."""
        start_next, self._next = self._next, None
        if start_next is not None:
            start_next()
        await self.in_turn()

    async def in_turn(self) -> None:
        """Returns once the batch before this one has been answered. A handler emits
        nothing before either this or `stored`, so batches are answered in order."""
        if self._previous is not None and not self._previous.done():
            # Its outcome is the lane's to read; this batch only waits for its turn.
            await asyncio.wait([self._previous])


class Lanes(Generic[T, R]):
    def __init__(
        self,
        name: str,
        handle: Callable[[list[T], Turn], Awaitable[list[R | ChatError]]],
        *,
        lanes: int = LANES,
        max_batch: int = MAX_BATCH,
        capacity: int = CAPACITY,
        on_batch: Callable[[int], None] = lambda _: None,
    ) -> None:
        self._name = name
        self._handle = handle
        self._on_batch = on_batch
        self._max_batch = max_batch
        self._queues: list[asyncio.Queue[_Job[T, R]]] = [
            asyncio.Queue(capacity) for _ in range(lanes)
        ]
        self._tasks: list[asyncio.Task[None]] = []
        # Per lane: a batch its running batch started early (see `Turn.stored`).
        self._early: list[tuple[list[_Job[T, R]], asyncio.Future[bool]] | None] = [
            None for _ in range(lanes)
        ]
        self._running: set[asyncio.Task[None]] = set()

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._run(i), name=f"{self._name}-lane-{i}")
            for i in range(len(self._queues))
        ]

    async def stop(self, timeout_s: float = 5.0) -> None:
        """Finish what is queued (bounded), then stop."""
        draining = [asyncio.create_task(q.join()) for q in self._queues]
        if draining:
            await asyncio.wait(draining, timeout=timeout_s)
        await background.stop([*draining, *self._tasks, *self._running])

    async def submit(self, key: Hashable, item: T) -> R:
        return await self.enqueue(key, item)

    def enqueue(self, key: Hashable, item: T) -> asyncio.Future[R]:
        """Queue `item` on its key's lane; the future is its answer. For a caller that
        would rather be called back than keep a task waiting (a WebSocket frame)."""
        job: _Job[T, R] = _Job(item)
        try:
            self._queues[hash(key) % len(self._queues)].put_nowait(job)
        except asyncio.QueueFull:
            raise Unavailable("the service is overloaded; retry shortly") from None
        return job.answer

    async def _run(self, lane: int) -> None:
        queue = self._queues[lane]
        while True:
            early, self._early[lane] = self._early[lane], None
            if early is None:
                jobs = [await queue.get()]
                jobs += self._waiting(queue, self._max_batch - 1)
                running = self._begin(lane, jobs, None)
            else:
                jobs, running = early
            try:
                if not await running:
                    jobs += self._refuse_waiting(queue)
            finally:
                for _ in jobs:
                    queue.task_done()

    def _begin(
        self, lane: int, jobs: list[_Job[T, R]], previous: asyncio.Future[bool] | None
    ) -> asyncio.Future[bool]:
        """Start a batch now, up to its first wait (its statement sent). The future is
        its outcome (False: the store failed it)."""
        self._on_batch(len(jobs))
        finished: asyncio.Future[bool] = asyncio.get_running_loop().create_future()

        def start_next() -> None:
            # At most two batches in flight, one answering and the next in PostgreSQL:
            # the lane takes the one started early only once this one is answered.
            queue = self._queues[lane]
            if self._early[lane] is None and not queue.empty():
                following = self._waiting(queue, self._max_batch)
                self._early[lane] = (following, self._begin(lane, following, finished))

        async def run() -> None:
            try:
                outcome = await self._settle(jobs, Turn(previous, start_next))
            except BaseException:
                finished.cancel()  # only a cancellation gets past `_settle`
                raise
            finished.set_result(outcome)

        started = eager.start_now(run())
        self._running.add(started)
        started.add_done_callback(self._running.discard)
        return finished

    @staticmethod
    def _waiting(queue: asyncio.Queue[_Job[T, R]], most: int) -> list[_Job[T, R]]:
        jobs: list[_Job[T, R]] = []
        while len(jobs) < most and not queue.empty():
            jobs.append(queue.get_nowait())
        return jobs

    def _refuse_waiting(self, queue: asyncio.Queue[_Job[T, R]]) -> list[_Job[T, R]]:
        """The store just failed a batch: what queued behind it is refused at once, rather
        than each waiting out its own timeout. It never ran, so nothing was stored."""
        refused = []
        while not queue.empty():
            job = queue.get_nowait()
            if not job.answer.done():
                job.answer.set_exception(
                    Unavailable("a data store is unavailable; nothing was stored")
                )
            refused.append(job)
        return refused

    async def _settle(self, jobs: list[_Job[T, R]], turn: Turn) -> bool:
        """Run one batch and answer its callers; False when the store failed it."""
        try:
            results = await self._handle([job.item for job in jobs], turn)
        except ChatError as exc:
            results = [exc] * len(jobs)
        except Exception as exc:  # a store failure fails the batch, never the lane
            log.warning(
                "batch_failed",
                lane=self._name,
                error=type(exc).__name__,
                size=len(jobs),
                exc_info=True,
            )
            self._answer(
                jobs, [Unavailable("a data store is unavailable; nothing was stored")] * len(jobs)
            )
            return False
        self._answer(jobs, results)
        return True

    @staticmethod
    def _answer(jobs: list[_Job[T, R]], results: list[R | ChatError]) -> None:
        for job, result in zip(jobs, results, strict=True):
            if job.answer.done():
                continue
            if isinstance(result, ChatError):
                job.answer.set_exception(result)
            else:
                job.answer.set_result(result)
