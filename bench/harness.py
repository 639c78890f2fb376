"""What every workload needs around the load: stores, server instances, users and rooms,
and CPU / memory accounting of each process from /proc.

The stores are the embedded PostgreSQL and Redis in a temporary directory, or the
servers named by CHAT_DATABASE_URL / CHAT_REDIS_URL. Servers are `chat serve`
subprocesses with CHAT_LOG_LEVEL=WARNING, a known CHAT_JWT_SECRET, and the per-connection
frame limit lifted (the load generator sends far more than a person would).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import platform
import resource
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from app.auth.tokens import issue

CHAT = str(Path(sys.executable).parent / "chat")
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024
SETUP_CONCURRENCY = 16
TOKEN_TTL_S = 6 * 3600


def raise_fd_limit() -> int:
    """Soft RLIMIT_NOFILE up to the hard limit (inherited by servers and workers)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# ---- /proc accounting ----------------------------------------------------------------


def _stat_fields(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name may hold spaces: fields start after its closing parenthesis.
    return raw[raw.rindex(")") + 2 :].split()


def cpu_s(pid: int, with_reaped_children: bool = False) -> float:
    """utime + stime of a process (all its threads), in seconds; 0 if it is gone."""
    fields = _stat_fields(pid)
    if fields is None:
        return 0.0
    # After the name: state(0) ppid(1) … utime(11) stime(12) cutime(13) cstime(14).
    ticks = int(fields[11]) + int(fields[12])
    if with_reaped_children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / CLK_TCK


def children_of(pid: int) -> list[int]:
    kids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(int(entry.name))
        if fields is not None and int(fields[1]) == pid:
            kids.append(int(entry.name))
    return kids


def tree_cpu_s(pid: int) -> float:
    """A server and all its children (PostgreSQL: postmaster and every backend), with the
    time of children that already exited."""
    return cpu_s(pid, with_reaped_children=True) + sum(cpu_s(kid) for kid in children_of(pid))


def runqueue_wait_s(pid: int) -> float:
    """Time the process's threads spent runnable but waiting for a CPU (schedstat): high
    when other processes compete for the cores."""
    total = 0
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError, ValueError, IndexError):
                total += int((task / "schedstat").read_text().split()[1])
    return total / 1e9


def rss_kib(pid: int) -> int:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def steal_s() -> float:
    """CPU seconds the hypervisor has taken from this virtual machine's cores so far
    (`/proc/stat`'s steal): time the cores ran someone else's work, a cause of a slow
    stretch that no process here shows."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()
        return int(fields[8]) / os.sysconf("SC_CLK_TCK")
    return 0.0


def reference_loop_ms() -> float:
    """Milliseconds one core takes for a fixed pure-Python loop (the best of three). On a
    shared virtual machine the speed of a core varies from second to second (here by up
    to 1.7x): taken before and after a run, it tells a slow run on a slow machine from a
    slow run of the service."""
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        total = 0
        for i in range(1_000_000):
            total += i * i
        best = min(best, time.perf_counter() - started)
    return round(best * 1000, 1)


def machine() -> dict[str, Any]:
    mem_kib = 0
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    return {
        "cores": os.cpu_count(),
        "mem_gib": round(mem_kib / 1024 / 1024, 1),
        "python": platform.python_version(),
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
        "reference_loop_ms_at_start": reference_loop_ms(),
    }


# ---- stores and servers --------------------------------------------------------------


@dataclass
class Stores:
    database_url: str
    redis_url: str
    postgres_pid: int | None
    redis_pid: int | None
    _owned: list[Any] = field(default_factory=list)

    def stop(self) -> None:
        for store in reversed(self._owned):
            with contextlib.suppress(Exception):
                store.stop()


def start_stores(data_dir: Path) -> Stores:
    """Embedded PostgreSQL and Redis under data_dir, unless CHAT_DATABASE_URL /
    CHAT_REDIS_URL name servers to use (their CPU is then not measured)."""
    from app.infra.embedded import EmbeddedPostgres, EmbeddedRedis

    owned: list[Any] = []
    database_url = os.environ.get("CHAT_DATABASE_URL")
    redis_url = os.environ.get("CHAT_REDIS_URL")
    pg_pid = redis_pid = None
    try:
        if not database_url:
            postgres = EmbeddedPostgres(data_dir)
            owned.append(postgres)
            database_url = postgres.start()
            pg_pid = postgres.pid
        if not redis_url:
            redis = EmbeddedRedis(data_dir)
            owned.append(redis)
            redis_url = redis.start()
            redis_pid = redis.pid
    except BaseException:
        for store in reversed(owned):
            with contextlib.suppress(Exception):
                store.stop()
        raise
    return Stores(database_url, redis_url, pg_pid, redis_pid, owned)


class Server:
    """One `chat serve` subprocess."""

    def __init__(
        self, name: str, stores: Stores, secret: str, work_dir: Path, env: dict[str, str]
    ) -> None:
        self.name = name
        self.port = free_port()
        self.http = f"http://127.0.0.1:{self.port}"
        self.ws = f"ws://127.0.0.1:{self.port}/v1/ws"
        self.log_path = work_dir / f"{name}.log"
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("CHAT_")},
            "CHAT_DATABASE_URL": stores.database_url,
            "CHAT_REDIS_URL": stores.redis_url,
            "CHAT_JWT_SECRET": secret,
            "CHAT_LOG_LEVEL": "WARNING",
            "CHAT_INSTANCE_ID": name,
            "CHAT_DATA_DIR": str(work_dir / name),
            "CHAT_FRAMES_PER_S": "1000000",
            **env,
        }
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [CHAT, "serve", "--port", str(self.port)],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def wait_ready(self, timeout_s: float = 90) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                tail = self.log_path.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"{self.name} exited: {tail}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.http}/readyz", timeout=2).status_code == 200:
                    return
            time.sleep(0.2)
        raise RuntimeError(f"{self.name} not ready in {timeout_s}s")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)

    def log_problems(self) -> list[str]:
        """Log lines at warning level or above (the servers log at WARNING)."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return []
        return [line[:400] for line in text.splitlines() if line.strip()]


