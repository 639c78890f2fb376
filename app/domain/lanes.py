"""Ordered lanes that turn many small writes into few transactions.

A durable commit costs a disk flush (about 0.3 ms here) however many rows it carries. So
writes are queued instead of committed one by one: every key (a room, say) hashes to one
lane, which keeps that key's writes in order, and a lane hands everything waiting in it
to `handle` as one batch. Each caller is answered with its own result or error, once the
batch is done.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import structlog

from app import background
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


class Lanes(Generic[T, R]):
    def __init__(
        self,
        name: str,
        handle: Callable[[list[T]], Awaitable[list[R | ChatError]]],
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

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._run(queue), name=f"{self._name}-lane-{i}")
            for i, queue in enumerate(self._queues)
        ]

    async def stop(self, timeout_s: float = 5.0) -> None:
        """Finish what is queued (bounded), then stop."""
        draining = [asyncio.create_task(q.join()) for q in self._queues]
        if draining:
            await asyncio.wait(draining, timeout=timeout_s)
        await background.stop([*draining, *self._tasks])

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

    async def _run(self, queue: asyncio.Queue[_Job[T, R]]) -> None:
        while True:
            jobs = [await queue.get()]
            while len(jobs) < self._max_batch and not queue.empty():
                jobs.append(queue.get_nowait())
            self._on_batch(len(jobs))
            try:
                if not await self._settle(jobs):
                    jobs += self._refuse_waiting(queue)
            finally:
                for _ in jobs:
                    queue.task_done()

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

    async def _settle(self, jobs: list[_Job[T, R]]) -> bool:
        """Run one batch and answer its callers; False when the store failed it."""
        try:
            results = await self._handle([job.item for job in jobs])
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
