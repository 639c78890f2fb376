"""Redis pub/sub behind a small interface: publish pipelined, subscribe by channel, one
reader task per instance on one connection.

Pub/sub is at-most-once: anything published while the subscription is down is gone. The
reader therefore reports every reconnect, so the layer above can tell its clients to
`sync` from PostgreSQL, which holds every acknowledged message.

The other way round, a publish this instance had to drop (Redis away, or in backoff) is
lost for every other instance, even one whose subscription never broke or has already
come back and resynced. So a drop is remembered, and the next publish that gets through
(or the reader, once Redis answers again) also sends a notice on `channels.RESYNC`; every
other instance then tells its clients to `sync`, which replays what was dropped.

An instance receives what it publishes to a channel it follows itself, and would decode
it only to drop it: in a single instance, every publish. So publishes go through a
script (`publish.lua`) that skips a channel no other instance subscribes to, counting
subscribers and publishing atomically. The caller says whether its own subscription is
among those counted; it claims so only once Redis has confirmed the subscription with
nothing unanswered since, and withdraws the claim before it unsubscribes (after the batch
in flight has landed). The script honours a claim only while the caller's subscription
connection is alive (its home channel has a subscriber), so a connection that died
unnoticed makes publishes go out rather than be skipped: nobody else misses anything.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path

import structlog
from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.exceptions import RedisError

from app import background
from app.infra.bus import channels, envelope
from app.infra.bus.confirmations import Confirmations
from app.infra.bus.script_connection import ScriptConnection
from app.infra.metrics import Metrics
from app.infra.redis_client import TIMEOUT_S

log = structlog.get_logger(__name__)

OnMessage = Callable[[str, bytes], Awaitable[None]]
OnReconnect = Callable[[], Awaitable[None]]

RETRY_S = 0.5
# After a failed PUBLISH, skip Redis for this long instead of making every send wait for
# a connect timeout; clients catch up with `sync` once the bus is back (`resync`).
BACKOFF_S = 1.0
# What a call to Redis may fail with. RuntimeError: uvloop refuses to write to a transport
# that was closed under a pooled connection (seen after a Redis restart behind a proxy).
REDIS_DOWN = (RedisError, OSError, RuntimeError)
# Messages queued behind the round trip in flight past which even a caller that would
# rather not wait for Redis does (see `publish`): what a slow Redis can make pile up.
MAX_BACKLOG = 10_000
PUBLISH_LUA = Path(__file__).with_name("publish.lua")


class RedisBus:
    def __init__(
        self,
        redis: Redis,
        metrics: Metrics,
        home_channel: str,
        heartbeat_s: float,
        *,
        max_backlog: int = MAX_BACKLOG,
    ) -> None:
        self._redis = redis
        self._max_backlog = max_backlog
        self._heartbeat_s = heartbeat_s
        self._skip_until = 0.0
        self._metrics = metrics
        # Subscribe confirmations are read: they tell which subscriptions are in force.
        self._pubsub: PubSub = redis.pubsub()
        self._channels: set[str] = {home_channel, channels.RESYNC}
        self._confirmed = Confirmations()
        self._publish_script = ScriptConnection(redis, PUBLISH_LUA.read_text(), TIMEOUT_S)
        # redis-py re-established the subscription connection by itself: treated as the
        # failure it hides (what was published in between is lost).
        self._reconnected = False
        # Done when the batch in flight has landed (None: nothing in flight).
        self._sending: asyncio.Future[None] | None = None
        self._home = home_channel
        # Something was dropped since the last publish that got through: announce a resync.
        self._dropped = False
        self._resync_notice = envelope.encode({"o": channels.instance_id_of(home_channel)})
        self._reader: asyncio.Task[None] | None = None
        self.connected = asyncio.Event()
        # Publishes waiting for the flusher, and their callers' answers.
        self._outgoing: list[tuple[str, bytes]] = []
        self._waiting: list[asyncio.Future[bool]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def publish(self, messages: Iterable[tuple[str, bytes]], *, wait: bool = True) -> bool:
        """PUBLISH each (channel, data); False when Redis is unreachable.

        Every publish waiting at the same moment goes out in one pipelined round trip,
        in call order, from one flusher: thousands of concurrent callers (a typing storm,
        a reconnect storm) then use one Redis connection instead of exhausting the pool.
        Never raises: it runs after the commit, so the sender's answer must not depend on it.

        Without `wait` it returns True once the messages are queued (still in call order),
        unless `max_backlog` are queued already: a write lane then starts its next batch
        while this one's round trip is under way, and waits only on a Redis that falls
        behind. A failure is handled here as for any publish (remembered, and announced
        as a resync once Redis answers).
        """
        batch = list(messages)
        if not batch and not self._dropped:
            return True
        answer = asyncio.get_running_loop().create_future()
        self._outgoing.extend(batch)
        self._waiting.append(answer)
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush(), name="bus-publisher")
        if not wait and len(self._outgoing) < self._max_backlog:
            return True
        result: bool = await answer
        return result

    async def _flush(self) -> None:
        while self._waiting:
            batch, self._outgoing = self._outgoing, []
            waiting, self._waiting = self._waiting, []
            self._sending = asyncio.get_running_loop().create_future()
            try:
                sent = await self._send(batch)
            except BaseException:
                for answer in waiting:
                    if not answer.done():
                        answer.set_result(False)
                raise
            finally:
                self._sending.set_result(None)
                self._sending = None
            for answer in waiting:
                if not answer.done():
                    answer.set_result(sent)

    async def _send(self, batch: list[tuple[str, bytes]]) -> bool:
        """One pipelined round trip (retried once); False when Redis is unreachable."""
        loop = asyncio.get_running_loop()
        if loop.time() < self._skip_until:
            self._dropped = self._dropped or bool(batch)
            self._metrics.store_errors.labels(store="redis").inc()
            return False
        error: BaseException | None = None
        # Twice: after a Redis restart each stale pooled connection fails once, and the
        # second try gets a fresh one; only then is Redis taken to be down.
        for _ in range(2):
            if self._dropped:
                batch.append((channels.RESYNC, self._resync_notice))
            args: list[str | bytes | int] = [self._home]
            for channel, data in batch:
                args += (channel, data, 1 if channel in self._confirmed else 0)
            try:
                sent = await self._publish_script.run(args)
            except REDIS_DOWN as exc:
                error = exc
                if self._dropped:
                    batch.pop()
                continue
            self._metrics.publishes_skipped.inc(len(batch) - int(sent))
            if self._dropped:
                log.info("bus_resync_announced")
            self._dropped = False
            return True
        self._dropped = True
        self._metrics.store_errors.labels(store="redis").inc()
        self._skip_until = loop.time() + BACKOFF_S
        log.warning("publish_failed", error=type(error).__name__, messages=len(batch))
        return False

    async def subscribe(self, names: Iterable[str]) -> None:
        new = set(names) - self._channels
        if not new:
            return
        self._channels |= new
        if not self.connected.is_set():
            return  # the reader subscribes every remembered channel once connected
        self._confirmed.asked(new)
        try:
            await self._pubsub.subscribe(*new)
        except REDIS_DOWN as exc:
            # The reader resubscribes every remembered channel when it reconnects.
            log.warning("subscribe_failed", error=type(exc).__name__)

    async def until_subscribed(self, names: Iterable[str], timeout_s: float = TIMEOUT_S) -> bool:
        """Wait until Redis has confirmed this instance's subscription to each channel it
        follows of `names`: a publish Redis runs from then on reaches it. False at once
        while the subscription connection is down, or if it took longer than `timeout_s`
        (either way the reader resyncs the clients once Redis is back)."""
        if not self.connected.is_set():
            return False
        return await self._confirmed.until((n for n in names if n in self._channels), timeout_s)

    async def unsubscribe(self, names: Iterable[str]) -> None:
        gone = (set(names) & self._channels) - {self._home, channels.RESYNC}
        if not gone:
            return
        self._channels -= gone
        self._confirmed.withdraw(gone)
        if self._sending is not None:
            # That batch was built while these counted as ours: Redis must still count us
            # when it runs, or another instance's only copy could be skipped.
            await asyncio.shield(self._sending)
        gone -= self._channels  # followed again in the meantime: stay subscribed
        if not gone or not self.connected.is_set():
            return
        self._confirmed.asked(gone)
        try:
            await self._pubsub.unsubscribe(*gone)
        except REDIS_DOWN as exc:
            log.warning("unsubscribe_failed", error=type(exc).__name__)

    def start(self, on_message: OnMessage, on_reconnect: OnReconnect) -> None:
        self._reader = asyncio.create_task(self._read(on_message, on_reconnect), name="bus-reader")

    async def stop(self) -> None:
        if self._reader is not None:
            await background.stop([self._reader])
        if self._flusher is not None:
            await background.stop([self._flusher])
        with contextlib.suppress(*REDIS_DOWN):
            await asyncio.wait_for(self._pubsub.aclose(), 2.0)  # type: ignore[no-untyped-call]
        with contextlib.suppress(*REDIS_DOWN):
            await asyncio.wait_for(self._publish_script.close(), 2.0)

    async def _read(self, on_message: OnMessage, on_reconnect: OnReconnect) -> None:
        first = True
        while True:
            try:
                sent: set[str] = set()
                # Channels remembered while this subscribe was on its way go out too.
                while missing := self._channels - sent:
                    self._confirmed.asked(missing)
                    sent |= missing
                    await self._pubsub.subscribe(*missing)
                if self._pubsub.connection is not None:
                    self._pubsub.connection.register_connect_callback(self._on_reconnected)
                self.connected.set()
                if not first:
                    log.info("bus_resubscribed", channels=len(self._channels))
                    # Redis answers again: publish at once (and announce what was dropped).
                    self._skip_until = 0.0
                    await self.publish([])
                    await on_reconnect()
                first = False
                await self._listen(on_message)
            except asyncio.CancelledError:
                raise
            # Anything else too: a reader that dies leaves this instance deaf for good.
            except Exception as exc:
                self.connected.clear()
                self._metrics.store_errors.labels(store="redis").inc()
                log.warning("bus_disconnected", error=type(exc).__name__)
                await self._reset()
                await asyncio.sleep(RETRY_S)

    async def _listen(self, on_message: OnMessage) -> None:
        """Read until the connection fails or stalls.

        A subscription can die silently (a stalled or black-holed link); a PING on it every
        heartbeat, answered in band, tells: no traffic for two heartbeats means stalled.
        """
        loop = asyncio.get_running_loop()
        heard = loop.time()
        pinged = heard
        while True:
            message = await self._pubsub.get_message(timeout=self._heartbeat_s / 2)
            if self._reconnected:
                raise ConnectionError("pub/sub connection re-established underneath")
            now = loop.time()
            if message is not None:
                heard = now
                if message["type"] == "message":
                    await on_message(message["channel"].decode(), message["data"])
                elif message["type"] in ("subscribe", "unsubscribe"):
                    channel = message["channel"].decode()
                    self._confirmed.answered(channel, channel in self._channels)
            if now - heard > 2 * self._heartbeat_s:
                raise ConnectionError("pub/sub connection stalled")
            if now - pinged >= self._heartbeat_s:
                pinged = now
                await asyncio.wait_for(self._pubsub.ping(), self._heartbeat_s)
                if self._dropped:  # no publish since the drop has announced it yet
                    await self.publish([])

    def _on_reconnected(self, _connection: object) -> None:
        self._reconnected = True

    async def _reset(self) -> None:
        """A fresh connection for the next attempt; the old one may be half-broken, and
        no subscription counts as ours until Redis confirms it on the new one."""
        self._confirmed.clear()
        self._reconnected = False
        if self._pubsub.connection is not None:
            # The connection goes back to the pool: its later reconnects are not ours.
            self._pubsub.connection.deregister_connect_callback(self._on_reconnected)
        with contextlib.suppress(RedisError, OSError):
            await self._pubsub.aclose()  # type: ignore[no-untyped-call]
        self._pubsub = self._redis.pubsub()
