"""Typing indicators: to the other members only, throttled, and lapsing by themselves."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.cluster import Instance, Sockets, drain_all, new_group, of_type
from tests.support import new_user_id

QUIET_S = 0.5


def typing(room_id: str, active: bool) -> dict[str, Any]:
    return {"type": "typing", "room_id": room_id, "active": active}


async def test_typing_reaches_the_other_member_on_the_other_instance_but_not_the_typists_sockets(
    a: Instance, b: Instance, sockets: Sockets
) -> None:
    alice, bob = new_user_id("alice"), new_user_id("bob")
    room = await new_group(a, alice, bob)
    typist = await sockets.open(a, alice)
    typists_other_device = await sockets.open(b, alice)
    watcher = await sockets.open(b, bob)

    assert await typist.request(typing(room["id"], True)) == {}

    pushed = await watcher.next_of("typing")
    assert pushed == {"type": "typing", "room_id": room["id"], "user_id": alice, "active": True}
    for own in await drain_all(typist, typists_other_device, quiet_s=QUIET_S):
        assert of_type(own, "typing") == []
    await typist.request(typing(room["id"], False))
    assert (await watcher.next_of("typing"))["active"] is False


async def test_active_typing_lapses_to_inactive_after_about_six_seconds(
    a: Instance, b: Instance, sockets: Sockets
) -> None:
    alice, bob = new_user_id("alice"), new_user_id("bob")
    room = await new_group(a, alice, bob)
    typist = await sockets.open(a, alice)
    watcher = await sockets.open(b, bob)
    loop = asyncio.get_running_loop()

    await typist.request(typing(room["id"], True))
    await watcher.next_of("typing", active=True)
    started = loop.time()
    lapsed = await watcher.wait(
        lambda f: f["type"] == "typing" and f["active"] is False, timeout_s=9
    )

    assert lapsed["user_id"] == alice
    assert 4.5 <= loop.time() - started <= 9


async def test_typing_in_a_room_the_caller_is_not_in_is_room_not_found(
    a: Instance, b: Instance, sockets: Sockets
) -> None:
    alice, bob, eve = new_user_id("alice"), new_user_id("bob"), new_user_id("eve")
    room = await new_group(a, alice, bob)
    eve_socket = await sockets.open(a, eve)
    watcher = await sockets.open(b, bob)

    frame_id = await eve_socket.send(typing(room["id"], True))
    reply = await eve_socket.reply_to(frame_id)

    assert (reply["type"], reply["id"], reply["code"]) == ("error", frame_id, "ROOM_NOT_FOUND")
    assert of_type(await watcher.drain(QUIET_S), "typing") == []


async def test_repeated_typing_frames_within_a_second_are_forwarded_once(
    a: Instance, b: Instance, sockets: Sockets
) -> None:
    alice, bob = new_user_id("alice"), new_user_id("bob")
    room = await new_group(a, alice, bob)
    typist = await sockets.open(a, alice)
    watcher = await sockets.open(b, bob)

    for _ in range(5):
        await typist.request(typing(room["id"], True))

    await watcher.next_of("typing", active=True)
    assert of_type(await watcher.drain(0.8), "typing") == []


async def test_a_change_inside_the_throttle_second_is_forwarded_when_the_second_is_up(
    a: Instance, b: Instance, sockets: Sockets
) -> None:
    alice, bob = new_user_id("alice"), new_user_id("bob")
    room = await new_group(a, alice, bob)
    typist = await sockets.open(a, alice)
    watcher = await sockets.open(b, bob)
    loop = asyncio.get_running_loop()

    await typist.request(typing(room["id"], True))
    await typist.request(typing(room["id"], False))

    await watcher.next_of("typing", active=True)
    started = loop.time()
    await watcher.next_of("typing", active=False)  # held, not dropped
    assert loop.time() - started >= 0.7
    assert of_type(await watcher.drain(QUIET_S), "typing") == []


async def test_a_typist_who_disconnects_is_shown_as_no_longer_typing(
    a: Instance, b: Instance, sockets: Sockets
) -> None:
    alice, bob = new_user_id("alice"), new_user_id("bob")
    room = await new_group(a, alice, bob)
    typist = await sockets.open(a, alice)
    watcher = await sockets.open(b, bob)
    await typist.request(typing(room["id"], True))
    await watcher.next_of("typing", active=True)

    await typist.close()

    stopped = await watcher.next_of("typing", active=False)
    assert stopped["user_id"] == alice
