"""Real server processes for cross-instance tests, and a small WebSocket test client."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import orjson
from websockets.asyncio.client import ClientConnection, connect

from tests.support import TEST_SECRET, Stores, token_for

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
    async def open(
        cls, url: str, user_id: str, *, name: str | None = None, **kw: Any
    ) -> Client:
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