class Cluster:
    """Stores plus 1..n servers, with a shared secret to issue tokens."""

    def __init__(self, instances: int, server_env: dict[str, str], keep_logs: bool = False) -> None:
        self.keep_logs = keep_logs
        self.work_dir = Path(tempfile.mkdtemp(prefix="chat-bench-"))
        self.secret = secrets.token_urlsafe(48)
        self.instances = instances
        self.server_env = server_env
        self.stores: Stores | None = None
        self.servers: list[Server] = []

    def __enter__(self) -> Cluster:
        try:
            self.stores = start_stores(self.work_dir)
            self.servers = [
                Server(f"bench-{i}", self.stores, self.secret, self.work_dir, self.server_env)
                for i in range(self.instances)
            ]
            # The first applies migrations; the others then start at once.
            self.servers[0].start()
            self.servers[0].wait_ready()
            for server in self.servers[1:]:
                server.start()
            for server in self.servers[1:]:
                server.wait_ready()
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        for server in self.servers:
            with contextlib.suppress(Exception):
                server.stop()
        if self.stores is not None:
            self.stores.stop()
        if self.keep_logs:
            print(f"[bench] server logs kept in {self.work_dir}", file=sys.stderr)
        else:
            shutil.rmtree(self.work_dir, ignore_errors=True)

    def token(self, user_id: str, ttl_s: int = TOKEN_TTL_S) -> str:
        return issue(self.secret, user_id, ttl_s=ttl_s)

    def ws_url(self, index: int) -> str:
        return self.servers[index % len(self.servers)].ws

    # ---- accounting ----

    def server_cpu_s(self) -> float:
        return sum(cpu_s(s.pid) for s in self.servers if s.proc is not None)

    def server_rss_kib(self) -> int:
        return sum(rss_kib(s.pid) for s in self.servers if s.proc is not None)

    def store_cpu_s(self) -> dict[str, float | None]:
        assert self.stores is not None
        pg = self.stores.postgres_pid
        redis = self.stores.redis_pid
        return {
            "pg": tree_cpu_s(pg) if pg is not None else None,
            "redis": cpu_s(redis) if redis is not None else None,
        }

    def server_wait_s(self) -> float:
        return sum(runqueue_wait_s(s.pid) for s in self.servers if s.proc is not None)

    def snapshot(self) -> Snapshot:
        stores = self.store_cpu_s()
        return Snapshot(
            time.monotonic(),
            self.server_cpu_s(),
            stores["pg"],
            stores["redis"],
            self.server_wait_s(),
            os.getloadavg()[0],
            steal_s(),
        )

    def problems(self) -> dict[str, Any]:
        """Warnings and errors the servers logged, counted by event and error, with a few
        lines as examples."""
        import json

        counts: Counter[str] = Counter()
        examples: dict[str, str] = {}
        lines = [line for s in self.servers for line in s.log_problems()]
        for index, line in enumerate(lines):
            try:
                record = json.loads(line)
                key = f"{record.get('event')}:{record.get('error', '')}"
            except ValueError:
                if line[:1].isspace() or line.startswith(("Traceback", "During handling")):
                    continue  # the rest of a multi-line warning or traceback
                key = "text:" + line.rsplit("/", 1)[-1][:80]
            counts[key] += 1
            if key not in examples:
                examples[key] = "\n".join(lines[index : index + 12])[:1500]
        return {"counts": dict(counts), "examples": examples} if lines else {}


