"""Liveness, readiness and metrics for operators and load balancers."""

from __future__ import annotations

from fastapi import APIRouter, Response
from pydantic import BaseModel

from app.api.deps import ServicesDep
from app.infra.probes import probe_stores
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


@router.get(
    "/readyz",
    name="get_readiness",
    response_model=Readiness,
    responses={503: {"model": Readiness, "description": "A store is unreachable"}},
)
async def ready(services: ServicesDep) -> Response:
    """PostgreSQL and Redis both answer (503 otherwise)."""
    answer = await probe_stores(services.engine, services.redis, PROBE_TIMEOUT_S)
    body = Readiness(
        status="ready" if answer.all else "degraded", postgres=answer.postgres, redis=answer.redis
    )
    return FastJSONResponse(body.model_dump(), status_code=200 if answer.all else 503)


@router.get(
    "/metrics",
    name="get_metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format"}},
)
async def metrics(services: ServicesDep) -> Response:
    """Prometheus figures of this instance."""
    return Response(services.metrics.render(), media_type="text/plain; version=0.0.4")
