"""What runs inside a generator process: one class per kind of workload, each holding a
share of the connections and answering the parent's commands (`cmd_*`).

Every chat message's body is `"<step>:<scheduled send time>"`, so any receiver can time
it from when it was due (open loop: a late send counts against the server's latency)
and tell which step it belongs to. Checks are by seq per room: a seq seen twice by one
connection is a duplicate, a seq lower than one already seen is out of order, and an
acknowledged seq a member never saw is lost.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from array import array
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bench.gen import Conn, open_conn, open_many

TICK_S = 0.001
SYNC_RETRIES = 8


async def open_loop(
    start_at: float, rate: float, count: int, emit: Callable[[int, float], None]
) -> None:
    """Call emit(k, due) for k < count at due = start_at + k / rate, catching up in a
    burst when the loop wakes late (so lateness shows up as latency, not lower load).

    Sleeps are at least one tick: uvloop's timers have millisecond resolution, so a
    shorter sleep wakes at once with nothing due, and at thousands of messages a second
    the generator spun a whole core doing that, taking it from the server."""
    k = 0
    while k < count:
        now = time.monotonic()
        while k < count and start_at + k / rate <= now:
            emit(k, start_at + k / rate)
            k += 1
        if k < count:
            await asyncio.sleep(max(TICK_S, start_at + k / rate - time.monotonic()))


class Acker:
    """Coalesced `delivered` frames: every interval, the highest seq per room per
    connection that moved."""

    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self.sent = 0
        self._dirty: dict[Conn, dict[str, int]] = {}
        self._task: asyncio.Task[None] | None = None

    def saw(self, conn: Conn, room_id: str, seq: int) -> None:
        if self.interval_s <= 0:
            return
        rooms = self._dirty.setdefault(conn, {})
        if seq > rooms.get(room_id, 0):
            rooms[room_id] = seq

    def start(self) -> None:
        if self.interval_s > 0 and self._task is None:
            self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            dirty, self._dirty = self._dirty, {}
            for conn, rooms in dirty.items():
                for room_id, seq in rooms.items():
                    if conn.send({"type": "delivered", "room_id": room_id, "seq": seq}):
                        self.sent += 1

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None


def send_frame(frame_id: str, room_id: str, body: str) -> dict[str, Any]:
    return {
        "type": "send",
        "id": frame_id,
        "room_id": room_id,
        "client_msg_id": str(uuid.uuid4()),
        "kind": "text",
        "body": body,
    }


async def wait_for(condition: Callable[[], bool], deadline: float, every_s: float = 0.05) -> bool:
    while not condition():
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(every_s)
    return True


async def drain(
    complete: Callable[[], bool], progress: Callable[[], int], stall_s: float, cap_s: float
) -> float:
    """Wait until complete, for as long as something still arrives: gives up after
    stall_s without progress (what is missing then is lost) or cap_s in all."""
    started = last_change = time.monotonic()
    last = progress()
    while not complete():
        now = time.monotonic()
        current = progress()
        if current != last:
            last, last_change = current, now
        elif now - last_change > stall_s or now - started > cap_s:
            break
        await asyncio.sleep(0.05)
    return time.monotonic() - started


# ---- dm --------------------------------------------------------------------------------


class DmWorker:
    """Pairs of users, one direct room each; both sides send (alternating) and each
    receives the other's messages and acknowledges them."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.pairs: list[dict[str, Any]] = spec["pairs"]
        self.acker = Acker(spec["ack_ms"] / 1000)
        self.conns: list[tuple[Conn, Conn]] = []
        self.step = -1
        self._reset()
        self.seen: dict[tuple[Any, str], set[int]] = {}
        self.top: dict[tuple[Any, str], int] = {}

    def _reset(self) -> None:
        self.pending: dict[str, tuple[float, str]] = {}
        self.acked: set[tuple[str, int]] = set()
        self.received: set[tuple[str, int]] = set()
        self.lat = array("d")
        self.due = array("d")  # when each message of `lat` was due, for the timeline
        self.ack_lat = array("d")
        self.errors: Counter[str] = Counter()
        self.other: Counter[str] = Counter()
        self.dups = self.ooo = self.stale = self.shed = 0
        self.last_recv = 0.0

    async def cmd_connect(self) -> dict[str, Any]:
        targets = []
        for i, p in enumerate(self.pairs):
            targets.append((p["url_a"], p["a"], p["token_a"], (i, 0)))
            targets.append((p["url_b"], p["b"], p["token_b"], (i, 1)))
        conns, failures = await open_many(targets, self.on_frame)
        if any(c is None for c in conns):
            raise RuntimeError(f"{sum(c is None for c in conns)} connections failed")
        opened = [c for c in conns if c is not None]
        self.conns = list(zip(opened[::2], opened[1::2], strict=True))
        self.acker.start()
        return {"connected": len(opened), "failures": failures}

    def on_frame(self, conn: Conn, data: dict[str, Any], now: float) -> None:
        kind = data.get("type")
        if kind == "message":
            message = data["message"]
            room_id, seq = message["room_id"], message["seq"]
            key = (conn.tag, room_id)
            seen = self.seen.setdefault(key, set())
            if seq in seen:
                self.dups += 1
                return
            if seq < self.top.get(key, 0):
                self.ooo += 1
            else:
                self.top[key] = seq
            seen.add(seq)
            self.acker.saw(conn, room_id, seq)
            step, due = message["body"].split(":")
            if int(step) != self.step:
                self.stale += 1
                return
            self.received.add((room_id, seq))
            self.lat.append(now - float(due))
            self.due.append(float(due))
            self.last_recv = now
        elif kind == "ack":
            frame_id = data.get("id")
            sent = self.pending.pop(frame_id, None) if frame_id is not None else None
            if sent is not None:
                self.ack_lat.append(now - sent[0])
                self.acked.add((sent[1], data["data"]["message"]["seq"]))
        elif kind == "error":
            self.errors[str(data.get("code"))] += 1
            if data.get("id") is not None:
                self.pending.pop(data["id"], None)
        else:
            self.other[str(kind)] += 1

    async def cmd_step(
        self,
        step: int,
        rate: float,
        duration_s: float,
        start_at: float,
        drain_s: float,
        max_backlog: int,
    ) -> dict[str, Any]:
        self._reset()
        self.step = step
        count = int(rate * duration_s)
        pairs = len(self.conns)

        def emit(k: int, due: float) -> None:
            if len(self.pending) >= max_backlog:
                self.shed += 1  # the server is this far behind: stop piling on
                return
            index = k % pairs
            sender = self.conns[index][(k // pairs) % 2]
            room_id = self.pairs[index]["room"]
            frame_id = f"{step}.{k}"
            self.pending[frame_id] = (due, room_id)
            if not sender.send(send_frame(frame_id, room_id, f"{step}:{due!r}")):
                self.pending.pop(frame_id, None)
                self.errors["not_connected"] += 1

        if count:
            await open_loop(start_at, rate, count, emit)
        sent_until = time.monotonic()
        drained = await drain(
            lambda: not self.pending and self.acked <= self.received,
            lambda: len(self.acked) + len(self.received),
            drain_s,
            max(60.0, 3 * duration_s),
        )
        return {
            "sent": count - self.shed,
            "shed": self.shed,
            "drain_s": drained,
            "acked": len(self.acked),
            "unacked": len(self.pending),
            "received": len(self.received),
            "lost": len(self.acked - self.received),
            "duplicates": self.dups,
            "out_of_order": self.ooo,
            "stale": self.stale,
            "errors": dict(self.errors),
            "other_frames": dict(self.other),
            "lat": self.lat.tobytes(),
            "due": self.due.tobytes(),
            "ack_lat": self.ack_lat.tobytes(),
            "sent_until": sent_until,
            "last_recv": self.last_recv,
            "closed": sum(not c.alive for pair in self.conns for c in pair),
            "delivered_frames": self.acker.sent,
        }

    async def cmd_close(self) -> dict[str, Any]:
        self.acker.stop()
        for pair in self.conns:
            for conn in pair:
                conn.close()
        return {}


# ---- groups: fanout, typing, storm ----------------------------------------------------


@dataclass(eq=False)
class Member:
    """One member's connection state, kept across its reconnects."""

    room: int
    index: int
    user_id: str
    url: str
    token: str
    seen: set[int] = field(default_factory=set)
    top: int = 0
    contig: int = 0
    conn: Conn | None = None
    synced: bool = True
    sync_answer: asyncio.Future[dict[str, Any]] | None = None


class GroupWorker:
    """Rooms of M members; member 0 of each room sends (open loop), the others receive
    and acknowledge. Optionally every member sends `typing` once a second. For the storm,
    the receivers can be dropped and reconnected with jitter, catching up with `sync`."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.room_ids: list[str] = [r["room"] for r in spec["rooms"]]
        self.members: list[list[Member]] = [
            [Member(i, j, *m) for j, m in enumerate(r["members"])]
            for i, r in enumerate(spec["rooms"])
        ]
        self.acker = Acker(spec["ack_ms"] / 1000)
        self.step = -1
        self.sent_seqs: dict[int, list[int]] = {i: [] for i in range(len(self.room_ids))}
        self.traffic: asyncio.Task[None] | None = None
        self.traffic_plan = (0.0, 0.0)
        self.dropped: list[Member] = []
        self._reset()

    def _reset(self) -> None:
        self.pending: dict[str, tuple[float, int]] = {}
        self.acked: dict[tuple[int, int], float] = {}
        self.deliveries: dict[tuple[int, int], list[float]] = {}
        self.lat = array("d")
        self.due = array("d")  # when each delivery of `lat` was due, for the timeline
        self.errors: Counter[str] = Counter()
        self.other: Counter[str] = Counter()
        self.dups = self.ooo = self.stale = 0
        self.typing_in = self.typing_out = 0
        self.last_recv = 0.0
        self.replayed = 0
        self.shed = 0
        self.max_backlog = 10**9

    def _all(self) -> list[Member]:
        return [m for room in self.members for m in room]

    async def cmd_connect(self, concurrency: int = 64) -> dict[str, Any]:
        members = self._all()
        targets = [(m.url, m.user_id, m.token, m) for m in members]
        started = time.monotonic()
        conns, failures = await open_many(targets, self.on_frame, concurrency)
        for member, conn in zip(members, conns, strict=True):
            if conn is None:
                raise RuntimeError(f"{member.user_id} could not connect")
            member.conn = conn
        self.acker.start()
        return {
            "connected": len(conns),
            "failures": failures,
            "elapsed_s": time.monotonic() - started,
            "handshake_s": [c.handshake_s for c in conns if c is not None],
        }

    def on_frame(self, conn: Conn, data: dict[str, Any], now: float) -> None:
        kind = data.get("type")
        member: Member = conn.tag
        if kind == "message":
            message = data["message"]
            seq = message["seq"]
            if seq in member.seen:
                self.dups += 1
                return
            if seq < member.top:
                self.ooo += 1
            else:
                member.top = seq
            member.seen.add(seq)
            while member.contig + 1 in member.seen:
                member.contig += 1
            self.acker.saw(conn, message["room_id"], seq)
            step, due = message["body"].split(":")
            if int(step) != self.step:
                self.stale += 1
                return
            self.deliveries.setdefault((member.room, seq), []).append(now)
            self.lat.append(now - float(due))
            self.due.append(float(due))
            self.last_recv = now
        elif kind == "typing":
            self.typing_in += 1
        elif kind == "ack":
            self._on_ack(member, data)
        elif kind == "error":
            self.errors[str(data.get("code"))] += 1
            frame_id = data.get("id")
            if frame_id is not None:
                self.pending.pop(frame_id, None)
                answer = member.sync_answer
                if frame_id[0] == "y" and answer is not None and not answer.done():
                    answer.set_exception(RuntimeError(str(data)))
        else:
            self.other[str(kind)] += 1

    def _on_ack(self, member: Member, data: dict[str, Any]) -> None:
        frame_id = data.get("id")
        if frame_id is None:
            return
        if frame_id[0] == "s":
            sent = self.pending.pop(frame_id, None)
            if sent is not None:
                seq = data["data"]["message"]["seq"]
                self.acked[(sent[1], seq)] = sent[0]
                self.sent_seqs[sent[1]].append(seq)
        elif frame_id[0] == "y":
            answer = member.sync_answer
            if answer is not None and not answer.done():
                answer.set_result(data["data"])

    def _emitter(self, step: int) -> Callable[[int, float], None]:
        rooms = len(self.room_ids)

        def emit(k: int, due: float) -> None:
            if len(self.pending) >= self.max_backlog:
                self.shed += 1  # the server is this far behind: stop piling on
                return
            room = k % rooms
            sender = self.members[room][0].conn
            frame_id = f"s{step}.{k}"
            self.pending[frame_id] = (due, room)
            body = f"{step}:{due!r}"
            if sender is None or not sender.send(send_frame(frame_id, self.room_ids[room], body)):
                self.pending.pop(frame_id, None)
                self.errors["not_connected"] += 1

        return emit

    async def _typing(self, start_at: float, duration_s: float) -> None:
        members = [m for m in self._all() if m.conn is not None]
        if not members:
            return

        def emit(k: int, due: float) -> None:
            member = members[k % len(members)]
            frame = {"type": "typing", "room_id": self.room_ids[member.room], "active": True}
            if member.conn is not None and member.conn.send(frame):
                self.typing_out += 1

        # Each member once a second, spread evenly over the second.
        await open_loop(start_at, len(members), int(len(members) * duration_s), emit)

    def _receivers(self) -> dict[int, int]:
        return {room: len(members) - 1 for room, members in enumerate(self.members)}

    def _complete(self) -> bool:
        if self.pending:
            return False
        receivers = self._receivers()
        return all(len(self.deliveries.get(key, ())) >= receivers[key[0]] for key in self.acked)

    def _figures(self, count: int, sent_until: float) -> dict[str, Any]:
        receivers = self._receivers()
        expected = sum(receivers[key[0]] for key in self.acked)
        delivered = sum(
            min(len(self.deliveries.get(key, ())), receivers[key[0]]) for key in self.acked
        )
        last_member = array(
            "d",
            (
                max(self.deliveries[key]) - due
                for key, due in self.acked.items()
                if receivers[key[0]] and len(self.deliveries.get(key, ())) >= receivers[key[0]]
            ),
        )
        return {
            "sent": count - self.shed,
            "shed": self.shed,
            "acked": len(self.acked),
            "unacked": len(self.pending),
            "deliveries": len(self.lat),
            "expected_deliveries": expected,
            "missing": expected - delivered,
            "duplicates": self.dups,
            "out_of_order": self.ooo,
            "stale": self.stale,
            "errors": dict(self.errors),
            "other_frames": dict(self.other),
            "typing_out": self.typing_out,
            "typing_in": self.typing_in,
            "lat": self.lat.tobytes(),
            "due": self.due.tobytes(),
            "last_member_lat": last_member.tobytes(),
            "sent_until": sent_until,
            "last_recv": self.last_recv,
            "closed": sum(1 for m in self._all() if m.conn is None or not m.conn.alive),
            "delivered_frames": self.acker.sent,
        }

    async def cmd_step(
        self,
        step: int,
        rate_per_room: float,
        duration_s: float,
        start_at: float,
        drain_s: float,
        typing: bool = False,
        max_backlog: int = 10**9,
    ) -> dict[str, Any]:
        self._reset()
        self.step = step
        self.max_backlog = max_backlog
        rate = rate_per_room * len(self.room_ids)
        count = int(rate * duration_s)
        jobs = []
        if count:
            jobs.append(open_loop(start_at, rate, count, self._emitter(step)))
        if typing:
            jobs.append(self._typing(start_at, duration_s))
        await asyncio.gather(*jobs)
        sent_until = time.monotonic()
        if not count:
            await asyncio.sleep(min(drain_s, 1.0))  # the last typing frames land
        drained = await drain(
            self._complete,
            lambda: len(self.lat) + len(self.acked),
            drain_s,
            max(60.0, 3 * duration_s),
        )
        figures = self._figures(count, sent_until)
        figures["drain_s"] = drained
        return figures

    # ---- storm -------------------------------------------------------------------------

    async def cmd_traffic_start(
        self, step: int, rate_per_room: float, start_at: float
    ) -> dict[str, Any]:
        self._reset()
        self.step = step
        rate = rate_per_room * len(self.room_ids)
        endless = 10**9
        self.traffic = asyncio.create_task(open_loop(start_at, rate, endless, self._emitter(step)))
        self.traffic_plan = (start_at, rate)
        return {}

    async def cmd_drop(self) -> dict[str, Any]:
        """Drop every receiver's TCP connection at once, with no close frame."""
        self.dropped = [m for room in self.members for m in room[1:]]
        for member in self.dropped:
            member.synced = False
            if member.conn is not None:
                member.conn.abort()
                member.conn = None
        return {"dropped": len(self.dropped), "at": time.monotonic()}

    async def cmd_reconnect(self, jitter_s: float, sync_limit: int = 100) -> dict[str, Any]:
        """Each dropped member comes back after a uniform random wait in [0, jitter_s]
        (then exponential backoff with full jitter if refused) and syncs from its cursor."""
        rng = random.Random()  # noqa: S311 (jitter)
        attempts = failed = sync_retries = 0
        hellos: list[float] = []
        synced: list[float] = []

        async def back(member: Member) -> None:
            nonlocal attempts, failed, sync_retries
            await asyncio.sleep(rng.uniform(0, jitter_s))
            conn = None
            for attempt in range(12):
                attempts += 1
                try:
                    conn = await open_conn(
                        member.url, member.user_id, member.token, self.on_frame, member
                    )
                    break
                except Exception:  # refused, reset, timed out: back off and retry
                    await asyncio.sleep(rng.uniform(0, min(5.0, 0.25 * 2**attempt)))
            if conn is None:
                failed += 1
                return
            member.conn = conn
            hellos.append(time.monotonic())
            room_id = self.room_ids[member.room]
            retries = 0
            for _ in range(100):
                member.sync_answer = asyncio.get_running_loop().create_future()
                frame = {
                    "type": "sync",
                    "id": f"y{member.room}.{member.index}",
                    "cursors": {room_id: member.contig},
                    "limit": sync_limit,
                }
                before = len(member.seen)
                conn.send(frame)
                try:
                    answer = await asyncio.wait_for(member.sync_answer, 20)
                except RuntimeError as exc:
                    # UNAVAILABLE means "nothing was done, retry": a client backs off
                    # (full jitter) and asks again, as it does for a refused connect.
                    if "UNAVAILABLE" in str(exc) and retries < SYNC_RETRIES:
                        retries += 1
                        sync_retries += 1
                        await asyncio.sleep(rng.uniform(0, min(5.0, 0.25 * 2**retries)))
                        continue
                    failed += 1
                    return
                except TimeoutError:
                    failed += 1
                    return
                self.replayed += len(member.seen) - before
                if not answer["rooms"].get(room_id, {}).get("has_more"):
                    break
            member.synced = True
            synced.append(time.monotonic())

        await asyncio.gather(*(back(m) for m in self.dropped))
        return {
            "reconnected": len(hellos),
            "synced": len(synced),
            "failed": failed,
            "attempts": attempts,
            "sync_retries": sync_retries,
            "last_hello": max(hellos, default=0.0),
            "last_synced": max(synced, default=0.0),
            "replayed": self.replayed,
        }

    async def cmd_traffic_stop(self, drain_s: float) -> dict[str, Any]:
        if self.traffic is not None:
            self.traffic.cancel()
            await asyncio.gather(self.traffic, return_exceptions=True)
        sent_until = time.monotonic()
        start_at, rate = self.traffic_plan
        count = int((sent_until - start_at) * rate) + 1
        receivers = [m for m in self._all() if m.index]

        def caught_up() -> bool:
            return not self.pending and all(
                m.seen.issuperset(self.sent_seqs[m.room]) for m in receivers
            )

        await drain(
            caught_up, lambda: len(self.lat) + sum(len(m.seen) for m in receivers), 5.0, drain_s
        )
        missed = Counter(m.synced for m in receivers for _ in set(self.sent_seqs[m.room]) - m.seen)
        figures = self._figures(count, sent_until)
        # Only members that reconnected and synced are expected to have everything.
        figures["missed_after_sync"] = missed[True]
        figures["missed_not_back"] = missed[False]
        figures.pop("lat")
        figures.pop("last_member_lat")
        figures.pop("due")
        return figures

    async def cmd_sample(self, per_room: int, rooms: int = 5) -> dict[str, Any]:
        """Users to check presence of, per room (as its sender, who shares the room):
        some connected receivers, and some closed now, gracefully, that should be offline."""
        sample = []
        for room in self.members[:rooms]:
            receivers = room[1:]
            offline = receivers[-per_room:]
            online = [m for m in receivers[:per_room] if m not in offline]
            for member in offline:
                if member.conn is not None:
                    member.conn.close()
                    member.conn = None
            sample.append(
                {
                    "viewer": room[0].user_id,
                    "online": [m.user_id for m in online],
                    "offline": [m.user_id for m in offline],
                }
            )
        return {"rooms": sample}

    async def cmd_close(self) -> dict[str, Any]:
        self.acker.stop()
        if self.traffic is not None:
            self.traffic.cancel()
        for member in self._all():
            if member.conn is not None:
                member.conn.close()
        return {}


# ---- idle ------------------------------------------------------------------------------


class IdleWorker:
    """Connections that only watch their room-mates' presence and answer pings."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.members: list[list[Any]] = spec["members"]
        self.conns: list[Conn] = []
        self.frames: Counter[str] = Counter()
        self.watch_acks = 0

    def on_frame(self, conn: Conn, data: dict[str, Any], now: float) -> None:
        kind = str(data.get("type"))
        self.frames[kind] += 1
        if kind == "ack" and str(data.get("id", "")).startswith("w"):
            self.watch_acks += 1

    async def cmd_connect(self, count: int, concurrency: int) -> dict[str, Any]:
        chunk = self.members[len(self.conns) : len(self.conns) + count]
        targets = [(url, user_id, token, watch) for user_id, url, token, watch in chunk]
        acks_before = self.watch_acks
        started = time.monotonic()
        conns, failures = await open_many(targets, self.on_frame, concurrency)
        elapsed = time.monotonic() - started
        opened = [c for c in conns if c is not None]
        for i, conn in enumerate(opened):
            conn.send({"type": "presence.watch", "id": f"w{i}", "user_ids": conn.tag})
        self.conns.extend(opened)
        await wait_for(lambda: self.watch_acks - acks_before >= len(opened), time.monotonic() + 30)
        return {
            "connected": len(opened),
            "failed": len(conns) - len(opened),
            "failures": failures,
            "elapsed_s": elapsed,
            "handshake_s": [c.handshake_s for c in opened],
            "watch_acks": self.watch_acks - acks_before,
        }

    async def cmd_frames(self) -> dict[str, Any]:
        frames, self.frames = self.frames, Counter()
        return {"frames": dict(frames), "alive": sum(c.alive for c in self.conns)}

    async def cmd_close(self) -> dict[str, Any]:
        for conn in self.conns:
            conn.close()
        return {}
