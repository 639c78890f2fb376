"""Every knob of the service, read from `CHAT_*` environment variables (and `.env`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CHAT_", env_file=".env", extra="ignore")

    # Stores. Unset URLs mean: start the embedded servers under data_dir.
    database_url: str | None = None
    redis_url: str | None = None
    data_dir: Path = Path("./.chat-data")

    # Identity.
    jwt_secret: str | None = None
    jwt_public_key: str | None = None
    jwt_algorithms: Annotated[list[str], NoDecode] = Field(default_factory=lambda: ["HS256"])
    jwt_audience: str | None = None
    jwt_issuer: str | None = None
    max_token_bytes: int = 8192

    # WebSocket and presence.
    allowed_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    heartbeat_s: float = 10.0
    max_frame_bytes: int = 65536
    frames_per_s: float = 20.0
    max_connections_per_user: int = 10
    # Connections set up at once (presence, rooms, hello); up to connect_queue more wait
    # their turn, and beyond that a new one is closed with 1013 (see app/ws/admission.py).
    connect_concurrency: int = 32
    connect_queue: int = 256
    auth_timeout_s: float = 10.0
    # Frames queued for one client before it counts as not reading and is closed.
    outbox_frames: int = 1024
    # Leaves kept for the heartbeat while Redis is unreachable (app/ws/heartbeat.py).
    max_deferred_leaves: int = Field(default=100_000, ge=0)
    # Writes (send, delivered, read) one connection may have awaiting their commit at once.
    frames_in_flight: int = 32
    # Ordered lanes of the send path, and as many of the receipt path (see
    # app/domain/lanes.py): each runs one statement at a time. Fewer lanes make bigger
    # batches and fewer statements competing in PostgreSQL; more let a room whose lock is
    # held (a membership change committing) hold up fewer others. One measured best on
    # two cores (docs/performance.md).
    write_lanes: int = Field(default=1, ge=1)
    # Typing indicators are dropped while the event loop runs this late (they are advisory
    # and the next refresh repeats them), so chat keeps its latency under a typing storm.
    typing_shed_lag_ms: float = 10.0
    # How long a room's new message may wait for an earlier one still on its way from
    # another instance, so that members get them in seq order (app/ws/room_order.py).
    order_hold_ms: float = Field(default=500.0, ge=0)

    # Content limits.
    max_body_chars: int = 4000
    max_group_members: int = 10000
    max_page_size: int = 200
    max_name_chars: int = 200

    # Database behaviour under faults: a stalled store answers UNAVAILABLE, never hangs.
    db_pool_size: int = 20
    db_pool_timeout_s: float = 3.0
    db_statement_timeout_ms: int = 3000
    migrate_on_start: bool = True

    # Service.
    host: str = "127.0.0.1"
    port: int = 8000
    log_level: str = "INFO"
    instance_id: str | None = None
    # Allocations between young garbage collections (see app/infra/collector.py).
    gc_young_threshold: int = 50_000

    @field_validator("jwt_algorithms", "allowed_origins", mode="before")
    @classmethod
    def _split_csv(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @property
    def embedded(self) -> bool:
        return self.database_url is None or self.redis_url is None
