"""Group membership: who may add and remove whom, leaving, succession, private rooms."""

from __future__ import annotations

from typing import Any

import httpx

from tests.support import Api, assert_problem, new_user_id


def _roles(room: dict[str, Any]) -> dict[str, str]:
    return {m["user_id"]: m["role"] for m in room["members"]}


async def _add(
    api: Api, actor: str, room_id: str, user_id: str, role: str = "member"
) -> httpx.Response:
    return await api.call(
        actor, "POST", f"/v1/rooms/{room_id}/members", {"user_id": user_id, "role": role}
    )


async def _remove(api: Api, actor: str, room_id: str, user_id: str) -> httpx.Response:
    return await api.call(actor, "DELETE", f"/v1/rooms/{room_id}/members/{user_id}")


async def _admitted(api: Api, actor: str, room_id: str, user_id: str, role: str = "member") -> None:
    resp = await _add(api, actor, room_id, user_id, role)
    assert resp.status_code == 201, resp.text


async def _room(api: Api, user_id: str, room_id: str) -> dict[str, Any]:
    resp = await api.call(user_id, "GET", f"/v1/rooms/{room_id}")
    assert resp.status_code == 200, resp.text
    room: dict[str, Any] = resp.json()
    return room


# ---- adding ------------------------------------------------------------------------------


async def test_the_owner_adds_a_member(api: Api) -> None:
    owner, newcomer = new_user_id("owner"), new_user_id("new")
    room = await api.group(owner)
    resp = await _add(api, owner, room["id"], newcomer)
    assert resp.status_code == 201, resp.text
    assert _roles(resp.json())[newcomer] == "member"
    assert _roles(await _room(api, newcomer, room["id"]))[newcomer] == "member"


async def test_the_owner_appoints_an_admin(api: Api) -> None:
    owner, admin = new_user_id("owner"), new_user_id("admin")
    room = await api.group(owner)
    resp = await _add(api, owner, room["id"], admin, role="admin")
    assert resp.status_code == 201, resp.text
    assert _roles(resp.json())[admin] == "admin"


async def test_an_admin_adds_a_member(api: Api) -> None:
    owner, admin, newcomer = new_user_id("owner"), new_user_id("admin"), new_user_id("new")
    room = await api.group(owner)
    await _admitted(api, owner, room["id"], admin, role="admin")
    resp = await _add(api, admin, room["id"], newcomer)
    assert resp.status_code == 201, resp.text
    assert _roles(resp.json())[newcomer] == "member"


async def test_an_admin_cannot_appoint_an_admin(api: Api) -> None:
    owner, admin, newcomer = new_user_id("owner"), new_user_id("admin"), new_user_id("new")
    room = await api.group(owner)
    await _admitted(api, owner, room["id"], admin, role="admin")
    resp = await _add(api, admin, room["id"], newcomer, role="admin")
    assert_problem(resp, 403, "FORBIDDEN")
    assert newcomer not in _roles(await _room(api, owner, room["id"]))


async def test_a_plain_member_cannot_add_members(api: Api) -> None:
    owner, member, newcomer = new_user_id("owner"), new_user_id("member"), new_user_id("new")
    room = await api.group(owner, member)
    resp = await _add(api, member, room["id"], newcomer)
    assert_problem(resp, 403, "FORBIDDEN")
    assert newcomer not in _roles(await _room(api, owner, room["id"]))


async def test_adding_an_existing_member_is_a_conflict(api: Api) -> None:
    owner, member = new_user_id("owner"), new_user_id("member")
    room = await api.group(owner, member)
    resp = await _add(api, owner, room["id"], member, role="admin")
    assert_problem(resp, 409, "CONFLICT")
    assert _roles(await _room(api, owner, room["id"]))[member] == "member"


async def test_a_non_member_adding_gets_room_not_found(api: Api) -> None:
    room = await api.group(new_user_id("owner"))
    resp = await _add(api, new_user_id("outsider"), room["id"], new_user_id("new"))
    assert_problem(resp, 404, "ROOM_NOT_FOUND")


