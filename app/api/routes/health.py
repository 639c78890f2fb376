"""Liveness, readiness and metrics for operators and load balancers."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Response
from pydantic import BaseModel
from sqlalchemy import text

from app.api.deps import ServicesDep
from app.serialization import FastJSONResponse

router = APIRouter(tags=["health"])

PROBE_TIMEOUT_S = 2.0


class Health(BaseModel):
    status: str


class Readiness(BaseModel):
    status: str
    postgres: bool
    redis: bool


@router.get("/healthz", name="get_health", response_model=Health)
async def health() -> Health:
    """The process is up."""
    return Health(status="ok")


async def _probe(check: asyncio.Future[object] | object) -> bool:
    try:
        await asyncio.wait_for(check, PROBE_TIMEOUT_S)  # type: ignore[arg-type]
    except Exception:  # any failure of a probe means "not ready", whatever its kind
        return False
    return True


@router.get(
    "/readyz",
    name="get_readiness",
    response_model=Readiness,
    responses={503: {"model": Readiness, "description": "A store is unreachable"}},
)
async def ready(services: ServicesDep) -> Response:
    """PostgreSQL and Redis both answer (503 otherwise)."""

    async def postgres() -> None:
        async with services.engine.connect() as connection:
            await connection.execute(text("SELECT 1"))

    pg, redis = await asyncio.gather(_probe(postgres()), _probe(services.redis.ping()))
    body = Readiness(status="ready" if pg and redis else "degraded", postgres=pg, redis=redis)
    return FastJSONResponse(body.model_dump(), status_code=200 if pg and redis else 503)


@router.get(
    "/metrics",
    name="get_metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format"}},
)
async def metrics(services: ServicesDep) -> Response:
    """Prometheus figures of this instance."""
    return Response(services.metrics.render(), media_type="text/plain; version=0.0.4")
