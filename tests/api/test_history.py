"""History pages by seq cursor: newest, before, after, walking both ways, and limits."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.support import Api, assert_problem, new_user_id

TOTAL = 25


@pytest.fixture(scope="module")
async def filled_room(client: httpx.AsyncClient) -> tuple[str, str]:
    """A room holding seq 1..25, shared by the read-only tests of this module."""
    api = Api(client)
    owner, member = new_user_id("owner"), new_user_id("member")
    room = await api.group(owner, member)
    for n in range(1, TOTAL + 1):
        await api.send(owner if n % 2 else member, room["id"], f"m{n}")
    return room["id"], member


async def page(api: Api, user_id: str, room_id: str, **params: Any) -> dict[str, Any]:
    resp = await api.call(user_id, "GET", f"/v1/rooms/{room_id}/messages", params=params)
    assert resp.status_code == 200, resp.text
    body: dict[str, Any] = resp.json()
    return body


def seqs(body: dict[str, Any]) -> list[int]:
    return [m["seq"] for m in body["items"]]


async def test_no_cursor_gives_the_newest_page_ascending(
    api: Api, filled_room: tuple[str, str]
) -> None:
    room_id, user = filled_room
    body = await page(api, user, room_id, limit=10)
    assert seqs(body) == list(range(16, 26))
    assert [m["body"] for m in body["items"]] == [f"m{n}" for n in range(16, 26)]


async def test_default_page_holds_all_of_a_small_room(
    api: Api, filled_room: tuple[str, str]
) -> None:
    room_id, user = filled_room
    body = await page(api, user, room_id)
    assert seqs(body) == list(range(1, 26))
    assert body["next_cursor"] is None


async def test_before_gives_the_newest_below_it_ascending(
    api: Api, filled_room: tuple[str, str]
) -> None:
    room_id, user = filled_room
    assert seqs(await page(api, user, room_id, before=20, limit=5)) == [15, 16, 17, 18, 19]
    assert seqs(await page(api, user, room_id, before=4, limit=10)) == [1, 2, 3]
    assert seqs(await page(api, user, room_id, before=1, limit=10)) == []


async def test_after_gives_the_oldest_above_it_ascending(
    api: Api, filled_room: tuple[str, str]
) -> None:
    room_id, user = filled_room
    assert seqs(await page(api, user, room_id, after=5, limit=5)) == [6, 7, 8, 9, 10]
    assert seqs(await page(api, user, room_id, after=0, limit=3)) == [1, 2, 3]
    assert seqs(await page(api, user, room_id, after=22, limit=10)) == [23, 24, 25]
    assert seqs(await page(api, user, room_id, after=25, limit=10)) == []


async def test_a_page_that_ends_exactly_at_the_newest_message_has_no_next_cursor(
    api: Api, filled_room: tuple[str, str]
) -> None:
    room_id, user = filled_room
    assert (await page(api, user, room_id, after=20, limit=5))["next_cursor"] is None
    assert (await page(api, user, room_id, after=19, limit=5))["next_cursor"] == "24"


async def test_a_page_that_ends_exactly_at_the_first_message_has_no_next_cursor(
    api: Api, filled_room: tuple[str, str]
) -> None:
    room_id, user = filled_room
    assert (await page(api, user, room_id, before=6, limit=5))["next_cursor"] is None
    assert (await page(api, user, room_id, before=7, limit=5))["next_cursor"] == "2"


async def test_walking_backwards_with_before_covers_every_seq_once(
    api: Api, filled_room: tuple[str, str]
) -> None:
    room_id, user = filled_room
    seen: list[int] = []
    params: dict[str, Any] = {"limit": 10}
    pages = 0
    while True:
        body = await page(api, user, room_id, **params)
        pages += 1
        assert seqs(body) == sorted(seqs(body))
        seen = seqs(body) + seen
        if body["next_cursor"] is None:
            break
        params = {"limit": 10, "before": body["next_cursor"]}
        assert pages < 10, "pagination does not end"
    assert seen == list(range(1, TOTAL + 1))
    assert pages == 3


async def test_walking_forwards_with_after_covers_every_seq_once(
    api: Api, filled_room: tuple[str, str]
) -> None:
    room_id, user = filled_room
    seen: list[int] = []
    params: dict[str, Any] = {"limit": 10, "after": 0}
    pages = 0
    while True:
        body = await page(api, user, room_id, **params)
        pages += 1
        seen += seqs(body)
        if body["next_cursor"] is None:
            break
        params = {"limit": 10, "after": body["next_cursor"]}
        assert pages < 10, "pagination does not end"
    assert seen == list(range(1, TOTAL + 1))
    assert pages == 3


async def test_limit_over_200_is_rejected(api: Api, filled_room: tuple[str, str]) -> None:
    room_id, user = filled_room
    resp = await api.call(user, "GET", f"/v1/rooms/{room_id}/messages", params={"limit": 201})
    assert_problem(resp, 422, "VALIDATION_FAILED")


async def test_limit_of_200_is_accepted(api: Api, filled_room: tuple[str, str]) -> None:
    room_id, user = filled_room
    assert len(seqs(await page(api, user, room_id, limit=200))) == TOTAL


async def test_limit_zero_is_rejected(api: Api, filled_room: tuple[str, str]) -> None:
    room_id, user = filled_room
    resp = await api.call(user, "GET", f"/v1/rooms/{room_id}/messages", params={"limit": 0})
    assert_problem(resp, 422, "VALIDATION_FAILED")


async def test_negative_before_is_rejected(api: Api, filled_room: tuple[str, str]) -> None:
    room_id, user = filled_room
    resp = await api.call(user, "GET", f"/v1/rooms/{room_id}/messages", params={"before": -1})
    assert_problem(resp, 422, "VALIDATION_FAILED")


async def test_negative_after_is_rejected(api: Api, filled_room: tuple[str, str]) -> None:
    room_id, user = filled_room
    resp = await api.call(user, "GET", f"/v1/rooms/{room_id}/messages", params={"after": -5})
    assert_problem(resp, 422, "VALIDATION_FAILED")


async def test_non_numeric_cursor_is_rejected(api: Api, filled_room: tuple[str, str]) -> None:
    room_id, user = filled_room
    resp = await api.call(user, "GET", f"/v1/rooms/{room_id}/messages", params={"before": "abc"})
    assert_problem(resp, 422, "VALIDATION_FAILED")


async def test_non_member_history_is_room_not_found(api: Api, filled_room: tuple[str, str]) -> None:
    room_id, _ = filled_room
    resp = await api.call(new_user_id("eve"), "GET", f"/v1/rooms/{room_id}/messages")
    assert_problem(resp, 404, "ROOM_NOT_FOUND")


async def test_empty_room_history_is_an_empty_last_page(api: Api) -> None:
    alice, bob = new_user_id("alice"), new_user_id("bob")
    room = await api.group(alice, bob)
    body = await page(api, alice, room["id"])
    assert body == {"items": [], "next_cursor": None}
