"""Fault tests: two real instances whose stores can be killed, stalled or cut off.

The cluster (created once for the fault tests, torn down when they end):

- a dedicated embedded Redis in its own temporary directory, on a fixed port so that a
  kill -9 and a restart keep every URL valid;
- the shared test PostgreSQL (`stores.database_url`), reached by the instances through a
  `FaultProxy` (the test process itself reads PostgreSQL directly, so it can check what
  was stored while the instances cannot reach it);
- per instance, a `FaultProxy` to the Redis, so one instance's link can be stalled alone;
- two `chat serve` processes, `a` and `b`, with the default heartbeat (a 1 s heartbeat,
  whose keepalive gives up on a peer after 1 s, cuts healthy sockets off whenever a
  1,000-message burst holds a loop up that long on a small machine); a module that needs
  a short heartbeat launches instances of its own with `FaultCluster.launch`.

`ChatClient` behaves like a real app: it keeps every message per room by seq (dropping
duplicates), a per-room cursor (the highest seq up to which it holds everything), and on
a `resync` push or a reconnect it sends `sync` with its cursors and applies the replay.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from app.infra.embedded import EmbeddedRedis
from tests.cluster import Instance, free_port, terminate
from tests.faults.proxy import FaultProxy, target_of
from tests.support import Stores, auth, token_for

# For the instances a module launches to test heartbeat-driven behaviour.
SHORT_HEARTBEAT_S = 1.0
# Above anything a test sends, so only faults (never rate limits) refuse a frame.
FRAMES_PER_S = 1000
# No answer to a frame within this long counts as "silently dropped".
ANSWER_TIMEOUT_S = 15.0
READY_TIMEOUT_S = 20.0


# ---- the cluster --------------------------------------------------------------------


@dataclass
class FaultCluster:
    stores: Stores
    redis: EmbeddedRedis
    redis_port: int
    pg_proxy: FaultProxy
    redis_proxies: dict[str, FaultProxy]
    instances: dict[str, Instance]
    log_dir: Path

    @property
    def a(self) -> Instance:
        return self.instances["a"]

    @property
    def b(self) -> Instance:
        return self.instances["b"]

    def launch(self, name: str, **settings: str) -> Instance:
        """A `chat serve` on PostgreSQL (through the proxy) and Redis (through a proxy of
        its own), started and ready."""
        proxy = FaultProxy("127.0.0.1", self.redis_port, name=f"redis-{name}").start()
        self.redis_proxies[name] = proxy
        own = Stores(
            database_url=self.pg_proxy.url_for(self.stores.database_url),
            redis_url=proxy.url_for(f"redis://127.0.0.1:{self.redis_port}/0"),
            data_dir=self.log_dir,
        )
        instance = Instance(
            name, own, self.log_dir, frames_per_s=str(FRAMES_PER_S), log_level="INFO", **settings
        )
        self.instances[name] = instance
        instance.start()
        return instance

    def retire(self, name: str) -> None:
        """Stop an instance and its Redis proxy (bounded), as `close` does for all."""
        instance = self.instances.pop(name, None)
        if instance is not None:
            with contextlib.suppress(Exception):
                terminate(instance)
        proxy = self.redis_proxies.pop(name, None)
        if proxy is not None:
            with contextlib.suppress(Exception):
                proxy.close()

    def close(self) -> None:
        for name in list(self.instances):
            self.retire(name)
        for proxy in [*self.redis_proxies.values(), self.pg_proxy]:
            with contextlib.suppress(Exception):
                proxy.close()
        with contextlib.suppress(Exception):
            self.redis.kill()

    def kill_redis(self) -> None:
        """kill -9: no shutdown, no FIN from a clean close; data (none kept) lost."""
        self.redis.kill()

    def start_redis(self) -> None:
        """A fresh Redis on the same port; returns once it answers PING."""
        self.redis.start()

    async def heal(self) -> None:
        """Every proxy passing, Redis up, both instances ready: the state tests start in."""
        self.pg_proxy.pass_through()
        for proxy in self.redis_proxies.values():
            proxy.pass_through()
        await asyncio.to_thread(self.redis.start)
        for instance in self.instances.values():
            await wait_ready(instance, READY_TIMEOUT_S)


async def readyz(instance: Instance, timeout_s: float = 5.0) -> tuple[int, dict[str, Any]]:
    """(status, body) of GET /readyz; (0, {}) when the instance does not answer in time."""
    try:
        async with _http(timeout_s) as http:
            resp = await http.get(f"{instance.http}/readyz")
    except httpx.HTTPError:
        return 0, {}
    body: dict[str, Any] = resp.json()
    return resp.status_code, body


async def wait_ready(instance: Instance, timeout_s: float) -> float:
    """Seconds until /readyz says 200; fails the test past timeout_s."""
    started = time.monotonic()
    last: tuple[int, dict[str, Any]] = (0, {})
    while time.monotonic() - started < timeout_s:
        last = await readyz(instance, 2.0)
        if last[0] == 200:
            return time.monotonic() - started
        await asyncio.sleep(0.1)
    raise AssertionError(f"{instance.name} not ready after {timeout_s}s: {last}")


@pytest.fixture(scope="session")
def fault_cluster(
    stores: Stores, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[FaultCluster]:
    log_dir = tmp_path_factory.mktemp("faults")
    redis_port = free_port()
    redis = EmbeddedRedis(log_dir / "redis-data", port=redis_port)
    pg_proxy = FaultProxy(*target_of(stores.database_url), name="pg")
    cluster = FaultCluster(stores, redis, redis_port, pg_proxy, {}, {}, log_dir)
    try:
        redis.start()
        pg_proxy.start()
        cluster.launch("a")
        cluster.launch("b")
        yield cluster
    finally:
        cluster.close()


@pytest.fixture
async def cluster(fault_cluster: FaultCluster) -> AsyncIterator[FaultCluster]:
    """The fault cluster, healed before and after each use."""
    await fault_cluster.heal()
    try:
        yield fault_cluster
    finally:
        await fault_cluster.heal()


# ---- REST helpers -------------------------------------------------------------------


def _http(timeout_s: float) -> httpx.AsyncClient:
    """A client for plain http on 127.0.0.1. No TLS context: building one (CA bundle)
    blocks the loop ~30 ms, and a burst of them starves every WebSocket client of the
    test process past the server's keepalive."""
    return httpx.AsyncClient(timeout=timeout_s, verify=False)  # noqa: S501


