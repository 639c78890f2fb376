"""Builds every piece of infrastructure once, hands it out as `Services`, closes it in reverse."""

from __future__ import annotations

import asyncio
import functools
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import structlog
from fastapi import FastAPI
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.auth.tokens import TokenVerifier, resolve_secret
from app.domain import lanes
from app.domain.limits import Limits
from app.domain.presence import PresenceReads
from app.domain.typing_indicators import TypingIndicators
from app.domain.users import KnownUsers
from app.domain.watermarks import WatermarkWriter
from app.domain.writer import MessageWriter
from app.infra import collector, migrate
from app.infra.bus import channels
from app.infra.bus.redis import RedisBus
from app.infra.db import direct
from app.infra.db.engine import make_engine, make_sessionmaker
from app.infra.embedded import EmbeddedPostgres, EmbeddedRedis
from app.infra.loop_lag import LoopLag
from app.infra.metrics import Metrics
from app.infra.presence.redis import RedisPresence
from app.infra.redis_client import make_redis
from app.settings import Settings
from app.work import batch_of_work, unit_of_work
from app.ws import watches
from app.ws.admission import ConnectGate
from app.ws.fanout import Fanout
from app.ws.heartbeat import Heartbeat

log = structlog.get_logger(__name__)

SHUTDOWN_DRAIN_S = 5.0


@dataclass(slots=True)
class Services:
    settings: Settings
    instance_id: str
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    redis: Redis
    bus: RedisBus
    fanout: Fanout
    typing: TypingIndicators
    presence_reads: PresenceReads
    writer: MessageWriter
    watermark_writer: WatermarkWriter
    heartbeat: Heartbeat
    known_users: KnownUsers
    connect_gate: ConnectGate
    presence: RedisPresence
    verifier: TokenVerifier
    limits: Limits
    metrics: Metrics
    database_url: str
    redis_url: str


def _data_dir(settings: Settings) -> Path:
    return Path(settings.data_dir).resolve()


async def _stores(settings: Settings, stack: AsyncExitStack) -> tuple[str, str]:
    """The store URLs: as configured, or from embedded servers started (and later stopped) here."""
    database_url, redis_url = settings.database_url, settings.redis_url
    if database_url is None:
        postgres = EmbeddedPostgres(_data_dir(settings))
        database_url = await asyncio.to_thread(postgres.start)
        stack.push_async_callback(asyncio.to_thread, postgres.stop)
    if redis_url is None:
        redis_server = EmbeddedRedis(_data_dir(settings))
        redis_url = await asyncio.to_thread(redis_server.start)
        stack.push_async_callback(asyncio.to_thread, redis_server.stop)
    return database_url, redis_url


@asynccontextmanager
async def run_services(settings: Settings, metrics: Metrics) -> AsyncIterator[Services]:
    verifier = TokenVerifier(settings, resolve_secret(settings))
    async with AsyncExitStack() as stack:
        database_url, redis_url = await _stores(settings, stack)
        engine = make_engine(database_url, settings, metrics)
        stack.push_async_callback(engine.dispose)
        if settings.migrate_on_start or settings.database_url is None:
            await migrate.upgrade(engine)
        redis = make_redis(redis_url, health_check_interval_s=settings.heartbeat_s)
        stack.push_async_callback(redis.aclose)
        instance_id = settings.instance_id or uuid.uuid4().hex[:12]
        bus = RedisBus(redis, metrics, channels.instance(instance_id), settings.heartbeat_s)
        loop_lag = LoopLag(settings.typing_shed_lag_ms / 1000, on_sample=metrics.loop_lag.set)
        loop_lag.start()
        stack.callback(loop_lag.stop)
        fanout = Fanout(
            bus, instance_id, metrics, loop_lag, order_hold_s=settings.order_hold_ms / 1000
        )
        sessions = make_sessionmaker(engine)
        fanout.recheck_watches = functools.partial(watches.recheck, sessions, fanout)
        store = RedisPresence(redis, grace_s=2 * settings.heartbeat_s)
        heartbeat = Heartbeat(
            store,
            fanout,
            lambda: unit_of_work(sessions, fanout),
            metrics,
            settings.heartbeat_s,
            max_deferred_leaves=settings.max_deferred_leaves,
        )

        bus.start(fanout.on_bus_message, fanout.on_bus_reconnect)
        stack.push_async_callback(bus.stop)
        heartbeat.start()
        stack.push_async_callback(heartbeat.stop)
        limits = Limits.from_settings(settings)
        # The lanes' own pool: two connections per lane of each of the two writers (one
        # batch answering while the next is in PostgreSQL, see `Turn`), one per lane of
        # the reads.
        lanes_engine = make_engine(
            database_url,
            settings,
            metrics,
            pool_size=4 * settings.write_lanes + lanes.LANES,
            pre_ping=False,
        )
        stack.push_async_callback(lanes_engine.dispose)
        lanes_connections = direct.KeptConnections(lanes_engine)
        stack.push_async_callback(lanes_connections.close)
        lanes_work = functools.partial(batch_of_work, lanes_connections, fanout)
        writer = MessageWriter(
            lanes_work,
            limits,
            on_stored=metrics.messages_sent.inc,
            on_batch=metrics.batch_size.labels(lane="writer").observe,
            lanes=settings.write_lanes,
        )
        writer.start()
        stack.push_async_callback(writer.stop)
        watermark_writer = WatermarkWriter(
            lanes_work,
            on_batch=metrics.batch_size.labels(lane="watermarks").observe,
            lanes=settings.write_lanes,
        )
        watermark_writer.start()
        stack.push_async_callback(watermark_writer.stop)
        presence_reads = PresenceReads(lanes_work, store)
        presence_reads.start()
        stack.push_async_callback(presence_reads.stop)
        services = Services(
            settings=settings,
            instance_id=instance_id,
            engine=engine,
            sessions=sessions,
            redis=redis,
            bus=bus,
            fanout=fanout,
            typing=TypingIndicators(fanout),
            presence_reads=presence_reads,
            presence=store,
            verifier=verifier,
            limits=limits,
            writer=writer,
            watermark_writer=watermark_writer,
            heartbeat=heartbeat,
            known_users=KnownUsers(),
            connect_gate=ConnectGate(settings.connect_concurrency, settings.connect_queue),
            metrics=metrics,
            database_url=database_url,
            redis_url=redis_url,
        )
        stack.callback(collector.tune(settings.gc_young_threshold, metrics.gc_seconds))
        log.info(
            "started",
            instance_id=instance_id,
            database=engine.url.render_as_string(hide_password=True),
            redis=redis_url.split("@")[-1],
            embedded=settings.embedded,
        )
        yield services
        log.info("stopping", instance_id=instance_id)
        await fanout.drain(1001, "server shutting down", SHUTDOWN_DRAIN_S)


def lifespan(
    settings: Settings, metrics: Metrics
) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    @asynccontextmanager
    async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with run_services(settings, metrics) as services:
            app.state.services = services
            yield

    return _lifespan
