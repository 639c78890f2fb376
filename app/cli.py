"""The `chat` command: serve, migrate, token, openapi."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated

import typer
import uvicorn

from app.auth.tokens import ConfigError, issue, resolve_secret
from app.infra.logging import configure
from app.server import Server, allow_token_headers
from app.settings import Settings
from app.ws.protocol import ChatWebSocketProtocol

cli = typer.Typer(
    help="A real-time messaging service. Settings come from CHAT_* environment variables.",
    no_args_is_help=True,
    add_completion=False,
)

OPENAPI_PATH = Path("openapi/openapi.json")
ASYNCAPI_PATH = Path("openapi/asyncapi.yaml")


@cli.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Interface to listen on.")] = None,
    port: Annotated[int | None, typer.Option(help="TCP port to listen on.")] = None,
) -> None:
    """Run the server. Without CHAT_DATABASE_URL / CHAT_REDIS_URL it starts embedded
    PostgreSQL and Redis under CHAT_DATA_DIR, migrates, and stops them on exit."""
    from app.main import create_app

    settings = Settings()
    configure(settings.log_level)
    app = create_app(settings)
    config = uvicorn.Config(
        app,
        # `--port 0` is a real choice (any free port, as uvicorn logs it), not "unset".
        host=settings.host if host is None else host,
        port=settings.port if port is None else port,
        loop="uvloop",
        http="httptools",
        # uvicorn's sans-I/O websockets protocol, with liveness and cut-offs added.
        ws=ChatWebSocketProtocol,
        # Compression costs memory per socket and opens compression side channels.
        ws_per_message_deflate=False,
        ws_max_size=settings.max_frame_bytes,
        ws_ping_interval=settings.heartbeat_s,
        ws_ping_timeout=settings.heartbeat_s,
        timeout_graceful_shutdown=10,
        log_config=None,
        access_log=False,
        proxy_headers=True,
    )
    allow_token_headers(settings.max_token_bytes)
    Server(config, app).run()


@cli.command()
def migrate() -> None:
    """Apply database migrations (embedded PostgreSQL is started for it when no URL is set)."""
    from app.infra import migrate as migrations
    from app.infra.db.engine import make_engine
    from app.infra.embedded import EmbeddedPostgres

    settings = Settings()
    configure(settings.log_level)
    postgres = None
    url = settings.database_url
    if url is None:
        postgres = EmbeddedPostgres(Path(settings.data_dir).resolve())
        url = postgres.start()

    async def run(database_url: str) -> None:
        engine = make_engine(database_url, settings)
        try:
            await migrations.upgrade(engine)
        finally:
            await engine.dispose()

    try:
        asyncio.run(run(url))
    finally:
        if postgres is not None:
            postgres.stop()
    typer.echo("migrations applied")


@cli.command()
def token(
    user_id: Annotated[str, typer.Argument(help="The user id (JWT `sub`).")],
    name: Annotated[str | None, typer.Option(help="Display name claim.")] = None,
    ttl: Annotated[int, typer.Option(help="Lifetime in seconds.", min=1)] = 86400,
) -> None:
    """Print a signed JWT for USER_ID using the configured (or embedded) HS256 secret."""
    settings = Settings()
    secret = resolve_secret(settings)
    if secret is None:
        raise typer.BadParameter("no HS256 secret: set CHAT_JWT_SECRET")
    if not 1 <= len(user_id) <= 64:
        raise typer.BadParameter("a user id is 1 to 64 characters")
    typer.echo(issue(secret, user_id, name=name, ttl_s=ttl))


@cli.command()
def openapi(
    output: Annotated[Path, typer.Option(help="Where to write the document.")] = OPENAPI_PATH,
    asyncapi: Annotated[
        Path, typer.Option(help="Where to write the AsyncAPI document of the WebSocket.")
    ] = ASYNCAPI_PATH,
) -> None:
    """Write the OpenAPI document of the REST API (and the AsyncAPI one of the WebSocket)."""
    from app.ws.asyncapi import render

    for path, text in ((output, render_openapi()), (asyncapi, render())):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        typer.echo(f"wrote {path}")


def render_openapi() -> str:
    from app.main import create_app

    document = create_app(Settings()).openapi()
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def main() -> None:
    try:
        cli()
    except ConfigError as exc:
        raise SystemExit(f"configuration error: {exc}") from exc
