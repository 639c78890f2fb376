"""Rooms: the one private room per pair, groups, renames, and the caller's room list."""

from __future__ import annotations

import base64
import uuid
from typing import Any

import pytest

from tests.support import Api, assert_problem, new_user_id


def _roles(room: dict[str, Any]) -> dict[str, str]:
    return {m["user_id"]: m["role"] for m in room["members"]}


async def _rooms(api: Api, user_id: str, **params: Any) -> dict[str, Any]:
    resp = await api.call(user_id, "GET", "/v1/rooms", params=params)
    assert resp.status_code == 200, resp.text
    page: dict[str, Any] = resp.json()
    return page


async def _summary(api: Api, user_id: str, room_id: str) -> dict[str, Any]:
    page = await _rooms(api, user_id)
    summaries: list[dict[str, Any]] = [r for r in page["items"] if r["id"] == room_id]
    assert len(summaries) == 1, page
    return summaries[0]


async def _appoint_admin(api: Api, owner: str, room_id: str, user_id: str) -> None:
    resp = await api.call(
        owner, "POST", f"/v1/rooms/{room_id}/members", {"user_id": user_id, "role": "admin"}
    )
    assert resp.status_code == 201, resp.text


# ---- direct rooms ------------------------------------------------------------------------


async def test_both_sides_of_a_pair_open_the_same_direct_room(api: Api) -> None:
    alice, bob = new_user_id("alice"), new_user_id("bob")
    first = await api.direct(alice, bob)
    again = await api.direct(alice, bob)
    reverse = await api.direct(bob, alice)
    assert first["id"] == again["id"] == reverse["id"]


async def test_opening_a_direct_room_answers_200(api: Api) -> None:
    resp = await api.call(new_user_id(), "POST", "/v1/rooms/direct", {"user_id": new_user_id()})
    assert resp.status_code == 200, resp.text


async def test_a_direct_room_has_exactly_the_two_users_and_no_name(api: Api) -> None:
    alice, bob = new_user_id("alice"), new_user_id("bob")
    room = await api.direct(alice, bob)
    assert room["kind"] == "direct"
    assert room["name"] is None
    assert sorted(m["user_id"] for m in room["members"]) == sorted([alice, bob])


async def test_opening_a_direct_room_twice_creates_only_one(api: Api) -> None:
    alice, bob = new_user_id("alice"), new_user_id("bob")
    await api.direct(alice, bob)
    await api.direct(bob, alice)
    page = await _rooms(api, alice)
    assert len(page["items"]) == 1


async def test_a_direct_room_with_yourself_is_a_validation_failure(api: Api) -> None:
    me = new_user_id()
    resp = await api.call(me, "POST", "/v1/rooms/direct", {"user_id": me})
    assert_problem(resp, 422, "VALIDATION_FAILED")


async def test_a_direct_room_with_an_unstorable_user_id_is_a_validation_failure(api: Api) -> None:
    resp = await api.call(new_user_id(), "POST", "/v1/rooms/direct", {"user_id": "nul\x00id"})
    assert_problem(resp, 422, "VALIDATION_FAILED")


# ---- groups ------------------------------------------------------------------------------


async def test_creating_a_group_answers_201_with_the_caller_as_owner(api: Api) -> None:
    owner, bob, carol = new_user_id("owner"), new_user_id("bob"), new_user_id("carol")
    resp = await api.call(owner, "POST", "/v1/rooms", {"name": "team", "member_ids": [bob, carol]})
    assert resp.status_code == 201, resp.text
    room = resp.json()
    assert room["kind"] == "group"
    assert room["name"] == "team"
    assert _roles(room) == {owner: "owner", bob: "member", carol: "member"}


async def test_duplicate_and_self_member_ids_are_ignored(api: Api) -> None:
    owner, bob = new_user_id("owner"), new_user_id("bob")
    room = await api.group(owner, bob, bob, owner)
    assert sorted(m["user_id"] for m in room["members"]) == sorted([owner, bob])
    assert _roles(room)[owner] == "owner"


@pytest.mark.parametrize("name", ["", "   ", "\t\n"], ids=["empty", "spaces", "whitespace"])
async def test_a_blank_group_name_is_a_validation_failure(api: Api, name: str) -> None:
    resp = await api.call(new_user_id(), "POST", "/v1/rooms", {"name": name, "member_ids": []})
    assert_problem(resp, 422, "VALIDATION_FAILED")


async def test_a_group_name_over_200_characters_is_a_validation_failure(api: Api) -> None:
    resp = await api.call(new_user_id(), "POST", "/v1/rooms", {"name": "n" * 201})
    assert_problem(resp, 422, "VALIDATION_FAILED")


async def test_a_group_name_of_200_characters_is_accepted(api: Api) -> None:
    room = await api.group(new_user_id(), name="n" * 200)
    assert room["name"] == "n" * 200


