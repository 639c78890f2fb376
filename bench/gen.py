"""The load generator's machinery: lean picows WebSocket connections, and worker processes
driven over pipes, so the generator is neither slow per frame nor stuck on one core.

A worker process holds a share of the connections and runs commands from the parent
(`connect`, `step`, …); each answer carries the worker's own CPU seconds and wall time
for that command, so the parent can tell whether the generator saturated a core.
Times are `time.monotonic()`, which on Linux is one clock for every process, so a
message scheduled in one process can be timed on arrival in another.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import multiprocessing
import time
import traceback
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection as Pipe
from typing import Any

import orjson
from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

from bench.harness import raise_fd_limit
from bench.lateness import Lateness

FrameHandler = Callable[["Conn", dict[str, Any], float], None]
SATURATED = 0.9  # CPU seconds per wall second of one process that count as a full core


class Conn(WSListener):
    """One client connection: frames are parsed with orjson and handed to `on_frame`
    with their arrival time; `hello` is kept apart."""

    def __init__(self, on_frame: FrameHandler, user_id: str, tag: Any = None) -> None:
        super().__init__()
        loop = asyncio.get_running_loop()
        self.on_frame = on_frame
        self.user_id = user_id
        self.tag = tag
        self.transport: WSTransport | None = None
        self.hello: asyncio.Future[dict[str, Any]] = loop.create_future()
        self.gone: asyncio.Future[None] = loop.create_future()
        self.close_code: int | None = None
        self.handshake_s = 0.0

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type == WSMsgType.TEXT:
            now = time.monotonic()
            data = orjson.loads(frame.get_payload_as_memoryview())
            if not self.hello.done() and data.get("type") == "hello":
                self.hello.set_result(data)
                return
            self.on_frame(self, data, now)
        elif frame.msg_type == WSMsgType.CLOSE:
            self.close_code = frame.get_close_code().value
            transport.send_close(frame.get_close_code())
            transport.disconnect()

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        if not self.hello.done():
            self.hello.set_exception(ConnectionError(f"closed before hello ({self.close_code})"))
        if not self.gone.done():
            self.gone.set_result(None)

    @property
    def alive(self) -> bool:
        return self.transport is not None and not self.gone.done()

    def send(self, frame: dict[str, Any]) -> bool:
        if not self.alive:
            return False
        assert self.transport is not None
        self.transport.send(WSMsgType.TEXT, orjson.dumps(frame))
        return True

    def abort(self) -> None:
        """Drop the TCP connection with no close frame, like a lost network."""
        if self.transport is not None:
            self.transport.disconnect(graceful=False)

    def close(self) -> None:
        if self.alive:
            assert self.transport is not None
            self.transport.send_close()
            self.transport.disconnect()


async def open_conn(
    url: str,
    user_id: str,
    token: str,
    on_frame: FrameHandler,
    tag: Any = None,
    timeout_s: float = 15.0,
) -> Conn:
    """Connect with the Authorization header and wait for `hello`; `handshake_s` is the
    time from the TCP connect to `hello`."""
    started = time.monotonic()
    headers = {"Authorization": f"Bearer {token}"}
    _, conn = await ws_connect(
        lambda: Conn(on_frame, user_id, tag),
        url,
        extra_headers=headers,
        websocket_handshake_timeout=timeout_s,
        enable_auto_pong=True,
    )
    assert isinstance(conn, Conn)
    try:
        await asyncio.wait_for(conn.hello, timeout_s)
    except BaseException:
        conn.abort()
        raise
    conn.handshake_s = time.monotonic() - started
    return conn


async def open_many(
    targets: Sequence[tuple[str, str, str, Any]],
    on_frame: FrameHandler,
    concurrency: int = 64,
    retries: int = 3,
) -> tuple[list[Conn | None], int]:
    """Open (url, user_id, token, tag) connections, `concurrency` at a time; returns the
    connections (None where every retry failed) and the count of failed attempts."""
    sem = asyncio.Semaphore(concurrency)
    failures = 0

    async def one(url: str, user_id: str, token: str, tag: Any) -> Conn | None:
        nonlocal failures
        for attempt in range(retries):
            async with sem:
                try:
                    return await open_conn(url, user_id, token, on_frame, tag)
                except (OSError, TimeoutError, ConnectionError, Exception):
                    failures += 1
            await asyncio.sleep(0.2 * (attempt + 1))
        return None

    conns = await asyncio.gather(*(one(*t) for t in targets))
    return list(conns), failures


# ---- worker processes ----------------------------------------------------------------


def _entry(pipe: Pipe, factory: str, spec: dict[str, Any]) -> None:
    raise_fd_limit()
    import uvloop

    module, name = factory.split(":")
    worker_cls = getattr(importlib.import_module(module), name)
    uvloop.run(_serve(pipe, worker_cls, spec))


async def _serve(pipe: Pipe, worker_cls: Any, spec: dict[str, Any]) -> None:
    loop = asyncio.get_running_loop()
    lateness = Lateness()
    worker = worker_cls(spec)
    while True:
        command, args = await loop.run_in_executor(None, pipe.recv)
        if command == "exit":
            with contextlib.suppress(Exception):
                await worker.cmd_close()
            pipe.send({})
            return
        cpu, wall = time.process_time(), time.monotonic()
        try:
            result = await getattr(worker, f"cmd_{command}")(**args)
        except Exception:
            result = {"error": traceback.format_exc()}
        result["gen_cpu_s"] = time.process_time() - cpu
        result["gen_wall_s"] = time.monotonic() - wall
        result["gen_late_ms"] = lateness.take()
        pipe.send(result)


class Pool:
    """Worker processes of one class (`module:Class`), one spec each."""

    def __init__(self, factory: str, specs: Sequence[dict[str, Any]]) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._pipes: list[Pipe] = []
        self._procs: list[Any] = []
        for spec in specs:
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=_entry, args=(child, factory, spec), daemon=True)
            proc.start()
            self._pipes.append(parent)
            self._procs.append(proc)

    def __len__(self) -> int:
        return len(self._pipes)

    @property
    def pids(self) -> list[int]:
        return [proc.pid for proc in self._procs]

    async def call(
        self, command: str, args: dict[str, Any] | Sequence[dict[str, Any]] | None = None
    ) -> list[dict[str, Any]]:
        """Run a command in every worker at once (the same args, or one dict each)."""
        per_worker = [args or {}] * len(self) if not isinstance(args, Sequence) else args
        for pipe, arg in zip(self._pipes, per_worker, strict=True):
            pipe.send((command, arg))
        results: list[dict[str, Any]] = list(
            await asyncio.gather(*(asyncio.to_thread(pipe.recv) for pipe in self._pipes))
        )
        for result in results:
            if "error" in result:
                raise RuntimeError(f"worker failed in {command}:\n{result['error']}")
        return results

    def close(self) -> None:
        for pipe in self._pipes:
            with contextlib.suppress(Exception):
                pipe.send(("exit", {}))
        for pipe in self._pipes:
            with contextlib.suppress(Exception):
                if pipe.poll(10):
                    pipe.recv()
        for proc in self._procs:
            proc.join(5)
            if proc.is_alive():
                proc.terminate()
                proc.join(5)


def generator_figures(results: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The generator's own CPU over one command, and whether any process saturated."""
    cpu = sum(r["gen_cpu_s"] for r in results)
    busiest = max((r["gen_cpu_s"] / r["gen_wall_s"] for r in results if r["gen_wall_s"]), default=0)
    return {
        "gen_cpu_s": round(cpu, 3),
        "gen_busiest_core": round(busiest, 2),
        "gen_saturated": busiest >= SATURATED,
        "gen_loop_late_max_ms": round(max(r.get("gen_late_ms", 0.0) for r in results), 1),
    }
