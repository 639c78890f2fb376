"""Benchmarks of the chat service: `python -m bench.run {dm,fanout,idle,storm,typing}`.

Each workload starts its own stores and servers, creates its users and rooms over REST,
drives load from picows connections in generator processes, and prints ONE JSON line of
figures on stdout at the end (progress goes to stderr). Nothing here asserts on time:
correctness counts (lost, duplicated, out of order, missed) are reported for the reader
to check, and are expected to be 0.

`--quick` shrinks every workload to a few seconds; any explicit flag still wins.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import uuid
from array import array
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from bench.gen import Pool, generator_figures
from bench.harness import (
    Cluster,
    Setup,
    Snapshot,
    chunks,
    counter_delta,
    machine,
    ms,
    percentile,
    pg_writes,
    raise_fd_limit,
    reference_loop_ms,
)
from bench.timeline import Sampler, due_and_latency, idle_cores_s, processes, render, timeline

# Per workload: option -> (full default, --quick default).
DEFAULTS: dict[str, dict[str, tuple[Any, Any]]] = {
    "dm": {
        "pairs": (50, 5),
        "rates": ("1000,2000,5000,8000", "200,500"),
        "step_s": (10.0, 2.0),
        "ack_ms": (20, 20),
        "drain_s": (10.0, 5.0),
    },
    "fanout": {
        "rooms": (100, 4),
        "members": (50, 10),
        "rates": ("0.5,1,2,4", "1,4"),
        "step_s": (10.0, 2.0),
        "ack_ms": (500, 500),
        "drain_s": (15.0, 5.0),
    },
    "idle": {
        "steps": ("2000,5000,10000", "100,300"),
        "group": (10, 10),
        "idle_s": (20.0, 3.0),
        "heartbeat_s": (10.0, 2.0),
        "concurrency": (64, 32),
    },
    "storm": {
        "connections": (5000, 200),
        "members": (50, 20),
        "rate": (0.5, 1.0),
        "jitter_s": (5.0, 1.0),
        "steady_s": (5.0, 1.5),
        "drain_s": (20.0, 8.0),
    },
    "typing": {
        "rooms": (50, 4),
        "members": (10, 5),
        "rate": (1.0, 2.0),
        "step_s": (10.0, 2.0),
        "ack_ms": (500, 500),
        "drain_s": (10.0, 5.0),
    },
}


def say(text: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x.strip()]


def merged(results: Sequence[dict[str, Any]], key: str) -> list[float]:
    values = array("d")
    for result in results:
        values.frombytes(result[key])
    return sorted(values)


def summed(results: Sequence[dict[str, Any]], key: str) -> int:
    return int(sum(r[key] for r in results))


def counters(results: Sequence[dict[str, Any]], key: str) -> dict[str, int]:
    total: Counter[str] = Counter()
    for result in results:
        total.update(result[key])
    return dict(total)


def per_1k(cpu: float | None, count: int) -> float | None:
    return None if cpu is None or not count else round(cpu / count * 1000, 4)


def cpu_figures(before: Snapshot, after: Snapshot, count: int, unit: str) -> dict[str, Any]:
    window = before.until(after)
    return {
        **window,
        f"server_cpu_s_per_1k_{unit}": per_1k(window["server_cpu_s"], count),
        f"stores_cpu_s_per_1k_{unit}": per_1k(window["stores_cpu_s"], count),
    }


def latency(values: Sequence[float], name: str) -> dict[str, Any]:
    return {
        f"{name}_p50_ms": ms(percentile(values, 50)),
        f"{name}_p99_ms": ms(percentile(values, 99)),
        f"{name}_max_ms": ms(values[-1] if values else None),
    }


def throughput(count: int, start_at: float, results: Sequence[dict[str, Any]]) -> float:
    """Per second, from the first scheduled send to the last arrival (or the end of the
    schedule, whichever is later)."""
    end = max([r["last_recv"] for r in results] + [r["sent_until"] for r in results])
    return round(count / (end - start_at), 1) if count and end > start_at else 0.0


# A step sheds sends once this many seconds of its offered load are waiting for acks,
# and counts as overloaded (then higher steps are skipped unless --keep-going).
MAX_BACKLOG_S = 3.0
OVERLOADED_P99_S = 1.0


def overloaded(shed: int, latencies: Sequence[float], rate: float) -> bool:
    p99 = percentile(latencies, 99)
    return shed > 0 or (rate > 0 and p99 is not None and p99 > OVERLOADED_P99_S)


def run_id() -> str:
    return uuid.uuid4().hex[:6]


def sampler(args: argparse.Namespace, cluster: Cluster, pool: Pool) -> Sampler | None:
    """What `--timeline S` reads every S seconds while a step runs (None without it)."""
    if not args.timeline:
        return None

    def stores() -> float:
        return sum(v or 0.0 for v in cluster.store_cpu_s().values())

    meters = {
        "server": cluster.server_cpu_s,
        # Runnable but not running: the server waited for a core.
        "server_waiting": cluster.server_wait_s,
        "stores": stores,
        "generator": processes(pool.pids),
        "idle": idle_cores_s,
    }
    return Sampler(meters, args.timeline)


async def measured(
    sampling: Sampler | None, call: Awaitable[list[dict[str, Any]]]
) -> list[dict[str, Any]]:
    if sampling is None:
        return await call
    sampling.start()
    try:
        return await call
    finally:
        await sampling.stop()


def with_timeline(
    step: dict[str, Any],
    sampling: Sampler | None,
    results: Sequence[dict[str, Any]],
    start_at: float,
) -> None:
    if sampling is not None:
        step["timeline"] = timeline(due_and_latency(results), start_at, sampling)
        say("timeline (by when each message was due):\n" + render(step["timeline"]))


# ---- dm --------------------------------------------------------------------------------


async def dm(args: argparse.Namespace, cluster: Cluster) -> dict[str, Any]:
    rid = run_id()
    pairs = [(f"dm{rid}-{i}a", f"dm{rid}-{i}b") for i in range(args.pairs)]
    say(f"dm: creating {len(pairs)} direct rooms")
    async with Setup(cluster) as setup:
        rooms = await setup.directs(pairs)
    specs = [
        {
            "room": room,
            "a": a,
            "b": b,
            "url_a": cluster.ws_url(0),
            "url_b": cluster.ws_url(1),
            "token_a": cluster.token(a),
            "token_b": cluster.token(b),
        }
        for (a, b), room in zip(pairs, rooms, strict=True)
    ]
    shares = [c for c in chunks(specs, min(args.procs, len(specs))) if c]
    pool = Pool("bench.workers:DmWorker", [{"pairs": c, "ack_ms": args.ack_ms} for c in shares])
    steps = []
    sampling = sampler(args, cluster, pool)
    try:
        await pool.call("connect")
        say(f"dm: {2 * len(specs)} connections open")
        for index, rate in enumerate(floats(args.rates)):
            start_at = time.monotonic() + 0.5
            step_args = [
                {
                    "step": index,
                    "rate": rate * len(share) / len(specs),
                    "duration_s": args.step_s,
                    "start_at": start_at,
                    "drain_s": args.drain_s,
                    "max_backlog": max(1, int(rate * len(share) / len(specs) * MAX_BACKLOG_S)),
                }
                for share in shares
            ]
            before = cluster.snapshot()
            results = await measured(sampling, pool.call("step", step_args))
            after = cluster.snapshot()
            received = summed(results, "received")
            lat, ack_lat = merged(results, "lat"), merged(results, "ack_lat")
            step = {
                "offered_msgs_s": rate,
                "sent": summed(results, "sent"),
                "shed": summed(results, "shed"),
                "acked": summed(results, "acked"),
                "delivered": received,
                "delivered_msgs_s": throughput(received, start_at, results),
                **latency(lat, "send_to_receive"),
                "send_to_ack_p99_ms": ms(percentile(ack_lat, 99)),
                "lost": summed(results, "lost"),
                "duplicated": summed(results, "duplicates"),
                "out_of_order": summed(results, "out_of_order"),
                "unacked": summed(results, "unacked"),
                "errors": counters(results, "errors"),
                "closed_connections": summed(results, "closed"),
                **cpu_figures(before, after, received, "msgs"),
                **generator_figures(results),
            }
            step["overloaded"] = overloaded(step["shed"], lat, rate)
            with_timeline(step, sampling, results, start_at)
            steps.append(step)
            say(
                f"dm {rate:g}/s: delivered {step['delivered_msgs_s']}/s, p50 "
                f"{step['send_to_receive_p50_ms']} ms, p99 {step['send_to_receive_p99_ms']} ms, "
                f"server {step['server_cpu_s_per_1k_msgs']} cpu-s/1k, lost {step['lost']}, "
                f"gen busiest core {step['gen_busiest_core']}"
            )
            if step["overloaded"] and not args.keep_going:
                say("dm: the server fell behind; higher steps skipped (--keep-going runs them)")
                break
            await asyncio.sleep(1.0)
    finally:
        pool.close()
    return {"pairs": args.pairs, "ack_ms": args.ack_ms, "step_s": args.step_s, "steps": steps}


# ---- groups (fanout, typing, storm) ---------------------------------------------------


async def make_groups(
    cluster: Cluster, prefix: str, rooms: int, members: int, ack_ms: int, procs: int
) -> tuple[Pool, int]:
    """Rooms of `members` users, member j on instance j % instances; returns a pool of
    GroupWorkers holding whole rooms, and the count of connections."""
    rid = run_id()
    users = [[f"{prefix}{rid}-r{i}-m{j}" for j in range(members)] for i in range(rooms)]
    say(f"{prefix}: creating {rooms} rooms of {members} members")
    async with Setup(cluster) as setup:
        room_ids = await setup.groups(users)
    specs = [
        {
            "room": room_id,
            "members": [[u, cluster.ws_url(j), cluster.token(u)] for j, u in enumerate(group)],
        }
        for room_id, group in zip(room_ids, users, strict=True)
    ]
    shares = [c for c in chunks(specs, min(procs, len(specs))) if c]
    pool = Pool("bench.workers:GroupWorker", [{"rooms": c, "ack_ms": ack_ms} for c in shares])
    return pool, rooms * members


async def group_step(
    pool: Pool,
    cluster: Cluster,
    index: int,
    rate_per_room: float,
    args: argparse.Namespace,
    typing: bool = False,
) -> dict[str, Any]:
    start_at = time.monotonic() + 0.5
    rooms_per_worker = max(1, args.rooms // len(pool))
    step_args = {
        "step": index,
        "rate_per_room": rate_per_room,
        "duration_s": args.step_s,
        "start_at": start_at,
        "drain_s": args.drain_s,
        "typing": typing,
        "max_backlog": max(1, int(rate_per_room * rooms_per_worker * MAX_BACKLOG_S)),
    }
    sampling = sampler(args, cluster, pool)
    before = cluster.snapshot()
    results = await measured(sampling, pool.call("step", step_args))
    after = cluster.snapshot()
    deliveries = summed(results, "deliveries")
    lat, last = merged(results, "lat"), merged(results, "last_member_lat")
    missing, dups = summed(results, "missing"), summed(results, "duplicates")
    shed = summed(results, "shed")
    step = {
        "rate_per_room": rate_per_room,
        "overloaded": overloaded(shed, lat, rate_per_room),
        "sent": summed(results, "sent"),
        "shed": shed,
        "acked": summed(results, "acked"),
        "deliveries": deliveries,
        "deliveries_s": throughput(deliveries, start_at, results),
        **latency(lat, "send_to_receive"),
        "publish_to_last_member_p99_ms": ms(percentile(last, 99)),
        "missing": missing,
        "duplicated": dups,
        "out_of_order": summed(results, "out_of_order"),
        "exactly_once": missing == 0 and dups == 0 and summed(results, "unacked") == 0,
        "typing_sent": summed(results, "typing_out"),
        "typing_received": summed(results, "typing_in"),
        "typing_out_s": round(summed(results, "typing_in") / args.step_s, 1),
        "errors": counters(results, "errors"),
        "closed_connections": summed(results, "closed"),
        **cpu_figures(before, after, deliveries, "deliveries"),
        **generator_figures(results),
    }
    with_timeline(step, sampling, results, start_at)
    return step


async def connect_all(pool: Pool, what: str) -> dict[str, Any]:
    results = await pool.call("connect")
    handshakes = sorted(h for r in results for h in r["handshake_s"])
    connected = summed(results, "connected")
    elapsed = max(r["elapsed_s"] for r in results)
    say(f"{what}: {connected} connections open in {elapsed:.1f}s")
    return {
        "connections": connected,
        "connect_s": round(elapsed, 2),
        "handshake_p99_ms": ms(percentile(handshakes, 99)),
        "connect_failures": summed(results, "failures"),
    }


async def fanout(args: argparse.Namespace, cluster: Cluster) -> dict[str, Any]:
    pool, _ = await make_groups(cluster, "fo", args.rooms, args.members, args.ack_ms, args.procs)
    steps = []
    try:
        opened = await connect_all(pool, "fanout")
        for index, rate in enumerate(floats(args.rates)):
            step = await group_step(pool, cluster, index, rate, args)
            steps.append(step)
            say(
                f"fanout {rate:g}/s/room: {step['deliveries_s']} deliveries/s, p99 last member "
                f"{step['publish_to_last_member_p99_ms']} ms, exactly once {step['exactly_once']}, "
                f"server {step['server_cpu_s_per_1k_deliveries']} cpu-s/1k, "
                f"gen busiest core {step['gen_busiest_core']}"
            )
            if step["overloaded"] and not args.keep_going:
                say("fanout: the server fell behind; higher steps skipped (--keep-going)")
                break
            await asyncio.sleep(1.0)
    finally:
        pool.close()
    return {
        "rooms": args.rooms,
        "members": args.members,
        "ack_ms": args.ack_ms,
        "step_s": args.step_s,
        **opened,
        "steps": steps,
    }


TYPING_SETTLE_S = 12.0


async def typing(args: argparse.Namespace, cluster: Cluster) -> dict[str, Any]:
    assert cluster.stores is not None
    database_url = cluster.stores.database_url
    pool, _ = await make_groups(cluster, "ty", args.rooms, args.members, args.ack_ms, args.procs)
    phases: dict[str, Any] = {}
    try:
        opened = await connect_all(pool, "typing")
        await asyncio.sleep(2.0)
        plan = [("typing_only", 0.0, True), ("chat_only", args.rate, False)]
        plan.append(("chat_with_typing", args.rate, True))
        for index, (name, rate, with_typing) in enumerate(plan):
            writes_before, wal_before = await pg_writes(database_url), await wal_lsn(database_url)
            step = await group_step(pool, cluster, index, rate, args, typing=with_typing)
            await asyncio.sleep(1.5)  # let backends flush their table statistics
            writes_after, wal_after = await pg_writes(database_url), await wal_lsn(database_url)
            written = counter_delta(writes_before, writes_after)
            step["pg_wal_bytes"] = wal_after - wal_before
            step["pg_user_table_tuples_written"] = sum(
                v for k, v in written.items() if k.startswith("table.")
            )
            step["pg_counters"] = written
            phases[name] = step
            if name == "typing_only":
                # Every typist's indicator lapses 6 s after its last refresh, and each lapse
                # is an `active: false` to 49 others: let that burst pass before the chat-
                # only baseline, or it measures the burst.
                await asyncio.sleep(TYPING_SETTLE_S)
            say(
                f"typing/{name}: chat p99 {step['send_to_receive_p99_ms']} ms, typing out "
                f"{step['typing_out_s']}/s, WAL {step['pg_wal_bytes']} B, user-table tuples "
                f"{step['pg_user_table_tuples_written']}"
            )
    finally:
        pool.close()
    only = phases["typing_only"]
    return {
        "rooms": args.rooms,
        "members": args.members,
        "rate_per_room": args.rate,
        "step_s": args.step_s,
        **opened,
        "chat_p99_ms_without_typing": phases["chat_only"]["send_to_receive_p99_ms"],
        "chat_p99_ms_with_typing": phases["chat_with_typing"]["send_to_receive_p99_ms"],
        "typing_frames_out_s": phases["chat_with_typing"]["typing_out_s"],
        "typing_only_pg_user_table_tuples_written": only["pg_user_table_tuples_written"],
        "typing_only_pg_wal_bytes": only["pg_wal_bytes"],
        "no_writes_from_typing": only["pg_user_table_tuples_written"] == 0,
        "phases": phases,
    }


async def wal_lsn(database_url: str) -> int:
    """The current WAL position in bytes: every write moves it, reads do not."""
    import asyncpg

    conn = await asyncpg.connect(database_url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        value = await conn.fetchval("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn")
    finally:
        await conn.close()
    return int(value)


async def storm(args: argparse.Namespace, cluster: Cluster) -> dict[str, Any]:
    rooms = max(1, args.connections // args.members)
    pool, total = await make_groups(cluster, "st", rooms, args.members, 500, args.procs)
    try:
        opened = await connect_all(pool, "storm")
        start_at = time.monotonic() + 0.5
        await pool.call(
            "traffic_start", {"step": 0, "rate_per_room": args.rate, "start_at": start_at}
        )
        await asyncio.sleep(args.steady_s)
        before = cluster.snapshot()
        drops = await pool.call("drop")
        dropped_at = min(d["at"] for d in drops)
        say(f"storm: dropped {summed(drops, 'dropped')} connections; reconnecting")
        back = await pool.call("reconnect", {"jitter_s": args.jitter_s})
        after = cluster.snapshot()
        reconnected = summed(back, "reconnected")
        all_back_s = max(r["last_hello"] for r in back) - dropped_at
        all_synced_s = max(r["last_synced"] for r in back) - dropped_at
        say(f"storm: {reconnected} back in {all_back_s:.2f}s, synced in {all_synced_s:.2f}s")
        await asyncio.sleep(args.steady_s)
        stopped = await pool.call("traffic_stop", {"drain_s": args.drain_s})
        presence = await check_presence(pool, cluster)
    finally:
        pool.close()
    missed = summed(stopped, "missed_after_sync")
    return {
        "connections": total,
        "rooms": rooms,
        "members": args.members,
        "rate_per_room": args.rate,
        "jitter_s": args.jitter_s,
        **opened,
        "dropped": summed(drops, "dropped"),
        "reconnected": reconnected,
        "reconnect_failed": summed(back, "failed"),
        "reconnect_attempts": summed(back, "attempts"),
        "sync_retries_after_unavailable": summed(back, "sync_retries"),
        "time_to_all_reconnected_s": round(all_back_s, 3),
        "time_to_all_synced_s": round(all_synced_s, 3),
        "replayed_by_sync": summed(back, "replayed"),
        "messages_sent": summed(stopped, "acked"),
        "missed_after_sync": missed,
        "missed_by_members_not_back": summed(stopped, "missed_not_back"),
        "duplicates_dropped_by_client": summed(stopped, "duplicates"),
        "errors": counters(stopped, "errors"),
        **presence,
        "reconnect_window": cpu_figures(before, after, max(reconnected, 1), "reconnects"),
        **generator_figures(back),
    }


async def check_presence(pool: Pool, cluster: Cluster, per_room: int = 2) -> dict[str, Any]:
    """Close some members gracefully, then ask GET /v1/presence (as each room's sender)
    whether the closed ones are offline and a sample of the others online."""
    samples = await pool.call("sample", {"per_room": per_room})
    deadline = time.monotonic() + 10
    wrong: list[str] = []
    checked = 0
    async with Setup(cluster) as setup:
        while True:
            wrong, checked = [], 0
            for sample in samples:
                for room_users in _rooms_of(sample):
                    viewer, online, offline = room_users
                    states = await setup.presence(viewer, online + offline)
                    checked += len(states)
                    wrong += [u for u in online if not states.get(u)]
                    wrong += [u for u in offline if states.get(u, True)]
            if not wrong or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.5)
    return {
        "presence_checked": checked,
        "presence_wrong": len(wrong),
        "presence_correct": not wrong,
    }


def _rooms_of(sample: dict[str, Any]) -> list[tuple[str, list[str], list[str]]]:
    return [(r["viewer"], r["online"], r["offline"]) for r in sample["rooms"]]


# ---- idle ------------------------------------------------------------------------------


async def idle(args: argparse.Namespace, cluster: Cluster) -> dict[str, Any]:
    targets = [int(x) for x in floats(args.steps)]
    total = max(targets)
    rid = run_id()
    groups = [
        [f"id{rid}-g{i}-m{j}" for j in range(args.group)]
        for i in range((total + args.group - 1) // args.group)
    ]
    say(f"idle: creating {len(groups)} rooms of {args.group}")
    async with Setup(cluster) as setup:
        await setup.groups(groups)
    members = [
        [user, cluster.ws_url(n), cluster.token(user), [u for u in group if u != user]]
        for n, (group, user) in enumerate((g, u) for g in groups for u in g)
    ][:total]
    # Interleaved, so every step takes connections from every worker.
    procs = max(1, min(args.procs, total))
    shares = [members[p::procs] for p in range(procs)]
    pool = Pool("bench.workers:IdleWorker", [{"members": s} for s in shares])
    steps = []
    try:
        await asyncio.sleep(1.0)
        rss0 = cluster.server_rss_kib()
        current = 0
        for target in targets:
            new = target - current
            counts = [len(range(p, new, procs)) for p in range(procs)]
            results = await pool.call(
                "connect", [{"count": c, "concurrency": args.concurrency} for c in counts]
            )
            current = target
            elapsed = max(r["elapsed_s"] for r in results)
            handshakes = sorted(h for r in results for h in r["handshake_s"])
            await asyncio.sleep(2.0)
            await pool.call("frames")
            before = cluster.snapshot()
            await asyncio.sleep(args.idle_s)
            after = cluster.snapshot()
            frames = await pool.call("frames")
            alive = summed(frames, "alive")
            rss = cluster.server_rss_kib()
            window = before.until(after)
            server_cpu = window["server_cpu_s"] or 0.0
            wall = window["wall_s"] or 1.0
            step = {
                "connections": target,
                "alive": alive,
                "connect_failures": summed(results, "failures"),
                "failed": summed(results, "failed"),
                "connect_rate_s": round(new / elapsed, 1) if elapsed else None,
                "handshake_p50_ms": ms(percentile(handshakes, 50)),
                "handshake_p99_ms": ms(percentile(handshakes, 99)),
                "server_rss_kib": rss,
                "server_rss_kib_per_conn": round((rss - rss0) / target, 2),
                "idle_server_cpu_us_s_per_conn": round(server_cpu / wall / target * 1e6, 2),
                "idle_window": window,
                "frames_in_idle_window": counters(frames, "frames"),
                **generator_figures(results),
            }
            steps.append(step)
            say(
                f"idle {target}: {step['server_rss_kib_per_conn']} KiB/conn, "
                f"{step['idle_server_cpu_us_s_per_conn']} µs/s/conn, connect "
                f"{step['connect_rate_s']}/s, handshake p99 {step['handshake_p99_ms']} ms"
            )
    finally:
        pool.close()
    return {
        "group": args.group,
        "heartbeat_s": args.heartbeat_s,
        "idle_s": args.idle_s,
        "server_rss_kib_before": rss0,
        "steps": steps,
    }


# ---- the command -----------------------------------------------------------------------

WORKLOADS: dict[str, Callable[[argparse.Namespace, Cluster], Awaitable[dict[str, Any]]]] = {
    "dm": dm,
    "fanout": fanout,
    "idle": idle,
    "storm": storm,
    "typing": typing,
}


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n\n")[0])
    sub = top.add_subparsers(dest="workload", required=True)

    def add(name: str, text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=text, description=text)
        p.add_argument("--quick", action="store_true", help="a few seconds at small scale")
        p.add_argument("--instances", type=int, choices=(1, 2), default=1)
        p.add_argument("--procs", type=int, default=2, help="generator processes")
        p.add_argument(
            "--keep-logs", action="store_true", help="keep the temp dir with server logs"
        )
        p.add_argument(
            "--keep-going", action="store_true", help="run higher steps after an overload"
        )
        p.add_argument(
            "--server-env",
            action="append",
            default=[],
            metavar="K=V",
            help="extra CHAT_* setting for the servers (repeatable)",
        )
        return p

    def stepped(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--timeline",
            type=float,
            metavar="S",
            help="print each step interval by interval (S seconds): latency, cores used",
        )

    p = add("dm", "direct rooms, open-loop sends at stepped total rates")
    p.add_argument("--pairs", type=int)
    p.add_argument("--rates", help="total msgs/s per step, comma-separated")
    p.add_argument("--step-s", type=float)
    p.add_argument("--ack-ms", type=int, help="delivered-ack coalescing interval")
    p.add_argument("--drain-s", type=float)
    stepped(p)

    p = add("fanout", "R rooms x M members, one sender per room, stepped per-room rate")
    p.add_argument("--rooms", type=int)
    p.add_argument("--members", type=int)
    p.add_argument("--rates", help="msgs/s per room per step, comma-separated")
    p.add_argument("--step-s", type=float)
    p.add_argument("--ack-ms", type=int, help="delivered-ack coalescing (0: no acks)")
    p.add_argument("--drain-s", type=float)
    stepped(p)

    p = add("idle", "N idle connections watching presence, stepped N")
    p.add_argument("--steps", help="connection counts, comma-separated")
    p.add_argument("--group", type=int, help="room size (each watches its room-mates)")
    p.add_argument("--idle-s", type=float)
    p.add_argument("--heartbeat-s", type=float)
    p.add_argument("--concurrency", type=int, help="handshakes in flight per process")

    p = add("storm", "drop every receiver at once under traffic; reconnect with jitter")
    p.add_argument("--connections", type=int)
    p.add_argument("--members", type=int)
    p.add_argument("--rate", type=float, help="msgs/s per room")
    p.add_argument("--jitter-s", type=float)
    p.add_argument("--steady-s", type=float)
    p.add_argument("--drain-s", type=float)

    p = add("typing", "typing once a second by every member, with and without chat")
    p.add_argument("--rooms", type=int)
    p.add_argument("--members", type=int)
    p.add_argument("--rate", type=float, help="chat msgs/s per room")
    p.add_argument("--step-s", type=float)
    p.add_argument("--ack-ms", type=int)
    p.add_argument("--drain-s", type=float)
    stepped(p)
    return top


def resolve(args: argparse.Namespace) -> argparse.Namespace:
    for name, (full, quick) in DEFAULTS[args.workload].items():
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else full)
    return args


def server_env(args: argparse.Namespace) -> dict[str, str]:
    env = dict(item.split("=", 1) for item in args.server_env)
    if args.workload == "idle":
        env.setdefault("CHAT_HEARTBEAT_S", str(args.heartbeat_s))
    return env


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    started = time.monotonic()
    host = machine()
    with Cluster(args.instances, server_env(args), args.keep_logs) as cluster:
        say(f"{args.workload}: {args.instances} instance(s) up")
        figures = await WORKLOADS[args.workload](args, cluster)
        problems = cluster.problems()
    host["reference_loop_ms_at_end"] = reference_loop_ms()
    say(
        f"reference loop {host['reference_loop_ms_at_start']} ms at start, "
        f"{host['reference_loop_ms_at_end']} ms at end"
    )
    return {
        "workload": args.workload,
        "quick": args.quick,
        "instances": args.instances,
        "generator_processes": args.procs,
        "machine": host,
        **figures,
        "server_log_problems": problems,
        "elapsed_s": round(time.monotonic() - started, 1),
    }


def main(argv: Sequence[str] | None = None) -> None:
    args = resolve(parser().parse_args(argv))
    raise_fd_limit()
    import uvloop

    result = uvloop.run(main_async(args))
    print(json.dumps(result, separators=(",", ":")), flush=True)


if __name__ == "__main__":
    main()
