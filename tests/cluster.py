"""Real server processes for cross-instance tests, and a small WebSocket test client."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
from websockets.asyncio.client import ClientConnection, connect

from tests.support import TEST_SECRET, Stores, auth, token_for

CHAT = str(Path(sys.executable).parent / "chat")
FRAME_TIMEOUT_S = 5.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Instance:
    """One `chat serve` process on the shared test stores."""

    def __init__(self, name: str, stores: Stores, log_dir: Path, **settings: str) -> None:
        self.name = name
        self.port = free_port()
        self.http = f"http://127.0.0.1:{self.port}"
        self.ws = f"ws://127.0.0.1:{self.port}/v1/ws"
        self.log_path = log_dir / f"{name}.log"
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("CHAT_")},
            "CHAT_DATABASE_URL": stores.database_url,
            "CHAT_REDIS_URL": stores.redis_url,
            "CHAT_JWT_SECRET": TEST_SECRET,
            "CHAT_INSTANCE_ID": name,
            "CHAT_DATA_DIR": str(log_dir / name),
            # The suite runs in parallel on a small machine, where an instance's loop can
            # lag for a moment; typing tests assert delivery, which shedding under load
            # (tested on its own in tests/ws/test_typing_shedding.py) would make flaky.
            "CHAT_TYPING_SHED_LAG_MS": "1000",
            **{f"CHAT_{k.upper()}": v for k, v in settings.items()},
        }
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 60) -> None:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [CHAT, "serve", "--port", str(self.port)],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited: {self.log_path.read_text()[-2000:]}")
            try:
                if httpx.get(f"{self.http}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"{self.name} not ready in {timeout_s}s")

    def signal(self, sig: signal.Signals) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


class Client:
    """A WebSocket client that keeps every frame it receives, so tests can wait for one."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.frames: list[dict[str, Any]] = []
        self._seen = 0
        self._counter = 0

    @classmethod
    async def open(cls, url: str, user_id: str, *, name: str | None = None, **kw: Any) -> Client:
        headers = {"Authorization": f"Bearer {token_for(user_id, name)}"}
        ws = await connect(url, additional_headers=headers, open_timeout=FRAME_TIMEOUT_S, **kw)
        client = cls(ws)
        hello = await client.next_of("hello")
        assert hello["user_id"] == user_id
        return client

    async def send(self, frame: dict[str, Any]) -> str:
        self._counter += 1
        frame_id = frame.setdefault("id", f"f{self._counter}")
        await self.ws.send(orjson.dumps(frame).decode())
        return str(frame_id)

    async def request(self, frame: dict[str, Any]) -> dict[str, Any]:
        """Send a frame and return its ack (or error) data, failing the test on error."""
        reply = await self.reply_to(await self.send(frame))
        assert reply["type"] == "ack", reply
        data: dict[str, Any] = reply["data"]
        return data

    async def reply_to(self, frame_id: str) -> dict[str, Any]:
        return await self.wait(lambda f: f.get("id") == frame_id and f["type"] in ("ack", "error"))

    async def next_of(self, kind: str, **match: Any) -> dict[str, Any]:
        return await self.wait(
            lambda f: f["type"] == kind and all(f.get(k) == v for k, v in match.items())
        )

    async def wait(
        self, predicate: Callable[[dict[str, Any]], bool], timeout_s: float = FRAME_TIMEOUT_S
    ) -> dict[str, Any]:
        """The first not-yet-consumed frame matching predicate, reading more if needed."""
        async with asyncio.timeout(timeout_s):
            while True:
                for index in range(self._seen, len(self.frames)):
                    if predicate(self.frames[index]):
                        frame = self.frames.pop(index)
                        return frame
                self.frames.append(orjson.loads(await self.ws.recv()))

    async def drain(self, quiet_s: float = 0.3) -> list[dict[str, Any]]:
        """Everything that arrives until the line is quiet for quiet_s."""
        try:
            while True:
                async with asyncio.timeout(quiet_s):
                    self.frames.append(orjson.loads(await self.ws.recv()))
        except TimeoutError:
            pass
        frames, self.frames = self.frames, []
        return frames

    async def close(self) -> None:
        await self.ws.close()


