"""Presence is shown only to users who share a room, and watching is bounded."""

from __future__ import annotations

from tests.cluster import Client, Instance, Sockets, new_group, rest
from tests.support import assert_problem, new_user_id


def _presence_of(frames: list[dict[str, object]], user_id: str) -> list[dict[str, object]]:
    return [f for f in frames if f["type"] == "presence" and f.get("user_id") == user_id]


async def test_watching_a_user_who_shares_no_room_is_forbidden_without_an_ack(
    p1: Instance, sockets: Sockets
) -> None:
    viewer, mate, stranger = new_user_id("viewer"), new_user_id("mate"), new_user_id("stranger")
    await new_group(p1, viewer, mate)
    await new_group(p1, stranger)  # the stranger exists, in a room of their own
    watcher = await sockets.open(p1, viewer)

    frame_id = await watcher.send({"type": "presence.watch", "user_ids": [mate, stranger]})
    reply = await watcher.reply_to(frame_id)

    assert reply["type"] == "error", reply
    assert reply["code"] == "FORBIDDEN", reply
    later = await watcher.drain()
    assert not [f for f in later if f.get("id") == frame_id], later
    # Refused as a whole: neither the stranger's nor the mate's presence is followed.
    stranger_device = await sockets.open(p1, stranger)
    mate_device = await sockets.open(p1, mate)
    pushed = await watcher.drain(quiet_s=0.5)
    assert _presence_of(pushed, stranger) == [], pushed
    assert _presence_of(pushed, mate) == [], pushed
    await stranger_device.close()
    await mate_device.close()


async def test_watching_more_than_500_users_fails_validation(
    p1: Instance, sockets: Sockets
) -> None:
    viewer = new_user_id("viewer")
    watcher = await sockets.open(p1, viewer)

    ids = [f"nobody-{i}" for i in range(501)]
    reply = await watcher.reply_to(await watcher.send({"type": "presence.watch", "user_ids": ids}))

    assert reply["type"] == "error", reply
    assert reply["code"] == "VALIDATION_FAILED", reply
    # The connection stays usable.
    assert await watcher.request({"type": "presence.watch", "user_ids": [viewer]}) == {
        "presence": [{"user_id": viewer, "online": True, "last_seen": None}]
    }


async def test_a_stranger_is_not_found_over_rest(p1: Instance) -> None:
    viewer, stranger = new_user_id("viewer"), new_user_id("stranger")
    await new_group(p1, viewer)
    await new_group(p1, stranger)
    device = await Client.open(p1.ws, stranger)
    try:
        # Online or not, a stranger's existence and presence are not revealed.
        resp = await rest(p1, viewer, "GET", f"/v1/users/{stranger}")
        assert_problem(resp, 404, "USER_NOT_FOUND")
        resp = await rest(p1, viewer, "GET", f"/v1/presence?user_ids={stranger}")
        assert_problem(resp, 403, "FORBIDDEN")
    finally:
        await device.close()


async def test_watches_sent_at_once_are_each_answered_on_their_own(
    p1: Instance, sockets: Sockets
) -> None:
    # Sent together they are read in the same batch: one refusal must not spill over.
    viewers = [new_user_id(f"viewer{i}") for i in range(6)]
    mate, stranger = new_user_id("mate"), new_user_id("stranger")
    await new_group(p1, mate, *viewers)
    await new_group(p1, stranger)
    watchers = [await sockets.open(p1, viewer) for viewer in viewers]
    wanted = [[mate, stranger] if i == 2 else [mate, viewers[i]] for i in range(len(viewers))]

    sent = [
        await w.send({"type": "presence.watch", "user_ids": ids})
        for w, ids in zip(watchers, wanted, strict=True)
    ]
    replies = [await w.reply_to(frame_id) for w, frame_id in zip(watchers, sent, strict=True)]

    assert replies[2]["type"] == "error", replies[2]
    assert replies[2]["code"] == "FORBIDDEN", replies[2]
    for i, reply in enumerate(replies):
        if i == 2:
            continue
        assert reply["type"] == "ack", reply
        states = {s["user_id"]: s for s in reply["data"]["presence"]}
        assert list(states) == [mate, viewers[i]]
        assert states[viewers[i]]["online"] is True
        assert states[mate]["online"] is False