@dataclass(frozen=True)
class Snapshot:
    at: float
    server_s: float
    pg_s: float | None
    redis_s: float | None
    server_wait_s: float
    loadavg: float
    steal_s: float

    def until(self, later: Snapshot) -> dict[str, float | None]:
        """CPU seconds spent between two snapshots, per process group."""

        def delta(a: float | None, b: float | None) -> float | None:
            return None if a is None or b is None else round(b - a, 3)

        pg, redis = delta(self.pg_s, later.pg_s), delta(self.redis_s, later.redis_s)
        stores = None if pg is None or redis is None else round(pg + redis, 3)
        return {
            "wall_s": round(later.at - self.at, 3),
            "server_cpu_s": round(later.server_s - self.server_s, 3),
            "pg_cpu_s": pg,
            "redis_cpu_s": redis,
            "stores_cpu_s": stores,
            # Runnable but not running: the server waited for a core (a shared machine).
            "server_runqueue_wait_s": round(later.server_wait_s - self.server_wait_s, 3),
            "loadavg_1m": round(later.loadavg, 2),
            "machine_steal_s": round(later.steal_s - self.steal_s, 2),
        }


# ---- REST setup ----------------------------------------------------------------------


class Setup:
    """Users and rooms created over REST, SETUP_CONCURRENCY calls at a time."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self._sem = asyncio.Semaphore(SETUP_CONCURRENCY)
        self._http = httpx.AsyncClient(
            base_url=cluster.servers[0].http,
            timeout=60,
            limits=httpx.Limits(max_connections=SETUP_CONCURRENCY),
        )

    async def __aenter__(self) -> Setup:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._http.aclose()

    async def call(self, user_id: str, method: str, path: str, body: Any = None) -> Any:
        headers = {"Authorization": f"Bearer {self.cluster.token(user_id, 3600)}"}
        async with self._sem:
            for attempt in range(5):
                resp = await self._http.request(method, path, json=body, headers=headers)
                if resp.status_code < 500 and resp.status_code != 429:
                    break
                await asyncio.sleep(0.2 * (attempt + 1))
        if resp.status_code >= 300:
            raise RuntimeError(f"{method} {path}: {resp.status_code} {resp.text[:300]}")
        return resp.json() if resp.content else None

    async def direct(self, user_id: str, other: str) -> str:
        room = await self.call(user_id, "POST", "/v1/rooms/direct", {"user_id": other})
        return str(room["id"])

    async def group(self, owner: str, members: Sequence[str], name: str = "bench") -> str:
        body = {"name": name, "member_ids": list(members)}
        room = await self.call(owner, "POST", "/v1/rooms", body)
        return str(room["id"])

    async def directs(self, pairs: Sequence[tuple[str, str]]) -> list[str]:
        return list(await asyncio.gather(*(self.direct(a, b) for a, b in pairs)))

    async def groups(self, rooms: Sequence[Sequence[str]]) -> list[str]:
        return list(await asyncio.gather(*(self.group(m[0], m[1:]) for m in rooms)))

    async def presence(self, viewer: str, user_ids: Sequence[str]) -> dict[str, bool]:
        query = ",".join(user_ids)
        data = await self.call(viewer, "GET", f"/v1/presence?user_ids={query}")
        return {item["user_id"]: bool(item["online"]) for item in data["items"]}


# ---- PostgreSQL write counters -------------------------------------------------------


async def pg_writes(database_url: str) -> dict[str, int]:
    """Cumulative commits and tuples written in the chat database, total and per table."""
    import asyncpg

    url = database_url.replace("postgresql+asyncpg://", "postgresql://")
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("SELECT pg_stat_clear_snapshot()")
        db = await conn.fetchrow(
            "SELECT xact_commit, tup_inserted, tup_updated, tup_deleted "
            "FROM pg_stat_database WHERE datname = current_database()"
        )
        tables = await conn.fetch(
            "SELECT relname, n_tup_ins + n_tup_upd + n_tup_del AS written FROM pg_stat_user_tables"
        )
    finally:
        await conn.close()
    counters = {
        "xact_commit": int(db["xact_commit"]),
        "tup_written": int(db["tup_inserted"] + db["tup_updated"] + db["tup_deleted"]),
    }
    counters.update({f"table.{row['relname']}": int(row["written"]) for row in tables})
    return counters


def counter_delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {
        k: after.get(k, 0) - before.get(k, 0) for k in after if after.get(k, 0) != before.get(k, 0)
    }


# ---- figures -------------------------------------------------------------------------


def percentile(sorted_values: Sequence[float], q: float) -> float | None:
    if not sorted_values:
        return None
    index = min(len(sorted_values) - 1, max(0, round(q / 100 * (len(sorted_values) - 1))))
    return sorted_values[index]


def ms(value: float | None) -> float | None:
    return None if value is None else round(value * 1000, 2)


def chunks(items: Sequence[Any], parts: int) -> Iterator[list[Any]]:
    """items split into `parts` nearly equal consecutive slices (some may be empty)."""
    size, extra = divmod(len(items), parts)
    start = 0
    for i in range(parts):
        end = start + size + (1 if i < extra else 0)
        yield list(items[start:end])
        start = end