async def rest(
    instance: Instance,
    user_id: str,
    method: str,
    path: str,
    json: Any = None,
    timeout_s: float = ANSWER_TIMEOUT_S,
) -> httpx.Response:
    async with _http(timeout_s) as http:
        return await http.request(
            method, f"{instance.http}{path}", json=json, headers=auth(user_id)
        )


async def new_group(instance: Instance, owner: str, members: Iterable[str]) -> str:
    resp = await rest(
        instance, owner, "POST", "/v1/rooms", {"name": "faults", "member_ids": list(members)}
    )
    assert resp.status_code == 201, resp.text
    room_id: str = resp.json()["id"]
    return room_id


# ---- PostgreSQL, read directly (never through the proxy) ----------------------------


def _dsn(database_url: str) -> str:
    return database_url.replace("postgresql+asyncpg://", "postgresql://", 1)


async def stored_messages(stores: Stores, room_ids: Iterable[str]) -> dict[str, dict[int, str]]:
    """{room_id: {seq: message id}} as PostgreSQL holds them."""
    ids = [uuid.UUID(r) for r in room_ids]
    conn = await asyncpg.connect(_dsn(stores.database_url), timeout=10)
    try:
        rows = await conn.fetch(
            "SELECT room_id, seq, id FROM messages WHERE room_id = ANY($1::uuid[])", ids
        )
    finally:
        await conn.close()
    out: dict[str, dict[int, str]] = {str(r): {} for r in ids}
    for row in rows:
        out[str(row["room_id"])][int(row["seq"])] = str(row["id"])
    return out


async def stored_client_ids(stores: Stores, room_ids: Iterable[str]) -> set[str]:
    """The client_msg_id of every message PostgreSQL holds in these rooms."""
    ids = [uuid.UUID(r) for r in room_ids]
    conn = await asyncpg.connect(_dsn(stores.database_url), timeout=10)
    try:
        rows = await conn.fetch(
            "SELECT client_msg_id FROM messages WHERE room_id = ANY($1::uuid[])", ids
        )
    finally:
        await conn.close()
    return {str(row["client_msg_id"]) for row in rows}


async def stored_by_client_id(stores: Stores, sender_id: str, client_msg_id: str) -> int:
    conn = await asyncpg.connect(_dsn(stores.database_url), timeout=10)
    try:
        count: int = await conn.fetchval(
            "SELECT count(*) FROM messages WHERE sender_id = $1 AND client_msg_id = $2",
            sender_id,
            uuid.UUID(client_msg_id),
        )
    finally:
        await conn.close()
    return count