async def test_adding_an_unstorable_user_id_is_a_validation_failure(api: Api) -> None:
    owner = new_user_id("owner")
    room = await api.group(owner)
    resp = await _add(api, owner, room["id"], "nul\x00id")
    assert_problem(resp, 422, "VALIDATION_FAILED")


# ---- removing and leaving ----------------------------------------------------------------


async def test_the_owner_removes_a_member_with_204(api: Api) -> None:
    owner, member = new_user_id("owner"), new_user_id("member")
    room = await api.group(owner, member)
    resp = await _remove(api, owner, room["id"], member)
    assert resp.status_code == 204, resp.text
    assert member not in _roles(await _room(api, owner, room["id"]))


async def test_a_removed_member_gets_room_not_found(api: Api) -> None:
    owner, member = new_user_id("owner"), new_user_id("member")
    room = await api.group(owner, member)
    await _remove(api, owner, room["id"], member)
    resp = await api.call(member, "GET", f"/v1/rooms/{room['id']}")
    assert_problem(resp, 404, "ROOM_NOT_FOUND")


async def test_a_removed_member_no_longer_lists_the_room(api: Api) -> None:
    owner, member = new_user_id("owner"), new_user_id("member")
    room = await api.group(owner, member)
    await _remove(api, owner, room["id"], member)
    resp = await api.call(member, "GET", "/v1/rooms")
    assert room["id"] not in [r["id"] for r in resp.json()["items"]]


async def test_an_admin_removes_a_plain_member(api: Api) -> None:
    owner, admin, member = new_user_id("owner"), new_user_id("admin"), new_user_id("member")
    room = await api.group(owner, member)
    await _admitted(api, owner, room["id"], admin, role="admin")
    resp = await _remove(api, admin, room["id"], member)
    assert resp.status_code == 204, resp.text


async def test_an_admin_cannot_remove_another_admin(api: Api) -> None:
    owner, admin, other = new_user_id("owner"), new_user_id("admin"), new_user_id("admin2")
    room = await api.group(owner)
    await _admitted(api, owner, room["id"], admin, role="admin")
    await _admitted(api, owner, room["id"], other, role="admin")
    resp = await _remove(api, admin, room["id"], other)
    assert_problem(resp, 403, "FORBIDDEN")
    assert other in _roles(await _room(api, owner, room["id"]))


async def test_an_admin_cannot_remove_the_owner(api: Api) -> None:
    owner, admin = new_user_id("owner"), new_user_id("admin")
    room = await api.group(owner)
    await _admitted(api, owner, room["id"], admin, role="admin")
    resp = await _remove(api, admin, room["id"], owner)
    assert_problem(resp, 403, "FORBIDDEN")
    assert _roles(await _room(api, owner, room["id"]))[owner] == "owner"


async def test_a_plain_member_cannot_remove_another_member(api: Api) -> None:
    owner, member, other = new_user_id("owner"), new_user_id("member"), new_user_id("other")
    room = await api.group(owner, member, other)
    resp = await _remove(api, member, room["id"], other)
    assert_problem(resp, 403, "FORBIDDEN")


async def test_a_member_leaves_with_204(api: Api) -> None:
    owner, member = new_user_id("owner"), new_user_id("member")
    room = await api.group(owner, member)
    resp = await _remove(api, member, room["id"], member)
    assert resp.status_code == 204, resp.text
    after = await api.call(member, "GET", f"/v1/rooms/{room['id']}")
    assert_problem(after, 404, "ROOM_NOT_FOUND")


async def test_an_owner_leaving_passes_ownership_to_the_longest_standing_admin(api: Api) -> None:
    # Ids sort against seniority, so ordering by id instead of by joining would show.
    owner = new_user_id("owner")
    member = new_user_id("a-member")
    senior_admin, junior_admin = new_user_id("z-admin"), new_user_id("b-admin")
    room = await api.group(owner, member)
    await _admitted(api, owner, room["id"], senior_admin, role="admin")
    await _admitted(api, owner, room["id"], junior_admin, role="admin")
    resp = await _remove(api, owner, room["id"], owner)
    assert resp.status_code == 204, resp.text
    roles = _roles(await _room(api, member, room["id"]))
    assert roles == {member: "member", senior_admin: "owner", junior_admin: "admin"}