async def test_a_member_id_longer_than_64_characters_is_a_validation_failure(api: Api) -> None:
    resp = await api.call(
        new_user_id(), "POST", "/v1/rooms", {"name": "t", "member_ids": ["m" * 65]}
    )
    assert_problem(resp, 422, "VALIDATION_FAILED")


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"name": "t", "member_ids": ["nul\x00id"]}, id="member-id-with-nul"),
        pytest.param({"name": "nul\x00name"}, id="name-with-nul"),
    ],
)
async def test_text_postgres_cannot_store_is_a_validation_failure(
    api: Api, body: dict[str, Any]
) -> None:
    resp = await api.call(new_user_id(), "POST", "/v1/rooms", body)
    assert_problem(resp, 422, "VALIDATION_FAILED")


# ---- one room ----------------------------------------------------------------------------


async def test_a_member_gets_the_room_with_members_and_roles(api: Api) -> None:
    owner, bob = new_user_id("owner"), new_user_id("bob")
    room = await api.group(owner, bob)
    resp = await api.call(bob, "GET", f"/v1/rooms/{room['id']}")
    assert resp.status_code == 200, resp.text
    assert _roles(resp.json()) == {owner: "owner", bob: "member"}


async def test_a_non_member_gets_room_not_found(api: Api) -> None:
    room = await api.group(new_user_id("owner"))
    resp = await api.call(new_user_id("outsider"), "GET", f"/v1/rooms/{room['id']}")
    assert_problem(resp, 404, "ROOM_NOT_FOUND")


async def test_an_unknown_room_and_a_foreign_room_answer_alike(api: Api) -> None:
    outsider = new_user_id("outsider")
    room = await api.group(new_user_id("owner"))
    foreign = await api.call(outsider, "GET", f"/v1/rooms/{room['id']}")
    unknown = await api.call(outsider, "GET", f"/v1/rooms/{uuid.uuid4()}")
    assert_problem(unknown, 404, "ROOM_NOT_FOUND")
    assert foreign.json() == unknown.json()


async def test_a_malformed_room_id_is_a_validation_failure(api: Api) -> None:
    resp = await api.call(new_user_id(), "GET", "/v1/rooms/not-a-uuid")
    assert_problem(resp, 422, "VALIDATION_FAILED")


# ---- renames -----------------------------------------------------------------------------


async def test_the_owner_renames_a_group(api: Api) -> None:
    owner, bob = new_user_id("owner"), new_user_id("bob")
    room = await api.group(owner, bob, name="before")
    resp = await api.call(owner, "PATCH", f"/v1/rooms/{room['id']}", {"name": "  after  "})
    assert resp.status_code == 200, resp.text
    assert resp.json()["name"] == "after"
    seen = await api.call(bob, "GET", f"/v1/rooms/{room['id']}")
    assert seen.json()["name"] == "after"


async def test_an_admin_renames_a_group(api: Api) -> None:
    owner, admin = new_user_id("owner"), new_user_id("admin")
    room = await api.group(owner, name="before")
    await _appoint_admin(api, owner, room["id"], admin)
    resp = await api.call(admin, "PATCH", f"/v1/rooms/{room['id']}", {"name": "by admin"})
    assert resp.status_code == 200, resp.text
    assert resp.json()["name"] == "by admin"


async def test_a_plain_member_cannot_rename_a_group(api: Api) -> None:
    owner, bob = new_user_id("owner"), new_user_id("bob")
    room = await api.group(owner, bob, name="before")
    resp = await api.call(bob, "PATCH", f"/v1/rooms/{room['id']}", {"name": "hijacked"})
    assert_problem(resp, 403, "FORBIDDEN")
    seen = await api.call(owner, "GET", f"/v1/rooms/{room['id']}")
    assert seen.json()["name"] == "before"


async def test_a_direct_room_cannot_be_renamed(api: Api) -> None:
    alice, bob = new_user_id("alice"), new_user_id("bob")
    room = await api.direct(alice, bob)
    resp = await api.call(alice, "PATCH", f"/v1/rooms/{room['id']}", {"name": "ours"})
    assert_problem(resp, 403, "FORBIDDEN")


async def test_a_non_member_renaming_gets_room_not_found(api: Api) -> None:
    room = await api.group(new_user_id("owner"))
    resp = await api.call(
        new_user_id("outsider"), "PATCH", f"/v1/rooms/{room['id']}", {"name": "x"}
    )
    assert_problem(resp, 404, "ROOM_NOT_FOUND")


async def test_a_blank_rename_is_a_validation_failure(api: Api) -> None:
    owner = new_user_id("owner")
    room = await api.group(owner)
    resp = await api.call(owner, "PATCH", f"/v1/rooms/{room['id']}", {"name": "   "})
    assert_problem(resp, 422, "VALIDATION_FAILED")


# ---- the room list -----------------------------------------------------------------------


async def test_rooms_are_listed_newest_activity_first(api: Api) -> None:
    me = new_user_id("me")
    ids = [(await api.group(me, name=f"room {i}"))["id"] for i in range(3)]
    page = await _rooms(api, me)
    assert [r["id"] for r in page["items"]] == ids[::-1]


