"""What a connection may keep watching after rooms change: presence is shown only to users
who share a room, so a removal can end a watch that was allowed when it was made."""

from __future__ import annotations

import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.domain import presence
from app.domain.ports import Actor
from app.work import unit_of_work
from app.ws.connection import Connection
from app.ws.fanout import Fanout

log = structlog.get_logger(__name__)


async def recheck(
    sessions: async_sessionmaker[AsyncSession], fanout: Fanout, conns: list[Connection]
) -> None:
    try:
        for conn in conns:
            watched = sorted(conn.watching)
            if not watched:
                continue
            async with unit_of_work(sessions, fanout) as work:
                allowed = await presence.visible_to(work, Actor(conn.user_id), watched)
            if allowed != set(watched):
                await fanout.watch(conn, allowed & conn.watching)
    except Exception as exc:  # a failed re-check must not take the bus reader with it
        log.warning("watch_recheck_failed", error=type(exc).__name__)
