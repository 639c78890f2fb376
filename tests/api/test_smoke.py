from __future__ import annotations

from tests.support import Api, new_user_id


async def test_a_group_message_round_trip(api: Api) -> None:
    alice, bob = new_user_id("alice"), new_user_id("bob")
    room = await api.group(alice, bob)
    sent = await api.send(alice, room["id"], "hello")
    assert sent["seq"] == 1
    page = await api.call(bob, "GET", f"/v1/rooms/{room['id']}/messages")
    assert page.status_code == 200, page.text
    assert [m["body"] for m in page.json()["items"]] == ["hello"]
    rooms = await api.call(bob, "GET", "/v1/rooms")
    assert rooms.json()["items"][0]["unread"] == 1
