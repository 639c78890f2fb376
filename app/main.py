"""The ASGI application: `app.main:create_app()` builds one; `app.main:app` is a default one."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles

from app import __version__
from app.api import problems
from app.api.observe import Observe
from app.api.routes import health, messages, rooms, users
from app.infra.metrics import Metrics
from app.lifespan import lifespan
from app.serialization import FastJSONResponse
from app.settings import Settings
from app.ws import endpoint

DESCRIPTION = """\
A real-time messaging backend: private and group rooms, messages with a per-room
sequence, delivered and read receipts per recipient, presence and typing.

REST under `/v1` for everything stateful; a JSON WebSocket at `/v1/ws` for live pushes
(documented in `openapi/asyncapi.yaml`). Errors are RFC 9457 problem details with a
stable `code`.
"""

DEMO_DIR = Path(__file__).with_name("static") / "demo"

TAGS = [
    {"name": "users", "description": "The caller and the people they share rooms with."},
    {"name": "rooms", "description": "Private rooms and groups."},
    {"name": "members", "description": "Group membership and roles."},
    {"name": "messages", "description": "History, sending, edits and deletes."},
    {"name": "receipts", "description": "Delivered and read status per recipient."},
    {"name": "presence", "description": "Who is online, and when they were last seen."},
    {"name": "health", "description": "Probes and metrics for operators."},
]


def _operation_id(route: APIRoute) -> str:
    return route.name


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    metrics = Metrics()
    app = FastAPI(
        title="Chat",
        version=__version__,
        description=DESCRIPTION,
        openapi_tags=TAGS,
        lifespan=lifespan(settings, metrics),
        default_response_class=FastJSONResponse,
        generate_unique_id_function=_operation_id,
    )
    problems.install(app)
    app.add_middleware(Observe, metrics=metrics, max_body_bytes=settings.max_frame_bytes)
    for module in (health, users, rooms, messages):
        app.include_router(module.router)
    app.include_router(endpoint.router)
    # The browser demo: static files, no build step; same origin, so its socket is allowed.
    app.mount("/demo", StaticFiles(directory=DEMO_DIR, html=True), name="demo")
    return app


def __getattr__(name: str) -> FastAPI:
    # `app.main:app` for ASGI servers, built on first access rather than at import time.
    if name == "app":
        return create_app()
    raise AttributeError(name)
