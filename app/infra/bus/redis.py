"""Redis pub/sub behind a small interface: publish pipelined, subscribe by channel, one
reader task per instance on one connection.

Pub/sub is at-most-once: anything published while the subscription is down is gone. The
reader therefore reports every reconnect, so the layer above can tell its clients to
`sync` from PostgreSQL, which holds every acknowledged message.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterable

import structlog
from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.exceptions import RedisError

from app.infra.metrics import Metrics

log = structlog.get_logger(__name__)

OnMessage = Callable[[str, bytes], Awaitable[None]]
OnReconnect = Callable[[], Awaitable[None]]

RETRY_S = 0.5
# After a failed PUBLISH, skip Redis for this long instead of making every send wait for
# a connect timeout; clients catch up with `sync` once the bus is back (`resync`).
BACKOFF_S = 1.0


class RedisBus:
    def __init__(
        self, redis: Redis, metrics: Metrics, home_channel: str, heartbeat_s: float
    ) -> None:
        self._redis = redis
        self._heartbeat_s = heartbeat_s
        self._skip_until = 0.0
        self._metrics = metrics
        self._pubsub: PubSub = redis.pubsub(ignore_subscribe_messages=True)
        self._channels: set[str] = {home_channel}
        self._home = home_channel
        self._reader: asyncio.Task[None] | None = None
        self.connected = asyncio.Event()

    async def publish(self, messages: Iterable[tuple[str, bytes]]) -> bool:
        """PUBLISH each (channel, data) in one round trip; False when Redis is unreachable."""
        batch = list(messages)
        if not batch:
            return True
        loop = asyncio.get_running_loop()
        if loop.time() < self._skip_until:
            self._metrics.store_errors.labels(store="redis").inc()
            return False
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for channel, data in batch:
                    pipe.publish(channel, data)
                await pipe.execute()
        except (RedisError, OSError) as exc:
            self._metrics.store_errors.labels(store="redis").inc()
            self._skip_until = loop.time() + BACKOFF_S
            log.warning("publish_failed", error=type(exc).__name__, messages=len(batch))
            return False
        return True

    async def subscribe(self, channels: Iterable[str]) -> None:
        new = set(channels) - self._channels
        if not new:
            return
        self._channels |= new
        try:
            await self._pubsub.subscribe(*new)
        except (RedisError, OSError) as exc:
            # The reader resubscribes every remembered channel when it reconnects.
            log.warning("subscribe_failed", error=type(exc).__name__)

    async def unsubscribe(self, channels: Iterable[str]) -> None:
        gone = (set(channels) & self._channels) - {self._home}
        if not gone:
            return
        self._channels -= gone
        try:
            await self._pubsub.unsubscribe(*gone)
        except (RedisError, OSError) as exc:
            log.warning("unsubscribe_failed", error=type(exc).__name__)

    def start(self, on_message: OnMessage, on_reconnect: OnReconnect) -> None:
        self._reader = asyncio.create_task(self._read(on_message, on_reconnect), name="bus-reader")

    async def stop(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)
        await self._pubsub.aclose()  # type: ignore[no-untyped-call]

    async def _read(self, on_message: OnMessage, on_reconnect: OnReconnect) -> None:
        first = True
        while True:
            try:
                await self._pubsub.subscribe(*self._channels)
                self.connected.set()
                if not first:
                    log.info("bus_resubscribed", channels=len(self._channels))
                    await on_reconnect()
                first = False
                await self._listen(on_message)
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:
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
            now = loop.time()
            if message is not None:
                heard = now
                if message["type"] == "message":
                    await on_message(message["channel"].decode(), message["data"])
            if now - heard > 2 * self._heartbeat_s:
                raise ConnectionError("pub/sub connection stalled")
            if now - pinged >= self._heartbeat_s:
                pinged = now
                await asyncio.wait_for(self._pubsub.ping(), self._heartbeat_s)

    async def _reset(self) -> None:
        """A fresh connection for the next attempt; the old one may be half-broken."""
        with contextlib.suppress(RedisError, OSError):
            await self._pubsub.aclose()  # type: ignore[no-untyped-call]
        self._pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
