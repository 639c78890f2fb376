"""Users and presence as REST shows them: only to people who share a room."""

from __future__ import annotations

from typing import Any

import httpx

from tests.support import Api, assert_problem, new_user_id, token_for


async def _presence(api: Api, viewer: str, *user_ids: str) -> httpx.Response:
    return await api.call(viewer, "GET", "/v1/presence", params={"user_ids": ",".join(user_ids)})


def _by_user(resp: httpx.Response) -> dict[str, dict[str, Any]]:
    assert resp.status_code == 200, resp.text
    return {item["user_id"]: item for item in resp.json()["items"]}


# ---- users -------------------------------------------------------------------------------


async def test_a_fresh_user_is_offline_and_never_seen(api: Api) -> None:
    me = new_user_id("fresh")
    resp = await api.call(me, "GET", "/v1/me")
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["id"] == me
    assert body["online"] is False
    assert body["last_seen"] is None


async def test_a_room_mate_is_described_with_name_and_presence(
    api: Api, client: httpx.AsyncClient
) -> None:
    me, mate = new_user_id("me"), new_user_id("mate")
    await client.get("/v1/me", headers={"Authorization": f"Bearer {token_for(mate, 'Mate')}"})
    await api.group(me, mate)
    resp = await api.call(me, "GET", f"/v1/users/{mate}")
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"id": mate, "name": "Mate", "online": False, "last_seen": None}


async def test_a_stranger_is_user_not_found(api: Api) -> None:
    me, stranger = new_user_id("me"), new_user_id("stranger")
    await api.group(stranger)  # the stranger exists, in a room of their own
    resp = await api.call(me, "GET", f"/v1/users/{stranger}")
    assert_problem(resp, 404, "USER_NOT_FOUND")


async def test_a_nonexistent_user_is_user_not_found(api: Api) -> None:
    resp = await api.call(new_user_id("me"), "GET", f"/v1/users/{new_user_id('ghost')}")
    assert_problem(resp, 404, "USER_NOT_FOUND")


async def test_a_stranger_and_a_nonexistent_user_answer_alike(api: Api) -> None:
    me, stranger = new_user_id("me"), new_user_id("stranger")
    await api.group(stranger)
    known = await api.call(me, "GET", f"/v1/users/{stranger}")
    unknown = await api.call(me, "GET", f"/v1/users/{new_user_id('ghost')}")
    assert known.json() == unknown.json()


async def test_a_former_room_mate_is_user_not_found(api: Api) -> None:
    owner, member = new_user_id("owner"), new_user_id("member")
    room = await api.group(owner, member)
    await api.call(owner, "DELETE", f"/v1/rooms/{room['id']}/members/{member}")
    resp = await api.call(owner, "GET", f"/v1/users/{member}")
    assert_problem(resp, 404, "USER_NOT_FOUND")


async def test_an_unstorable_user_id_is_user_not_found(api: Api) -> None:
    resp = await api.call(new_user_id("me"), "GET", "/v1/users/nul%00id")
    assert_problem(resp, 404, "USER_NOT_FOUND")


# ---- presence ----------------------------------------------------------------------------


async def test_presence_of_room_mates_lists_each_of_them_offline(api: Api) -> None:
    me, a, b = new_user_id("me"), new_user_id("a"), new_user_id("b")
    await api.group(me, a)
    await api.direct(me, b)
    items = _by_user(await _presence(api, me, a, b))
    assert items == {
        a: {"user_id": a, "online": False, "last_seen": None},
        b: {"user_id": b, "online": False, "last_seen": None},
    }


async def test_presence_of_oneself_is_allowed(api: Api) -> None:
    me = new_user_id("me")
    assert set(_by_user(await _presence(api, me, me))) == {me}


async def test_presence_including_a_stranger_is_forbidden(api: Api) -> None:
    me, mate, stranger = new_user_id("me"), new_user_id("mate"), new_user_id("stranger")
    await api.group(me, mate)
    await api.group(stranger)
    resp = await _presence(api, me, mate, stranger)
    assert_problem(resp, 403, "FORBIDDEN")


async def test_empty_user_ids_is_a_validation_failure(api: Api) -> None:
    resp = await api.call(new_user_id(), "GET", "/v1/presence", params={"user_ids": ""})
    assert_problem(resp, 422, "VALIDATION_FAILED")


async def test_only_commas_in_user_ids_is_a_validation_failure(api: Api) -> None:
    resp = await api.call(new_user_id(), "GET", "/v1/presence", params={"user_ids": ", ,,"})
    assert_problem(resp, 422, "VALIDATION_FAILED")


async def test_missing_user_ids_is_a_validation_failure(api: Api) -> None:
    resp = await api.call(new_user_id(), "GET", "/v1/presence")
    assert_problem(resp, 422, "VALIDATION_FAILED")


async def test_more_than_500_user_ids_is_a_validation_failure(api: Api) -> None:
    ids = [f"x{i}" for i in range(501)]
    resp = await _presence(api, new_user_id(), *ids)
    assert_problem(resp, 422, "VALIDATION_FAILED")


async def test_an_unstorable_user_id_in_presence_is_a_validation_failure(api: Api) -> None:
    resp = await _presence(api, new_user_id(), "nul\x00id")
    assert_problem(resp, 422, "VALIDATION_FAILED")
