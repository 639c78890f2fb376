"""Connecting: authentication, origin checks, renewal, and how bad frames are answered."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Origin

from app.auth.tokens import issue
from tests.cluster import FRAME_TIMEOUT_S, Client, Instance, Sockets, new_group, rest, send_frame
from tests.support import new_user_id, token_for


async def raw_connect(instance: Instance, **kw: Any) -> ClientConnection:
    return await connect(instance.ws, open_timeout=FRAME_TIMEOUT_S, **kw)


async def recv_within(ws: ClientConnection, timeout_s: float = FRAME_TIMEOUT_S) -> str | bytes:
    async with asyncio.timeout(timeout_s):
        return await ws.recv()


async def close_code(ws: ClientConnection) -> int:
    """The code the server closed with; fails if a frame arrives instead."""
    with pytest.raises(ConnectionClosed) as closed:
        await recv_within(ws)
    assert closed.value.rcvd is not None
    return closed.value.rcvd.code


def parse_z(at: str) -> datetime:
    assert at.endswith("Z"), at
    return datetime.fromisoformat(at)


async def test_a_bearer_header_authenticates_and_hello_describes_the_connection(
    a: Instance,
) -> None:
    alice = new_user_id("alice")
    ws = await raw_connect(a, additional_headers={"Authorization": f"Bearer {token_for(alice)}"})
    try:
        hello = orjson.loads(await ws.recv())
    finally:
        await ws.close()

    assert hello["type"] == "hello"
    assert hello["user_id"] == alice
    assert isinstance(hello["connection_id"], str)
    assert hello["connection_id"]
    assert hello["heartbeat_s"] == 10
    assert abs(parse_z(hello["server_time"]) - datetime.now(UTC)) < timedelta(seconds=30)


async def test_each_connection_gets_its_own_connection_id(
    a: Instance, b: Instance, sockets: Sockets
) -> None:
    alice = new_user_id("alice")
    first = await raw_connect(a, additional_headers={"Authorization": f"Bearer {token_for(alice)}"})
    second = await raw_connect(
        b, additional_headers={"Authorization": f"Bearer {token_for(alice)}"}
    )
    try:
        ids = {orjson.loads(await ws.recv())["connection_id"] for ws in (first, second)}
    finally:
        await first.close()
        await second.close()
    assert len(ids) == 2


async def test_an_auth_first_frame_authenticates_a_client_that_cannot_set_headers(
    a: Instance,
) -> None:
    alice, bob = new_user_id("alice"), new_user_id("bob")
    room = await new_group(a, alice, bob)
    ws = await raw_connect(a)
    try:
        await ws.send(orjson.dumps({"type": "auth", "token": token_for(alice)}).decode())
        client = Client(ws)
        hello = await client.next_of("hello")
        ack = await client.request(send_frame(room["id"], "from a browser"))
    finally:
        await ws.close()

    assert hello["user_id"] == alice
    assert ack["message"]["sender_id"] == alice


async def test_an_auth_first_frame_with_an_id_is_acked_under_that_id_after_the_hello(
    a: Instance,
) -> None:
    alice = new_user_id("alice")
    ws = await raw_connect(a)
    try:
        await ws.send(
            orjson.dumps({"type": "auth", "id": "a1", "token": token_for(alice)}).decode()
        )
        hello = orjson.loads(await recv_within(ws))
        ack = orjson.loads(await recv_within(ws))
    finally:
        await ws.close()

    assert hello["type"] == "hello"
    assert (ack["type"], ack["id"]) == ("ack", "a1")
    assert ack["data"]["user_id"] == alice
    assert parse_z(ack["data"]["expires_at"]) > datetime.now(UTC) + timedelta(minutes=50)


async def test_an_auth_first_frame_without_an_id_is_answered_as_an_id_less_renewal_is(
    a: Instance,
) -> None:
    alice = new_user_id("alice")
    ws = await raw_connect(a)
    try:
        await ws.send(orjson.dumps({"type": "auth", "token": token_for(alice)}).decode())
        hello = orjson.loads(await recv_within(ws))
        first = orjson.loads(await recv_within(ws))
        await ws.send(orjson.dumps({"type": "auth", "token": token_for(alice)}).decode())
        renewal = orjson.loads(await recv_within(ws))
    finally:
        await ws.close()

    assert hello["type"] == "hello"
    assert (renewal["type"], renewal["id"]) == ("ack", None)
    assert (first["type"], first["id"]) == (renewal["type"], renewal["id"])
    assert first["data"].keys() == renewal["data"].keys()
    assert first["data"]["user_id"] == alice


async def test_a_bad_token_in_the_header_closes_with_4401(a: Instance) -> None:
    ws = await raw_connect(a, additional_headers={"Authorization": "Bearer not-a-jwt"})
    assert await close_code(ws) == 4401


async def test_a_token_signed_with_another_secret_closes_with_4401(a: Instance) -> None:
    forged = issue("another-secret-that-is-also-long-enough!!", new_user_id("mallory"))
    ws = await raw_connect(a, additional_headers={"Authorization": f"Bearer {forged}"})
    assert await close_code(ws) == 4401


async def test_an_expired_token_closes_with_4401(a: Instance) -> None:
    expired = token_for(new_user_id("late"), ttl_s=-60)
    ws = await raw_connect(a, additional_headers={"Authorization": f"Bearer {expired}"})
    assert await close_code(ws) == 4401


async def test_a_first_frame_that_is_not_auth_closes_with_4401(a: Instance) -> None:
    ws = await raw_connect(a)
    await ws.send(orjson.dumps({"type": "ping"}).decode())
    assert await close_code(ws) == 4401


async def test_an_auth_first_frame_with_a_bad_token_closes_with_4401(a: Instance) -> None:
    ws = await raw_connect(a)
    await ws.send(orjson.dumps({"type": "auth", "token": "garbage"}).decode())
    assert await close_code(ws) == 4401


async def test_a_foreign_origin_is_closed_with_4403(a: Instance) -> None:
    alice = new_user_id("alice")
    ws = await raw_connect(
        a,
        origin=Origin("https://evil.example"),
        additional_headers={"Authorization": f"Bearer {token_for(alice)}"},
    )
    assert await close_code(ws) == 4403


async def test_no_origin_and_the_services_own_origin_are_allowed(
    a: Instance, sockets: Sockets
) -> None:
    alice = new_user_id("alice")
    await sockets.open(a, alice)  # no Origin header at all
    own = await sockets.open(a, alice, origin=Origin(a.http))
    assert (await own.request({"type": "sync", "cursors": {}}))["rooms"] == {}


async def test_a_fresh_auth_frame_for_the_same_user_renews_the_connection(
    a: Instance,
) -> None:
    alice = new_user_id("alice")
    ws = await raw_connect(
        a, additional_headers={"Authorization": f"Bearer {token_for(alice, ttl_s=120)}"}
    )
    client = Client(ws)
    try:
        await client.next_of("hello")
        ack = await client.request({"type": "auth", "token": token_for(alice, ttl_s=7200)})
    finally:
        await ws.close()

    assert ack["user_id"] == alice
    expires_at = parse_z(ack["expires_at"])
    assert expires_at > datetime.now(UTC) + timedelta(hours=1)


async def test_an_auth_frame_for_another_user_is_refused_and_changes_nothing(
    a: Instance, sockets: Sockets
) -> None:
    alice, bob = new_user_id("alice"), new_user_id("bob")
    room = await new_group(a, alice, bob)
    client = await sockets.open(a, alice)

    frame_id = await client.send({"type": "auth", "token": token_for(bob)})
    reply = await client.reply_to(frame_id)

    assert (reply["type"], reply["id"], reply["code"]) == ("error", frame_id, "UNAUTHORIZED")
    ack = await client.request(send_frame(room["id"], "still alice"))
    assert ack["message"]["sender_id"] == alice


async def test_an_unknown_type_is_an_error_with_the_frames_id_and_the_connection_lives_on(
    a: Instance, sockets: Sockets
) -> None:
    client = await sockets.open(a, new_user_id("alice"))

    frame_id = await client.send({"type": "teleport", "id": "x-1"})
    reply = await client.reply_to(frame_id)

    assert (reply["type"], reply["id"], reply["code"]) == ("error", "x-1", "UNKNOWN_TYPE")
    assert reply["message"]
    await client.send({"type": "ping", "id": "p-1"})
    assert await client.next_of("pong") == {"type": "pong", "id": "p-1"}


async def test_bad_json_is_an_invalid_frame_error_and_the_connection_lives_on(
    a: Instance, sockets: Sockets
) -> None:
    client = await sockets.open(a, new_user_id("alice"))

    await client.ws.send('{"type": "ping", ')
    error = await client.next_of("error")

    assert error["code"] == "INVALID_FRAME"
    await client.send({"type": "ping", "id": "p-2"})
    assert (await client.next_of("pong"))["id"] == "p-2"


async def test_a_json_value_that_is_not_an_object_is_an_invalid_frame(
    a: Instance, sockets: Sockets
) -> None:
    client = await sockets.open(a, new_user_id("alice"))

    await client.ws.send("[1, 2, 3]")

    assert (await client.next_of("error"))["code"] == "INVALID_FRAME"


async def test_a_send_missing_a_field_fails_validation_and_stores_nothing(
    a: Instance, b: Instance, sockets: Sockets
) -> None:
    alice, bob = new_user_id("alice"), new_user_id("bob")
    room = await new_group(a, alice, bob)
    client = await sockets.open(a, alice)
    watcher = await sockets.open(b, bob)

    frame = send_frame(room["id"], "no id")
    del frame["client_msg_id"]
    reply = await client.reply_to(await client.send(frame))

    assert (reply["type"], reply["id"], reply["code"]) == (
        "error",
        frame["id"],
        "VALIDATION_FAILED",
    )
    assert "client_msg_id" in reply["message"]
    history = (await rest(a, alice, "GET", f"/v1/rooms/{room['id']}/messages")).json()
    assert history["items"] == []
    assert (await rest(a, alice, "GET", f"/v1/rooms/{room['id']}")).json()["last_seq"] == 0
    assert [f for f in await watcher.drain(0.3) if f["type"] == "message"] == []