async def test_an_owner_leaving_without_admins_passes_ownership_to_the_longest_standing_member(
    api: Api,
) -> None:
    owner, senior, junior = new_user_id("owner"), new_user_id("z-senior"), new_user_id("a-junior")
    room = await api.group(owner, senior)
    await _admitted(api, owner, room["id"], junior)
    await _remove(api, owner, room["id"], owner)
    roles = _roles(await _room(api, senior, room["id"]))
    assert roles == {senior: "owner", junior: "member"}


async def test_removing_a_user_who_is_not_a_member_is_not_a_member(api: Api) -> None:
    owner = new_user_id("owner")
    room = await api.group(owner)
    resp = await _remove(api, owner, room["id"], new_user_id("stranger"))
    assert_problem(resp, 404, "NOT_A_MEMBER")


async def test_removing_an_unstorable_user_id_is_not_a_member(api: Api) -> None:
    owner = new_user_id("owner")
    room = await api.group(owner)
    resp = await _remove(api, owner, room["id"], "nul%00id")
    assert_problem(resp, 404, "NOT_A_MEMBER")


async def test_a_non_member_removing_gets_room_not_found(api: Api) -> None:
    owner, member = new_user_id("owner"), new_user_id("member")
    room = await api.group(owner, member)
    resp = await _remove(api, new_user_id("outsider"), room["id"], member)
    assert_problem(resp, 404, "ROOM_NOT_FOUND")


# ---- private rooms -----------------------------------------------------------------------


async def test_a_direct_room_cannot_gain_a_member(api: Api) -> None:
    alice, bob = new_user_id("alice"), new_user_id("bob")
    room = await api.direct(alice, bob)
    resp = await _add(api, alice, room["id"], new_user_id("carol"))
    assert_problem(resp, 403, "FORBIDDEN")


async def test_a_direct_room_cannot_lose_the_other_member(api: Api) -> None:
    alice, bob = new_user_id("alice"), new_user_id("bob")
    room = await api.direct(alice, bob)
    resp = await _remove(api, alice, room["id"], bob)
    assert_problem(resp, 403, "FORBIDDEN")
    assert len((await _room(api, alice, room["id"]))["members"]) == 2


async def test_a_direct_room_cannot_be_left(api: Api) -> None:
    alice, bob = new_user_id("alice"), new_user_id("bob")
    room = await api.direct(alice, bob)
    resp = await _remove(api, alice, room["id"], alice)
    assert_problem(resp, 403, "FORBIDDEN")
    assert len((await _room(api, bob, room["id"]))["members"]) == 2


# ---- newcomers and history ---------------------------------------------------------------


async def test_a_newcomer_has_nothing_unread_from_before_joining(api: Api) -> None:
    owner, newcomer = new_user_id("owner"), new_user_id("new")
    room = await api.group(owner)
    await api.send(owner, room["id"], "before 1")
    await api.send(owner, room["id"], "before 2")
    await _admitted(api, owner, room["id"], newcomer)
    page = (await api.call(newcomer, "GET", "/v1/rooms")).json()
    [summary] = [r for r in page["items"] if r["id"] == room["id"]]
    assert summary["unread"] == 0
    await api.send(owner, room["id"], "after")
    page = (await api.call(newcomer, "GET", "/v1/rooms")).json()
    [summary] = [r for r in page["items"] if r["id"] == room["id"]]
    assert summary["unread"] == 1


async def test_a_newcomer_can_read_history_from_before_joining(api: Api) -> None:
    owner, newcomer = new_user_id("owner"), new_user_id("new")
    room = await api.group(owner)
    await api.send(owner, room["id"], "before 1")
    await api.send(owner, room["id"], "before 2")
    await _admitted(api, owner, room["id"], newcomer)
    resp = await api.call(newcomer, "GET", f"/v1/rooms/{room['id']}/messages")
    assert resp.status_code == 200, resp.text
    assert [m["body"] for m in resp.json()["items"]] == ["before 1", "before 2"]