# ---- helpers for the WebSocket behaviour tests (tests/ws) ------------------------------


class Sockets:
    """The clients one test opens, all closed when it ends (pass or fail)."""

    def __init__(self) -> None:
        self._open: list[Client] = []

    async def open(self, instance: Instance, user_id: str, **kw: Any) -> Client:
        client = await Client.open(instance.ws, user_id, **kw)
        self._open.append(client)
        return client

    async def close(self) -> None:
        for client in self._open:
            with contextlib.suppress(Exception):
                await client.close()
        self._open.clear()


async def rest(
    instance: Instance, user_id: str, method: str, path: str, json: Any = None
) -> httpx.Response:
    """One REST call to an instance as a user."""
    async with httpx.AsyncClient(base_url=instance.http, timeout=FRAME_TIMEOUT_S) as http:
        return await http.request(method, path, json=json, headers=auth(user_id))


async def new_group(
    instance: Instance, owner: str, *members: str, name: str = "team"
) -> dict[str, Any]:
    """A group created over REST by its owner; returns the room."""
    resp = await rest(instance, owner, "POST", "/v1/rooms", {"name": name, "member_ids": members})
    assert resp.status_code == 201, resp.text
    room: dict[str, Any] = resp.json()
    return room


async def rest_send(
    instance: Instance, user_id: str, room_id: str, body: str = "hi"
) -> dict[str, Any]:
    """A text message sent over REST; returns the stored message."""
    payload = {"client_msg_id": str(uuid.uuid4()), "kind": "text", "body": body}
    resp = await rest(instance, user_id, "POST", f"/v1/rooms/{room_id}/messages", payload)
    assert resp.status_code == 201, resp.text
    message: dict[str, Any] = resp.json()
    return message


async def send_history(
    instance: Instance, user_id: str, room_id: str, count: int, prefix: str = "m"
) -> list[dict[str, Any]]:
    """`count` messages sent one after another over REST, bodies prefix0, prefix1, ..."""
    return [await rest_send(instance, user_id, room_id, f"{prefix}{i}") for i in range(count)]


def send_frame(room_id: str, body: str = "hi", **fields: Any) -> dict[str, Any]:
    """A `send` frame for a text message with a fresh client_msg_id."""
    return {
        "type": "send",
        "room_id": room_id,
        "client_msg_id": str(uuid.uuid4()),
        "kind": "text",
        "body": body,
        **fields,
    }


def of_type(frames: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [f for f in frames if f["type"] == kind]


async def next_messages(client: Client, count: int) -> list[dict[str, Any]]:
    """The next `count` pushed messages, in the order they arrived."""
    return [(await client.next_of("message"))["message"] for _ in range(count)]


async def next_receipt(client: Client, kind: str, **match: Any) -> dict[str, Any]:
    """The next `receipt` push of this kind (`next_of` cannot match on a field named kind)."""
    return await client.wait(
        lambda f: (
            f["type"] == "receipt"
            and f["kind"] == kind
            and all(f.get(k) == v for k, v in match.items())
        )
    )


async def drain_all(*clients: Client, quiet_s: float = 0.5) -> list[list[dict[str, Any]]]:
    """`drain` several clients at once (one quiet period, not one each)."""
    return list(await asyncio.gather(*(c.drain(quiet_s) for c in clients)))


# ---- helpers for the presence tests (tests/presence) -----------------------------------


def parse_time(value: str) -> datetime:
    """A contract timestamp (UTC ISO 8601 with a `Z`) as an aware datetime."""
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def metric_total(text: str, name: str) -> float | None:
    """The sum of the samples of one metric in Prometheus text (any labels); None if absent."""
    values = [
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith((f"{name} ", f"{name}{{"))
    ]
    return sum(values) if values else None


def terminate(instance: Instance, timeout_s: float = 5) -> None:
    """Stop an instance gracefully if it will, else kill it; bounded either way."""
    proc = instance.proc
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout_s)


