"""Prometheus figures, in a registry of their own per app so two apps can share a process."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class LoopCounter(Collector):
    """A counter bumped only from the event loop's thread, so with no lock: the client's
    `Counter.inc` takes a lock and four calls, and this one is bumped once per push,
    tens of thousands of times a second. Read when the registry is scraped."""

    def __init__(self, name: str, documentation: str, registry: CollectorRegistry) -> None:
        self._name = name
        self._documentation = documentation
        self.value = 0
        registry.register(self)

    def inc(self, amount: int = 1) -> None:
        self.value += amount

    def collect(self) -> Iterator[CounterMetricFamily]:
        yield CounterMetricFamily(self._name, self._documentation, value=self.value)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.http_requests = Counter(
            "chat_http_requests_total",
            "HTTP requests by route template and status.",
            ["method", "route", "status"],
            registry=r,
        )
        self.http_latency = Histogram(
            "chat_http_request_duration_seconds",
            "HTTP request latency by route template.",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.messages_sent = Counter(
            "chat_messages_sent_total", "Messages stored (new, not idempotent repeats).", registry=r
        )
        self.store_errors = Counter(
            "chat_store_errors_total", "Failed calls to a store.", ["store"], registry=r
        )
        for store in ("postgres", "redis"):
            self.store_errors.labels(store=store)  # shown at 0 before the first failure
        self.frames_fanned_out = LoopCounter(
            "chat_frames_fanned_out", "Pushed frames queued to local sockets.", r
        )
        self.frames_shed = Counter(
            "chat_frames_shed_total",
            "Advisory frames (typing) dropped while the event loop was behind.",
            registry=r,
        )
        self.loop_lag = Gauge(
            "chat_event_loop_lag_seconds",
            "How late the event loop ran a timer at the last sample.",
            registry=r,
        )
        self.messages_held = Counter(
            "chat_messages_held_total",
            "New messages that waited for an earlier one of their room, still on its way "
            "from another instance, before being pushed.",
            registry=r,
        )
        self.publishes_skipped = Counter(
            "chat_bus_publishes_skipped_total",
            "Publishes not sent because no other instance subscribes to their channel.",
            registry=r,
        )
        self.gc_seconds = Counter(
            "chat_gc_seconds_total",
            "Time the event loop spent in garbage collections, by generation.",
            ["generation"],
            registry=r,
        )
        self.batch_size = Histogram(
            "chat_batch_size",
            "Writes per transaction of a write lane (sends, or watermark moves).",
            ["lane"],
            buckets=(1, 2, 4, 8, 16, 32, 64, 128),
            registry=r,
        )
        self.fanout_latency = Histogram(
            "chat_fanout_latency_seconds",
            "From a room message's publish on one instance to its delivery on another.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.connections = Gauge(
            "chat_ws_connections", "Open WebSocket connections on this instance.", registry=r
        )

        self.local_users = Gauge(
            "chat_ws_users", "Distinct users with a connection on this instance.", registry=r
        )
        self.sweeps = Counter(
            "chat_presence_sweeps_total", "Presence sweeps run by this instance.", registry=r
        )
        self.dead_connections = Counter(
            "chat_presence_dead_connections_total",
            "Connections found dead by sweeps (their instance stopped vouching).",
            registry=r,
        )
        self.deferred_leaves_dropped = Counter(
            "chat_presence_deferred_leaves_dropped_total",
            "Leaves that could not reach Redis and found the backlog full; their connections "
            "are swept instead.",
            registry=r,
        )
        self.presence_settles_dropped = Counter(
            "chat_presence_settles_dropped_total",
            "Users whose presence change PostgreSQL refused for a reason other than an "
            "outage; given up so that the others' still settle.",
            registry=r,
        )
        self.rate_limited = Counter(
            "chat_ws_rate_limited_total", "Frames refused for exceeding the rate.", registry=r
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