async def test_a_message_in_an_older_room_moves_it_to_the_top(api: Api) -> None:
    me = new_user_id("me")
    oldest = await api.group(me, name="oldest")
    await api.group(me, name="middle")
    await api.group(me, name="newest")
    await api.send(me, oldest["id"], "bump")
    page = await _rooms(api, me)
    assert page["items"][0]["id"] == oldest["id"]


async def test_a_room_summary_carries_unread_last_message_and_own_watermarks(api: Api) -> None:
    alice, bob = new_user_id("alice"), new_user_id("bob")
    room = await api.group(alice, bob)
    await api.send(alice, room["id"], "one")
    await api.send(alice, room["id"], "two")
    await api.send(alice, room["id"], "three")
    await api.call(bob, "POST", f"/v1/rooms/{room['id']}/read", {"seq": 1})
    summary = await _summary(api, bob, room["id"])
    assert summary["last_seq"] == 3
    assert summary["unread"] == 2
    assert summary["last_message"]["body"] == "three"
    assert summary["last_message"]["seq"] == 3
    assert summary["read_seq"] == 1
    assert summary["delivered_seq"] == 1
    assert sorted(m["user_id"] for m in summary["members"]) == sorted([alice, bob])


async def test_a_room_without_messages_has_no_last_message(api: Api) -> None:
    me = new_user_id("me")
    room = await api.group(me)
    summary = await _summary(api, me, room["id"])
    assert summary["last_message"] is None
    assert summary["unread"] == 0


async def test_paging_the_room_list_visits_every_room_exactly_once(api: Api) -> None:
    me = new_user_id("me")
    created = [(await api.group(me, name=f"r{i}"))["id"] for i in range(5)]
    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        page = await _rooms(api, me, **params)
        pages += 1
        seen += [r["id"] for r in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
        assert pages < 5, "the cursor never ran out"
    assert seen == created[::-1]
    assert pages == 3


async def test_a_page_that_ends_the_room_list_has_no_next_cursor(api: Api) -> None:
    me = new_user_id("me")
    for i in range(4):
        await api.group(me, name=f"r{i}")
    first = await _rooms(api, me, limit=2)
    second = await _rooms(api, me, limit=2, cursor=first["next_cursor"])
    assert len(second["items"]) == 2
    assert second["next_cursor"] is None


def _cursor(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


@pytest.mark.parametrize(
    "cursor",
    [
        pytest.param("!!not-base64!!", id="not-base64"),
        pytest.param(_cursor(b"{not json"), id="not-json"),
        pytest.param(_cursor(b'["only-one"]'), id="wrong-arity"),
        pytest.param(_cursor(b'["yesterday", "not-a-uuid"]'), id="wrong-types"),
        pytest.param(
            _cursor(f'["2024-01-01T00:00:00", "{uuid.uuid4()}"]'.encode()),
            id="time-without-offset",
        ),
        pytest.param(
            _cursor(f'["9999-12-31T23:59:59-14:00", "{uuid.uuid4()}"]'.encode()),
            id="time-past-the-end-of-time",
        ),
        pytest.param(
            _cursor(f'["0001-01-01T00:00:00+14:00", "{uuid.uuid4()}"]'.encode()),
            id="time-before-the-start-of-time",
        ),
    ],
)
async def test_a_tampered_room_cursor_is_a_validation_failure(api: Api, cursor: str) -> None:
    resp = await api.call(new_user_id(), "GET", "/v1/rooms", params={"cursor": cursor})
    assert_problem(resp, 422, "VALIDATION_FAILED")


@pytest.mark.parametrize("limit", [0, 201], ids=["zero", "over-max"])
async def test_a_room_list_limit_out_of_range_is_a_validation_failure(api: Api, limit: int) -> None:
    resp = await api.call(new_user_id(), "GET", "/v1/rooms", params={"limit": limit})
    assert_problem(resp, 422, "VALIDATION_FAILED")


# ---- unread ------------------------------------------------------------------------------


async def test_own_messages_never_count_as_unread(api: Api) -> None:
    alice, bob = new_user_id("alice"), new_user_id("bob")
    room = await api.direct(alice, bob)
    await api.send(bob, room["id"], "from bob")
    for body in ("a", "b", "c"):
        await api.send(alice, room["id"], body)
    assert (await _summary(api, alice, room["id"]))["unread"] == 1
    assert (await _summary(api, bob, room["id"]))["unread"] == 3


async def test_marking_read_lowers_unread(api: Api) -> None:
    alice, bob = new_user_id("alice"), new_user_id("bob")
    room = await api.group(alice, bob)
    for body in ("a", "b", "c"):
        await api.send(alice, room["id"], body)
    resp = await api.call(bob, "POST", f"/v1/rooms/{room['id']}/read", {"seq": 2})
    assert resp.status_code == 200, resp.text
    assert (await _summary(api, bob, room["id"]))["unread"] == 1
    await api.call(bob, "POST", f"/v1/rooms/{room['id']}/read", {"seq": 3})
    assert (await _summary(api, bob, room["id"]))["unread"] == 0