class SilentProxy:
    """A TCP relay in front of an instance that can go silent: `silence()` stops relaying
    in both directions while both TCP connections stay open, like a network that drops
    every packet (no FIN, no RST), so only the server's keepalive can find it out."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: list[asyncio.StreamWriter] = []

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    def silence(self) -> None:
        self._flowing.clear()

    async def _relay(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        server_r, server_w = await asyncio.open_connection("127.0.0.1", self.target_port)
        self._writers += [client_w, server_w]
        for source, sink in ((client_r, server_w), (server_r, client_w)):
            task = asyncio.create_task(self._pump(source, sink))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pump(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.CancelledError):
            while True:
                await self._flowing.wait()
                data = await source.read(65536)
                if not data:
                    sink.close()
                    return
                if self._flowing.is_set():  # what arrives once silent is dropped
                    sink.write(data)
                    await sink.drain()

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for writer in self._writers:
            with contextlib.suppress(Exception):
                writer.transport.abort()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


# ---- helpers for the hostile-input tests (tests/hostile) -------------------------------

# Lines in an instance's log that mean an exception escaped the code meant to handle it.
UNHANDLED_MARKERS = (
    "unhandled_error",
    "frame_failed",
    "Traceback",
    "Exception in ASGI application",
)


class Fleet:
    """The instances one test module starts (each with its own settings), all stopped at
    its end; start-ups overlap so several instances cost about as much as one."""

    def __init__(self, stores: Stores, log_dir: Path) -> None:
        self.stores = stores
        self.log_dir = log_dir
        self.instances: list[Instance] = []

    def start(self, **named: dict[str, str]) -> dict[str, Instance]:
        """Start one instance per name, with that name's settings; returns them by name."""
        from concurrent.futures import ThreadPoolExecutor

        started = {
            name: Instance(name, self.stores, self.log_dir, **s) for name, s in named.items()
        }
        self.instances.extend(started.values())
        with ThreadPoolExecutor(len(started)) as pool:
            for future in [pool.submit(i.start) for i in started.values()]:
                future.result()
        return started

    def stop(self) -> None:
        for instance in self.instances:
            with contextlib.suppress(Exception):
                terminate(instance)


def alive(instance: Instance) -> bool:
    return instance.proc is not None and instance.proc.poll() is None


def rss_bytes(instance: Instance) -> int:
    """The resident memory of an instance's process (VmRSS in /proc/<pid>/status)."""
    assert instance.proc is not None
    status = Path(f"/proc/{instance.proc.pid}/status").read_text()
    line = next(line for line in status.splitlines() if line.startswith("VmRSS:"))
    return int(line.split()[1]) * 1024


def unhandled_errors(instance: Instance) -> list[str]:
    """Log lines of an instance that report an unhandled exception."""
    return [
        line for line in instance.log().splitlines() if any(m in line for m in UNHANDLED_MARKERS)
    ]


def log_events(instance: Instance, event: str) -> list[dict[str, Any]]:
    """The JSON log records of an instance with this `event`."""
    records = []
    for line in instance.log().splitlines():
        if f'"{event}"' not in line:
            continue
        with contextlib.suppress(orjson.JSONDecodeError):
            record = orjson.loads(line)
            if isinstance(record, dict) and record.get("event") == event:
                records.append(record)
    return records


async def open_unreading(
    instance: Instance, user_id: str, *, pings: bool = True
) -> ClientConnection:
    """A client that stops reading once one message waits for it, with a tiny kernel
    receive buffer and a small segment size (a slow link's, which also keeps the server's
    send buffer small). `pings=False`: it sends no pings of its own either."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, 536)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", instance.port))
    return await connect(
        instance.ws,
        sock=sock,
        additional_headers={"Authorization": f"Bearer {token_for(user_id)}"},
        open_timeout=FRAME_TIMEOUT_S,
        max_queue=1,
        proxy=None,
        ping_interval=20 if pings else None,  # 20 s: the library's default
    )
