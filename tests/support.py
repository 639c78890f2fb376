"""What the tests share: store locations, tokens, a thin typed client of the REST API, and
one SQL statement run from synchronous code."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from app.auth.tokens import issue

TEST_SECRET = "test-secret-that-is-long-enough-for-hs256!"


@dataclass(frozen=True)
class Stores:
    database_url: str
    redis_url: str
    data_dir: Path


def run_sql(database_url: str, statement: str, *args: object) -> list[asyncpg.Record]:
    """Run one statement on its own connection, from synchronous code (a fixture, or a
    test between Alembic commands, which run their own event loop); returns its rows."""

    async def run() -> list[asyncpg.Record]:
        dsn = database_url.replace("postgresql+asyncpg://", "postgresql://")
        conn = await asyncpg.connect(dsn)
        try:
            return list(await conn.fetch(statement, *args))
        finally:
            await conn.close()

    return asyncio.run(run())


def new_user_id(prefix: str = "u") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def token_for(user_id: str, name: str | None = None, ttl_s: int = 3600) -> str:
    return issue(TEST_SECRET, user_id, name=name, ttl_s=ttl_s)


def auth(user_id: str, name: str | None = None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token_for(user_id, name)}"}


class Api:
    """Calls as a given user; each returns the raw response so tests can assert status."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client

    async def call(
        self, user_id: str, method: str, path: str, json: Any = None, **kw: Any
    ) -> httpx.Response:
        return await self.client.request(method, path, json=json, headers=auth(user_id), **kw)

    async def group(self, owner: str, *members: str, name: str = "team") -> dict[str, Any]:
        resp = await self.call(
            owner, "POST", "/v1/rooms", {"name": name, "member_ids": list(members)}
        )
        assert resp.status_code == 201, resp.text
        room: dict[str, Any] = resp.json()
        return room

    async def direct(self, user_id: str, other: str) -> dict[str, Any]:
        resp = await self.call(user_id, "POST", "/v1/rooms/direct", {"user_id": other})
        assert resp.status_code == 200, resp.text
        room: dict[str, Any] = resp.json()
        return room

    async def send(
        self, user_id: str, room_id: str, body: str = "hi", **fields: Any
    ) -> dict[str, Any]:
        payload = {"client_msg_id": str(uuid.uuid4()), "kind": "text", "body": body, **fields}
        resp = await self.call(user_id, "POST", f"/v1/rooms/{room_id}/messages", payload)
        assert resp.status_code == 201, resp.text
        message: dict[str, Any] = resp.json()
        return message


PROBLEM_JSON = "application/problem+json"


def assert_problem(resp: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """An RFC 9457 problem with this status and contract code; returns its body."""
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith(PROBLEM_JSON), resp.headers
    problem: dict[str, Any] = resp.json()
    assert problem["code"] == code, problem
    assert problem["status"] == status, problem
    return problem


async def until_blocked_by(db: Any, within_s: float) -> None:
    """Until a statement of another session waits for a lock that `db` (an asyncpg
    connection of the test's own) holds; TimeoutError after `within_s`."""
    waiting = (
        "SELECT EXISTS (SELECT 1 FROM pg_locks"
        " WHERE NOT granted AND $1 = ANY(pg_blocking_pids(pid)))"
    )
    holder = db.get_server_pid()
    async with asyncio.timeout(within_s):
        while not await db.fetchval(waiting, holder):  # noqa: ASYNC110 (a lock wait has no event)
            await asyncio.sleep(0.01)
