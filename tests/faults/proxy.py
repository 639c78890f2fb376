"""A small TCP fault proxy for the fault tests: a store reached through it can be slowed,
stalled or cut off at runtime, while the test goes on talking to the service.

The proxy runs its own asyncio loop in a daemon thread, so it keeps relaying while the test
process blocks (a synchronous `Instance.start()` polling for readiness, a Redis restart).
Its control methods are synchronous, thread-safe and bounded; each returns once the new
mode is in force.

Modes:

- ``pass``: relay both ways.
- ``delay(ms)``: relay both ways, each chunk held back ``ms`` milliseconds (order kept).
- ``blackhole``: accept and hold every connection, forward nothing, keep every socket open,
  like a network that silently drops every packet (no FIN, no RST). What arrives is
  dropped; a connection that lost bytes this way has a corrupt stream, so it is reset when
  the mode changes again (a real peer would have timed it out by then anyway).
- ``reset``: every open connection is closed with an RST at once, and new connections are
  refused (the listening socket is closed; the same port is listened on again afterwards).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import socket
import struct
import threading
from collections.abc import Coroutine
from dataclasses import dataclass
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

T = TypeVar("T")

CHUNK = 65536
CONTROL_TIMEOUT_S = 5.0
CONNECT_TIMEOUT_S = 3.0


class Mode(enum.Enum):
    PASS = "pass"
    DELAY = "delay"
    BLACKHOLE = "blackhole"
    RESET = "reset"


@dataclass
class ProxyStats:
    """Counters since start, for reports."""

    accepted: int = 0
    resets: int = 0
    upstream_failures: int = 0
    bytes_relayed: int = 0
    bytes_dropped: int = 0


def _rst_socket(sock: socket.socket) -> None:
    """Close a plain socket with an RST."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def _rst(writer: asyncio.StreamWriter) -> None:
    """Close with an RST (SO_LINGER 0), not a FIN, and without flushing."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class _Link:
    """One proxied connection: the client side, the upstream side, a pump each way."""

    def __init__(
        self, proxy: FaultProxy, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter
    ) -> None:
        self.proxy = proxy
        self.client_r = client_r
        self.client_w = client_w
        self.upstream_w: asyncio.StreamWriter | None = None
        # Set once bytes were dropped: the stream is corrupt and must not carry on.
        self.poisoned = False
        self.tasks: set[asyncio.Task[None]] = set()
        self.done = asyncio.Event()

    async def run(self) -> None:
        try:
            if self.proxy.mode is Mode.RESET:  # accepted just before the listener closed
                self.proxy.stats.resets += 1
                _rst(self.client_w)
                return
            if self.proxy.mode is Mode.BLACKHOLE:
                # Accepted and held: nothing goes upstream, whatever the client says is lost.
                self.poisoned = True
                await self._swallow(self.client_r)
                return
            try:
                upstream_r, upstream_w = await asyncio.wait_for(
                    asyncio.open_connection(self.proxy.target_host, self.proxy.target_port),
                    CONNECT_TIMEOUT_S,
                )
            except (OSError, TimeoutError):
                self.proxy.stats.upstream_failures += 1
                _rst(self.client_w)  # the target is down: so is the proxied connection
                return
            self.upstream_w = upstream_w
            for source, sink in ((self.client_r, upstream_w), (upstream_r, self.client_w)):
                task = asyncio.create_task(self._pump(source, sink))
                self.tasks.add(task)
            await self.done.wait()
        finally:
            self.close()

    async def _swallow(self, source: asyncio.StreamReader) -> None:
        with contextlib.suppress(OSError):
            while data := await source.read(CHUNK):
                self.proxy.stats.bytes_dropped += len(data)

    async def _pump(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        """Read chunks, hold each until due (delay mode), write them on in order."""
        queue: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue()
        loop = asyncio.get_running_loop()

        async def read() -> None:
            with contextlib.suppress(OSError):
                while data := await source.read(CHUNK):
                    if self.proxy.mode is Mode.BLACKHOLE:
                        self.poisoned = True
                        self.proxy.stats.bytes_dropped += len(data)
                        continue
                    queue.put_nowait((loop.time() + self.proxy.delay_s, data))
            queue.put_nowait(None)

        reader = asyncio.create_task(read())
        try:
            while (item := await queue.get()) is not None:
                due, data = item
                if (wait := due - loop.time()) > 0:
                    await asyncio.sleep(wait)
                if self.proxy.mode is Mode.BLACKHOLE:  # went dark while it was in flight
                    self.poisoned = True
                    self.proxy.stats.bytes_dropped += len(data)
                    continue
                sink.write(data)
                await sink.drain()
                self.proxy.stats.bytes_relayed += len(data)
        except OSError:
            pass
        finally:
            reader.cancel()
            self.done.set()  # one side ended: the whole link ends

    def reset(self) -> None:
        self.proxy.stats.resets += 1
        for writer in (self.client_w, self.upstream_w):
            if writer is not None:
                _rst(writer)
        self.done.set()

    def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        for writer in (self.client_w, self.upstream_w):
            if writer is not None:
                writer.close()
        self.done.set()


class FaultProxy:
    """TCP proxy on 127.0.0.1 (a free port unless given) to target_host:target_port.

    Use as a context manager, or call `start()` and `close()`.
    """

    def __init__(
        self, target_host: str, target_port: int, *, name: str = "proxy", port: int = 0
    ) -> None:
        self.target_host = target_host
        self.target_port = target_port
        self.name = name
        self.port = port
        self.mode = Mode.PASS
        self.delay_s = 0.0
        self.stats = ProxyStats()
        self._links: set[_Link] = set()
        self._listener: socket.socket | None = None
        self._serving: set[asyncio.Task[None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    # ---- lifecycle ----------------------------------------------------------------

    def start(self) -> FaultProxy:
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._thread = threading.Thread(
            target=loop.run_forever, name=f"fault-proxy-{self.name}", daemon=True
        )
        self._thread.start()
        self._call(self._listen())
        return self

    def close(self) -> None:
        """Reset every connection, stop listening, end the thread (bounded)."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        with contextlib.suppress(Exception):
            self._call(self._shutdown())
        loop.call_soon_threadsafe(loop.stop)
        thread.join(CONTROL_TIMEOUT_S)
        if not thread.is_alive():
            loop.close()
        self._loop = self._thread = None

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # ---- control (thread-safe, bounded) ------------------------------------------

    @property
    def address(self) -> tuple[str, int]:
        return "127.0.0.1", self.port

    @property
    def open_connections(self) -> int:
        return len(self._links)

    def pass_through(self) -> None:
        self._call(self._switch(Mode.PASS, 0.0))

    def delay(self, ms: float) -> None:
        self._call(self._switch(Mode.DELAY, ms / 1000))

    def blackhole(self) -> None:
        self._call(self._switch(Mode.BLACKHOLE, 0.0))

    def reset(self) -> None:
        self._call(self._switch(Mode.RESET, 0.0))

    def url_for(self, url: str) -> str:
        """url with its host:port replaced by this proxy's (user info, path, query kept)."""
        return via(url, self.port)

    # ---- inside the proxy's loop -------------------------------------------------

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        if self._loop is None:
            coro.close()
            raise RuntimeError(f"proxy {self.name} is not running")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(CONTROL_TIMEOUT_S)

    async def _listen(self) -> None:
        """Listen on 127.0.0.1:port, accepting in a reader callback of our own: unlike
        `asyncio.Server`, whose close can drop a connection it accepted but has not
        handed over yet, every accepted socket is then either served or reset."""
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(128)
        listener.setblocking(False)
        self.port = listener.getsockname()[1]
        self._listener = listener
        asyncio.get_running_loop().add_reader(listener.fileno(), self._accept_ready)

    def _accept_ready(self) -> None:
        while self._listener is not None:
            try:
                conn, _ = self._listener.accept()
            except OSError:  # BlockingIOError: nothing more to accept
                return
            if self.mode is Mode.RESET:
                _rst_socket(conn)
                self.stats.resets += 1
                continue
            conn.setblocking(False)
            task = asyncio.get_running_loop().create_task(self._serve(conn))
            self._serving.add(task)
            task.add_done_callback(self._serving.discard)

    async def _stop_listening(self) -> None:
        listener, self._listener = self._listener, None
        if listener is None:
            return
        asyncio.get_running_loop().remove_reader(listener.fileno())
        # Connections the kernel completed but nobody accepted yet: reset them too (closing
        # a listener does not, here).
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                break
            _rst_socket(conn)
            self.stats.resets += 1
        listener.close()

    async def _switch(self, mode: Mode, delay_s: float) -> None:
        previous, self.mode, self.delay_s = self.mode, mode, delay_s
        if mode is Mode.RESET:
            await self._stop_listening()
            for link in list(self._links):
                link.reset()
            return
        if previous is Mode.BLACKHOLE and mode is not Mode.BLACKHOLE:
            for link in list(self._links):
                if link.poisoned:
                    link.reset()
        if self._listener is None:
            await self._listen()

    async def _serve(self, conn: socket.socket) -> None:
        self.stats.accepted += 1
        try:
            reader, writer = await asyncio.open_connection(sock=conn)
        except OSError:
            conn.close()
            return
        link = _Link(self, reader, writer)
        self._links.add(link)
        try:
            await link.run()
        finally:
            self._links.discard(link)

    async def _shutdown(self) -> None:
        await self._stop_listening()
        for link in list(self._links):
            link.reset()
        for task in list(self._serving):
            task.cancel()
        await asyncio.gather(*self._serving, return_exceptions=True)


def via(url: str, port: int, host: str = "127.0.0.1") -> str:
    """url with its host and port replaced (user info, scheme, path and query kept)."""
    parts = urlsplit(url)
    userinfo = parts.netloc.rpartition("@")[0]
    netloc = f"{userinfo}@{host}:{port}" if userinfo else f"{host}:{port}"
    return urlunsplit(parts._replace(netloc=netloc))


def target_of(url: str) -> tuple[str, int]:
    """(host, port) a store URL points at."""
    parts = urlsplit(url)
    if parts.hostname is None or parts.port is None:
        raise ValueError(f"{url!r} names no host:port")
    return parts.hostname, parts.port
