"""Delivered and read status per recipient, and the read watermark over REST."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, tzinfo
from typing import Any, Self

import asyncpg
import pytest

from app.domain import watermarks
from tests.support import Api, Stores, assert_problem, new_user_id

# Far beyond any drift between real clocks, so no ordering can come out right by chance.
CLOCK_OFF = timedelta(hours=1)


def receipts_path(room_id: str, message_id: str) -> str:
    return f"/v1/rooms/{room_id}/messages/{message_id}/receipts"


async def read(api: Api, user_id: str, room_id: str, seq: int) -> dict[str, Any]:
    resp = await api.call(user_id, "POST", f"/v1/rooms/{room_id}/read", {"seq": seq})
    assert resp.status_code == 200, resp.text
    marks: dict[str, Any] = resp.json()
    return marks


async def receipts(api: Api, user_id: str, room_id: str, message_id: str) -> dict[str, Any]:
    resp = await api.call(user_id, "GET", receipts_path(room_id, message_id))
    assert resp.status_code == 200, resp.text
    by_user = {r["user_id"]: r for r in resp.json()["items"]}
    return by_user


async def own_marks(api: Api, user_id: str, room_id: str) -> tuple[int, int]:
    resp = await api.call(user_id, "GET", f"/v1/rooms/{room_id}")
    assert resp.status_code == 200, resp.text
    me = next(m for m in resp.json()["members"] if m["user_id"] == user_id)
    return me["delivered_seq"], me["read_seq"]


@pytest.fixture
async def db(stores: Stores) -> AsyncIterator[Any]:
    """A connection of the test's own to the app's PostgreSQL, to read its clock."""
    dsn = stores.database_url.replace("postgresql+asyncpg://", "postgresql://", 1)
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        yield conn
    finally:
        await conn.close()


async def db_clock(db: Any) -> datetime:
    at: datetime = await db.fetchval("SELECT clock_timestamp()")
    return at


def instance_clock_off_by(monkeypatch: pytest.MonkeyPatch, offset: timedelta) -> None:
    """Make this instance's wall clock disagree with the database's, as another host's may.

    `raising=False`: the watermark lane reads no clock of its own any more; setting one
    anyway catches it if it comes back."""

    class Off(datetime):
        @classmethod
        def now(cls, tz: tzinfo | None = None) -> Self:
            return cls.fromtimestamp(time.time() + offset.total_seconds(), tz)

    monkeypatch.setattr(watermarks, "datetime", Off, raising=False)


async def test_receipts_show_each_recipient_on_their_own(api: Api) -> None:
    owner, reader, idler = new_user_id("owner"), new_user_id("a"), new_user_id("b")
    room = await api.group(owner, reader, idler)
    sent = [await api.send(owner, room["id"], f"m{n}") for n in range(3)]
    await read(api, reader, room["id"], 3)
    for message in sent:
        status = await receipts(api, owner, room["id"], message["id"])
        assert set(status) == {reader, idler}
        assert status[reader]["read_at"] is not None
        assert status[reader]["read_at"].endswith("Z")
        assert status[reader]["delivered_at"] is not None
        assert status[reader]["delivered_at"] <= status[reader]["read_at"]
        assert status[idler] == {"user_id": idler, "delivered_at": None, "read_at": None}


async def test_receipts_do_not_list_the_sender(api: Api) -> None:
    owner, member = new_user_id("owner"), new_user_id("m")
    room = await api.group(owner, member)
    sent = await api.send(member, room["id"], "from a member")
    status = await receipts(api, member, room["id"], sent["id"])
    assert set(status) == {owner}


async def test_partial_read_marks_only_messages_up_to_the_watermark(api: Api) -> None:
    owner, reader = new_user_id("owner"), new_user_id("a")
    room = await api.group(owner, reader)
    sent = [await api.send(owner, room["id"], f"m{n}") for n in range(3)]
    await read(api, reader, room["id"], 2)
    assert (await receipts(api, owner, room["id"], sent[1]["id"]))[reader]["read_at"] is not None
    third = (await receipts(api, owner, room["id"], sent[2]["id"]))[reader]
    assert (third["delivered_at"], third["read_at"]) == (None, None)


async def test_read_watermark_is_clamped_to_last_seq(api: Api) -> None:
    owner, reader = new_user_id("owner"), new_user_id("a")
    room = await api.group(owner, reader)
    for n in range(3):
        await api.send(owner, room["id"], f"m{n}")
    marks = await read(api, reader, room["id"], 999)
    assert marks == {"room_id": room["id"], "delivered_seq": 3, "read_seq": 3}
    assert await own_marks(api, reader, room["id"]) == (3, 3)


async def test_read_watermark_never_moves_back(api: Api) -> None:
    owner, reader = new_user_id("owner"), new_user_id("a")
    room = await api.group(owner, reader)
    for n in range(3):
        await api.send(owner, room["id"], f"m{n}")
    await read(api, reader, room["id"], 3)
    marks = await read(api, reader, room["id"], 1)
    assert (marks["delivered_seq"], marks["read_seq"]) == (3, 3)
    assert await own_marks(api, reader, room["id"]) == (3, 3)


async def test_reading_moves_delivered_too(api: Api) -> None:
    owner, reader = new_user_id("owner"), new_user_id("a")
    room = await api.group(owner, reader)
    first = await api.send(owner, room["id"], "one")
    await api.send(owner, room["id"], "two")
    assert await own_marks(api, reader, room["id"]) == (0, 0)
    marks = await read(api, reader, room["id"], 2)
    assert marks["delivered_seq"] == 2
    status = (await receipts(api, owner, room["id"], first["id"]))[reader]
    assert status["delivered_at"] is not None


async def test_reading_clears_unread_in_the_room_list(api: Api) -> None:
    owner, reader = new_user_id("owner"), new_user_id("a")
    room = await api.group(owner, reader)
    for n in range(3):
        await api.send(owner, room["id"], f"m{n}")
    await read(api, reader, room["id"], 2)
    resp = await api.call(reader, "GET", "/v1/rooms")
    assert resp.status_code == 200, resp.text
    listed = next(r for r in resp.json()["items"] if r["id"] == room["id"])
    assert (listed["unread"], listed["read_seq"]) == (1, 2)


async def test_a_member_added_later_is_not_a_recipient_of_earlier_messages(api: Api) -> None:
    owner, early, late = new_user_id("owner"), new_user_id("early"), new_user_id("late")
    room = await api.group(owner, early)
    before = await api.send(owner, room["id"], "before late joined")
    resp = await api.call(owner, "POST", f"/v1/rooms/{room['id']}/members", {"user_id": late})
    assert resp.status_code == 201, resp.text
    after = await api.send(owner, room["id"], "after late joined")
    assert set(await receipts(api, owner, room["id"], before["id"])) == {early}
    assert set(await receipts(api, owner, room["id"], after["id"])) == {early, late}


async def test_receipts_pagination_with_limit_1_walks_every_recipient(api: Api) -> None:
    owner = new_user_id("owner")
    others = sorted(new_user_id(f"r{i}") for i in range(4))
    room = await api.group(owner, *others)
    sent = await api.send(owner, room["id"], "to all")
    seen: list[str] = []
    params: dict[str, Any] = {"limit": 1}
    for _ in range(10):
        resp = await api.call(owner, "GET", receipts_path(room["id"], sent["id"]), params=params)
        assert resp.status_code == 200, resp.text
        body = resp.json()
        assert len(body["items"]) <= 1
        seen += [r["user_id"] for r in body["items"]]
        if body["next_cursor"] is None:
            break
        params = {"limit": 1, "cursor": body["next_cursor"]}
    else:
        raise AssertionError("receipt pagination does not end")
    assert seen == others


async def test_a_receipts_page_that_holds_the_last_recipient_has_no_next_cursor(
    api: Api,
) -> None:
    owner = new_user_id("owner")
    others = sorted(new_user_id(f"r{i}") for i in range(3))
    room = await api.group(owner, *others)
    sent = await api.send(owner, room["id"], "to all")
    path = receipts_path(room["id"], sent["id"])

    full = (await api.call(owner, "GET", path, params={"limit": 3})).json()
    partial = (await api.call(owner, "GET", path, params={"limit": 2})).json()

    assert ([r["user_id"] for r in full["items"]], full["next_cursor"]) == (others, None)
    assert len(partial["items"]) == 2
    assert partial["next_cursor"] is not None


async def test_receipts_with_a_forged_cursor_are_rejected(api: Api) -> None:
    owner, member = new_user_id("owner"), new_user_id("m")
    room = await api.group(owner, member)
    sent = await api.send(owner, room["id"], "x")
    resp = await api.call(
        owner, "GET", receipts_path(room["id"], sent["id"]), params={"cursor": "!!not-ours"}
    )
    assert_problem(resp, 422, "VALIDATION_FAILED")


async def test_receipts_for_a_non_member_are_room_not_found(api: Api) -> None:
    owner, member = new_user_id("owner"), new_user_id("m")
    room = await api.group(owner, member)
    sent = await api.send(owner, room["id"], "x")
    resp = await api.call(new_user_id("eve"), "GET", receipts_path(room["id"], sent["id"]))
    assert_problem(resp, 404, "ROOM_NOT_FOUND")


async def test_receipts_of_a_message_from_another_room_are_message_not_found(
    api: Api,
) -> None:
    owner, member = new_user_id("owner"), new_user_id("m")
    first = await api.group(owner, member)
    second = await api.group(owner, member)
    sent = await api.send(owner, first["id"], "x")
    resp = await api.call(owner, "GET", receipts_path(second["id"], sent["id"]))
    assert_problem(resp, 404, "MESSAGE_NOT_FOUND")
    resp = await api.call(owner, "GET", receipts_path(first["id"], str(uuid.uuid4())))
    assert_problem(resp, 404, "MESSAGE_NOT_FOUND")


async def test_read_by_a_non_member_is_room_not_found(api: Api) -> None:
    owner, member = new_user_id("owner"), new_user_id("m")
    room = await api.group(owner, member)
    await api.send(owner, room["id"], "x")
    resp = await api.call(new_user_id("eve"), "POST", f"/v1/rooms/{room['id']}/read", {"seq": 1})
    assert_problem(resp, 404, "ROOM_NOT_FOUND")


async def test_read_with_a_negative_seq_is_rejected(api: Api) -> None:
    owner, member = new_user_id("owner"), new_user_id("m")
    room = await api.group(owner, member)
    await api.send(owner, room["id"], "x")
    resp = await api.call(member, "POST", f"/v1/rooms/{room['id']}/read", {"seq": -1})
    assert_problem(resp, 422, "VALIDATION_FAILED")
    assert await own_marks(api, member, room["id"]) == (0, 0)


async def test_receipt_times_are_the_databases_when_the_instance_clock_is_off(
    api: Api, db: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    owner, reader = new_user_id("owner"), new_user_id("a")
    room = await api.group(owner, reader)
    sent = await api.send(owner, room["id"], "one")
    instance_clock_off_by(monkeypatch, -CLOCK_OFF)

    before = await db_clock(db)
    await read(api, reader, room["id"], 1)
    after = await db_clock(db)

    status = (await receipts(api, owner, room["id"], sent["id"]))[reader]
    assert before <= datetime.fromisoformat(status["delivered_at"]) <= after
    assert before <= datetime.fromisoformat(status["read_at"]) <= after


async def test_receipt_times_follow_the_moves_when_instance_clocks_disagree(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    owner, reader = new_user_id("owner"), new_user_id("a")
    room = await api.group(owner, reader)
    first = await api.send(owner, room["id"], "one")
    second = await api.send(owner, room["id"], "two")

    instance_clock_off_by(monkeypatch, CLOCK_OFF)
    await read(api, reader, room["id"], 1)
    instance_clock_off_by(monkeypatch, -CLOCK_OFF)
    await read(api, reader, room["id"], 2)

    earlier = (await receipts(api, owner, room["id"], first["id"]))[reader]
    later = (await receipts(api, owner, room["id"], second["id"]))[reader]
    for kind in ("delivered_at", "read_at"):
        assert datetime.fromisoformat(earlier[kind]) <= datetime.fromisoformat(later[kind])