# ---- a client that behaves like a real one ------------------------------------------


@dataclass
class Outcome:
    """What became of one frame: an ack, an error frame, or the socket closing first."""

    kind: str  # "ack" | "error" | "pong" | "closed" (socket gone) | "timeout" (no answer)
    sent_at: float
    answered_at: float
    frame: dict[str, Any] = field(default_factory=dict)
    client_msg_id: str | None = None  # of a `send`

    @property
    def latency_s(self) -> float:
        return self.answered_at - self.sent_at

    @property
    def code(self) -> str | None:
        code = self.frame.get("code")
        return str(code) if code is not None else None

    @property
    def message(self) -> dict[str, Any]:
        message: dict[str, Any] = self.frame["data"]["message"]
        return message


class ChatClient:
    """One device of one user on one instance, reading every frame as it arrives."""

    def __init__(self, instance: Instance, user_id: str, room_ids: Iterable[str]) -> None:
        self.instance = instance
        self.user_id = user_id
        self.held: dict[str, dict[int, dict[str, Any]]] = {r: {} for r in room_ids}
        self.cursors: dict[str, int] = dict.fromkeys(self.held, 0)
        self.duplicates = 0
        self.conflicts: list[tuple[dict[str, Any], dict[str, Any]]] = []
        self.resyncs: list[float] = []  # monotonic times of `resync` pushes
        self.syncs = 0
        self.reconnects = 0
        self.closes: list[int | None] = []
        self.pushes: list[dict[str, Any]] = []  # every frame without an id, in order
        self._ws: ClientConnection | None = None
        self._pending: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._counter = 0
        self._closing = False
        self._sync_wanted = asyncio.Event()
        self._online = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> ChatClient:
        await self._connect()
        self._tasks = [
            asyncio.create_task(self._read(), name=f"client-{self.user_id}"),
            asyncio.create_task(self._syncer(), name=f"sync-{self.user_id}"),
        ]
        return self

    async def close(self) -> None:
        self._closing = True
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._ws is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(3):
                    await self._ws.close()

    # ---- state ----------------------------------------------------------------

    def apply(self, message: dict[str, Any]) -> None:
        room = self.held.get(message["room_id"])
        if room is None:
            return
        seq = int(message["seq"])
        known = room.get(seq)
        if known is not None:
            if known["id"] != message["id"]:
                self.conflicts.append((known, message))
            else:
                self.duplicates += 1
            return
        room[seq] = message
        cursor = self.cursors[message["room_id"]]
        while cursor + 1 in room:
            cursor += 1
        self.cursors[message["room_id"]] = cursor

    def view(self) -> dict[str, dict[int, str]]:
        """{room_id: {seq: id}} of what this client holds."""
        return {r: {s: m["id"] for s, m in msgs.items()} for r, msgs in self.held.items()}

    # ---- frames -----------------------------------------------------------------

    async def request(self, frame: dict[str, Any], timeout_s: float = ANSWER_TIMEOUT_S) -> Outcome:
        """Send a frame with a fresh id and wait (bounded) for its answer."""
        self._counter += 1
        frame_id = f"{self.user_id[-6:]}-{self._counter}"
        frame = {**frame, "id": frame_id}
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[frame_id] = future
        sent_at = time.monotonic()
        try:
            ws = self._ws
            if ws is None or not self._online.is_set():
                return Outcome("closed", sent_at, time.monotonic())
            await ws.send(orjson.dumps(frame).decode())
            async with asyncio.timeout(timeout_s):
                answer = await future
        except (ConnectionClosed, _SocketGone):
            return Outcome("closed", sent_at, time.monotonic())
        except TimeoutError:
            return Outcome("timeout", sent_at, time.monotonic(), frame)
        finally:
            self._pending.pop(frame_id, None)
        return Outcome(str(answer["type"]), sent_at, time.monotonic(), answer)

    async def send_text(self, room_id: str, body: str, client_msg_id: str | None = None) -> Outcome:
        client_msg_id = client_msg_id or str(uuid.uuid4())
        outcome = await self.request(
            {
                "type": "send",
                "room_id": room_id,
                "client_msg_id": client_msg_id,
                "kind": "text",
                "body": body,
            }
        )
        outcome.client_msg_id = client_msg_id
        if outcome.kind == "ack":
            self.apply(outcome.message)  # a real client shows its own message from the ack
        return outcome

    async def ping(self, timeout_s: float = ANSWER_TIMEOUT_S) -> Outcome:
        return await self.request({"type": "ping"}, timeout_s)

    async def sync(self) -> None:
        """Replay everything after the cursors, page by page, until nothing is left."""
        for _ in range(100):
            outcome = await self.request({"type": "sync", "cursors": dict(self.cursors)})
            if outcome.kind != "ack":
                raise _SyncFailed(outcome)
            self.syncs += 1
            rooms: dict[str, dict[str, Any]] = outcome.frame["data"]["rooms"]
            if not any(r["has_more"] for r in rooms.values()):
                return

    async def wait_online(self, timeout_s: float) -> None:
        async with asyncio.timeout(timeout_s):
            await self._online.wait()

    # ---- inside ---------------------------------------------------------------------

    async def _connect(self) -> None:
        headers = {"Authorization": f"Bearer {token_for(self.user_id)}"}
        ws = await connect(self.instance.ws, additional_headers=headers, open_timeout=5)
        async with asyncio.timeout(5):
            hello = orjson.loads(await ws.recv())
        assert hello["type"] == "hello", hello
        self._ws = ws
        self._online.set()

    async def _read(self) -> None:
        while not self._closing:
            ws = self._ws
            assert ws is not None
            try:
                async for raw in ws:
                    self._on_frame(orjson.loads(raw))
            except ConnectionClosed:
                pass
            self._online.clear()
            self.closes.append(ws.close_code)
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(_SocketGone())
            if self._closing:
                return
            await self._reconnect()

    async def _reconnect(self) -> None:
        """Back after a lost socket, as an app would: connect again, then sync."""
        for attempt in range(100):
            await asyncio.sleep(min(0.1 * (attempt + 1), 1.0))
            try:
                await self._connect()
            except (OSError, TimeoutError, InvalidHandshake, ConnectionClosed, AssertionError):
                continue
            self.reconnects += 1
            self._sync_wanted.set()
            return
        raise RuntimeError(f"{self.user_id} could not reconnect")

    def _on_frame(self, frame: dict[str, Any]) -> None:
        frame_id = frame.get("id")
        if frame_id is not None and frame_id in self._pending:
            future = self._pending[frame_id]
            if not future.done():
                future.set_result(frame)
            return
        self.pushes.append(frame)
        kind = frame.get("type")
        if kind in ("message", "message.updated"):
            self.apply(frame["message"])
        elif kind == "resync":
            self.resyncs.append(time.monotonic())
            self._sync_wanted.set()

    async def _syncer(self) -> None:
        while True:
            await self._sync_wanted.wait()
            self._sync_wanted.clear()  # a resync during this sync asks for another one
            try:
                await self.sync()
            except _SyncFailed:
                await asyncio.sleep(0.2)
                self._sync_wanted.set()


