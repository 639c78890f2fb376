"""The `chat` command as an operator runs it: a real process on the embedded default."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.timeout(180)

CHAT = str(Path(sys.executable).parent / "chat")
STORE_VARS = ("CHAT_DATABASE_URL", "CHAT_REDIS_URL", "CHAT_JWT_SECRET")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _env(data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in STORE_VARS}
    env["CHAT_DATA_DIR"] = str(data_dir)
    return env


def _wait_ready(base: str, proc: subprocess.Popen[bytes], timeout_s: float = 90) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited early with {proc.returncode}")
        try:
            if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise AssertionError("server never became ready")


def _postmaster_pid(data_dir: Path) -> int:
    return int((data_dir / "postgres" / "postmaster.pid").read_text().split()[0])


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[tuple[str, Path, list[subprocess.Popen[bytes]]]]:
    procs: list[subprocess.Popen[bytes]] = []
    yield f"http://127.0.0.1:{_free_port()}", tmp_path, procs
    for proc in procs:
        if proc.poll() is None:
            # SIGTERM, so the server stops its embedded PostgreSQL and Redis too (a killed
            # server leaves them running until its next start clears them).
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


def _start(
    base: str, data_dir: Path, procs: list[subprocess.Popen[bytes]]
) -> subprocess.Popen[bytes]:
    port = base.rsplit(":", 1)[1]
    proc = subprocess.Popen(
        [CHAT, "serve", "--port", port],
        env=_env(data_dir),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    procs.append(proc)
    _wait_ready(base, proc)
    return proc


def _token(data_dir: Path, user_id: str, *extra: str) -> str:
    out = subprocess.run(
        [CHAT, "token", user_id, *extra],
        env=_env(data_dir),
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return out.stdout.strip()


def test_embedded_serve_is_ready_and_accepts_its_own_tokens_and_keeps_data_across_restarts(
    serve: tuple[str, Path, list[subprocess.Popen[bytes]]],
) -> None:
    base, data_dir, procs = serve
    proc = _start(base, data_dir, procs)
    headers = {"Authorization": f"Bearer {_token(data_dir, 'alice', '--name', 'Alice')}"}
    me = httpx.get(f"{base}/v1/me", headers=headers, timeout=10)
    assert me.status_code == 200
    assert me.json()["name"] == "Alice"
    created = httpx.post(
        f"{base}/v1/rooms", json={"name": "kept", "member_ids": ["bob"]}, headers=headers
    )
    assert created.status_code == 201

    postmaster = _postmaster_pid(data_dir)
    proc.send_signal(signal.SIGTERM)
    # uvicorn shuts down cleanly, then re-raises the signal, as a process killed by it would.
    assert proc.wait(30) in (0, -signal.SIGTERM)
    assert not _alive(postmaster), "embedded PostgreSQL is stopped with the server"
    assert not (data_dir / "postgres" / "postmaster.pid").exists()

    _start(base, data_dir, procs)
    rooms = httpx.get(f"{base}/v1/rooms", headers=headers, timeout=10)
    assert [room["name"] for room in rooms.json()["items"]] == ["kept"]


def test_token_is_signed_with_the_secret_kept_in_the_data_dir(tmp_path: Path) -> None:
    first = _token(tmp_path, "carol")
    secret_file = tmp_path / "jwt-secret"
    assert secret_file.exists()
    assert secret_file.stat().st_mode & 0o077 == 0, "the secret is readable by its owner only"
    from jose import jwt

    claims = jwt.decode(first, secret_file.read_text().strip(), algorithms=["HS256"])
    assert claims["sub"] == "carol"
    assert claims["exp"] > time.time()


def test_every_command_has_help() -> None:
    for command in ("serve", "migrate", "token", "openapi"):
        out = subprocess.run(
            [CHAT, command, "--help"], capture_output=True, text=True, timeout=60, check=True
        )
        assert "Usage" in out.stdout


def test_serve_on_port_0_listens_on_a_free_port_it_names_in_its_log(
    serve: tuple[str, Path, list[subprocess.Popen[bytes]]],
) -> None:
    _, data_dir, procs = serve
    configured = _free_port()
    proc = subprocess.Popen(
        [CHAT, "serve", "--port", "0"],
        env={**_env(data_dir), "CHAT_PORT": str(configured)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    procs.append(proc)
    assert proc.stdout is not None
    deadline = time.monotonic() + 90
    named = None
    while named is None and time.monotonic() < deadline and proc.poll() is None:
        line = proc.stdout.readline().decode(errors="replace")
        found = re.search(r"running on http://[\d.]+:(\d+)", line)
        named = int(found.group(1)) if found else None
    assert named is not None, "the server never said where it listens"
    assert named not in (0, configured)
    # The log goes on; a pipe nobody reads would stall the server once full.
    threading.Thread(target=proc.stdout.read, daemon=True).start()
    base = f"http://127.0.0.1:{named}"
    _wait_ready(base, proc)
    assert httpx.get(f"{base}/healthz", timeout=10).status_code == 200
