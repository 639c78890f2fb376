"""The Redis side of fan-out: committed events become one PUBLISH per channel, pipelined.

A frame is serialized once here; every instance that receives it writes those bytes to its
sockets unchanged. Publishing happens after commit and never fails a request: a client
that misses a push recovers the message with `sync`, since PostgreSQL holds it.
"""

from __future__ import annotations

from collections.abc import Iterable

import orjson
import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError

from app.domain.events import Event, MembershipChanged, RoomMessage, UserFrame
from app.infra.bus import channels
from app.infra.metrics import Metrics

log = structlog.get_logger(__name__)


def envelope(origin: str, event: Event) -> tuple[str, bytes] | list[tuple[str, bytes]]:
    """The channel(s) and bytes for one event. `o` names the publishing instance."""
    match event:
        case RoomMessage(room_id=room_id, frame=frame, skip_connection=skip):
            return channels.room(room_id), orjson.dumps({"o": origin, "s": skip, "f": frame})
        case UserFrame(user_ids=user_ids, frame=frame, skip_connection=skip):
            data = orjson.dumps({"o": origin, "s": skip, "f": frame})
            return [(channels.user(u), data) for u in user_ids]
        case MembershipChanged(room_id=room_id, user_id=user_id, change=change):
            data = orjson.dumps({"o": origin, "m": {"room_id": room_id, "change": change}})
            return channels.user(user_id), data


class RedisBus:
    def __init__(self, redis: Redis, instance_id: str, metrics: Metrics) -> None:
        self._redis = redis
        self._instance_id = instance_id
        self._metrics = metrics

    async def publish(self, events: Iterable[Event]) -> None:
        messages: list[tuple[str, bytes]] = []
        for event in events:
            out = envelope(self._instance_id, event)
            messages.extend(out if isinstance(out, list) else [out])
        if not messages:
            return
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for channel, data in messages:
                    pipe.publish(channel, data)
                await pipe.execute()
        except (RedisError, OSError) as exc:
            self._metrics.store_errors.labels(store="redis").inc()
            log.warning("publish_failed", error=type(exc).__name__, messages=len(messages))