class _SocketGone(Exception):
    """The socket closed before the frame was answered."""


class _SyncFailed(Exception):
    def __init__(self, outcome: Outcome) -> None:
        super().__init__(f"sync failed: {outcome}")
        self.outcome = outcome


async def open_clients(
    specs: Iterable[tuple[Instance, str, Iterable[str]]],
) -> list[ChatClient]:
    """Clients connected at once; every one is closed if any fails to open."""
    clients = [ChatClient(instance, user, rooms) for instance, user, rooms in specs]
    try:
        await asyncio.gather(*(c.start() for c in clients))
    except BaseException:
        await close_clients(clients)
        raise
    return clients


async def close_clients(clients: Iterable[ChatClient]) -> None:
    await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)


async def wait_until(
    predicate: Callable[[], bool], timeout_s: float, every_s: float = 0.05
) -> float | None:
    """Seconds until predicate() holds (polled); None if it did not within timeout_s."""
    started = time.monotonic()
    while True:
        if predicate():
            return time.monotonic() - started
        if time.monotonic() - started >= timeout_s:
            return None
        await asyncio.sleep(every_s)


def log_lines(instance: Instance, event: str) -> list[dict[str, Any]]:
    """The instance's JSON log lines for one event name."""
    lines = []
    for line in instance.log().splitlines():
        if event in line:
            with contextlib.suppress(orjson.JSONDecodeError):
                record = orjson.loads(line)
                if isinstance(record, dict) and record.get("event") == event:
                    lines.append(record)
    return lines
