"""Sending, idempotency, ordering, content rules, edits and tombstones over REST."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx

from tests.support import Api, assert_problem, new_user_id

ATTACHMENT = {
    "url": "https://files.example.com/a/cat.png",
    "name": "cat.png",
    "mime": "image/png",
    "size": 1234,
}


def messages_path(room_id: str) -> str:
    return f"/v1/rooms/{room_id}/messages"


async def post_message(api: Api, user_id: str, room_id: str, **fields: Any) -> httpx.Response:
    payload: dict[str, Any] = {"client_msg_id": str(uuid.uuid4()), "kind": "text", **fields}
    return await api.call(user_id, "POST", messages_path(room_id), payload)


async def history(api: Api, user_id: str, room_id: str, **params: Any) -> list[dict[str, Any]]:
    resp = await api.call(user_id, "GET", messages_path(room_id), params=params)
    assert resp.status_code == 200, resp.text
    items: list[dict[str, Any]] = resp.json()["items"]
    return items


async def last_seq(api: Api, user_id: str, room_id: str) -> int:
    resp = await api.call(user_id, "GET", f"/v1/rooms/{room_id}")
    assert resp.status_code == 200, resp.text
    seq: int = resp.json()["last_seq"]
    return seq


# ---- send ------------------------------------------------------------------------------


async def test_send_returns_the_stored_message_with_201(api: Api) -> None:
    alice, bob = new_user_id("alice"), new_user_id("bob")
    room = await api.group(alice, bob)
    client_msg_id = str(uuid.uuid4())
    resp = await api.call(
        alice,
        "POST",
        messages_path(room["id"]),
        {"client_msg_id": client_msg_id, "kind": "text", "body": "hello"},
    )
    assert resp.status_code == 201, resp.text
    message = resp.json()
    uuid.UUID(message["id"])
    assert message["room_id"] == room["id"]
    assert message["seq"] == 1
    assert message["sender_id"] == alice
    assert message["kind"] == "text"
    assert message["body"] == "hello"
    assert message["attachment"] is None
    assert message["client_msg_id"] == client_msg_id
    assert message["created_at"].endswith("Z")
    assert message["edited_at"] is None
    assert message["deleted"] is False
    assert await history(api, bob, room["id"]) == [message]


async def test_sequential_sends_get_seq_1_2_3(api: Api) -> None:
    alice, bob = new_user_id("alice"), new_user_id("bob")
    room = await api.group(alice, bob)
    seqs = [(await api.send(u, room["id"], "x"))["seq"] for u in (alice, bob, alice)]
    assert seqs == [1, 2, 3]


async def test_repeating_a_client_msg_id_returns_the_first_message_and_stores_one(
    api: Api,
) -> None:
    alice, bob = new_user_id("alice"), new_user_id("bob")
    room = await api.group(alice, bob)
    client_msg_id = str(uuid.uuid4())
    first = await api.send(alice, room["id"], "once", client_msg_id=client_msg_id)
    again = await api.send(alice, room["id"], "once", client_msg_id=client_msg_id)
    assert again == first
    assert [m["id"] for m in await history(api, alice, room["id"])] == [first["id"]]
    assert await last_seq(api, alice, room["id"]) == 1


async def test_ten_concurrent_sends_of_one_client_msg_id_store_one_row(api: Api) -> None:
    alice, bob = new_user_id("alice"), new_user_id("bob")
    room = await api.group(alice, bob)
    payload = {"client_msg_id": str(uuid.uuid4()), "kind": "text", "body": "race"}
    responses = await asyncio.gather(
        *(api.call(alice, "POST", messages_path(room["id"]), payload) for _ in range(10))
    )
    assert all(r.status_code == 201 for r in responses), [r.text for r in responses]
    answers = [r.json() for r in responses]
    assert all(a == answers[0] for a in answers)
    assert answers[0]["seq"] == 1
    assert len(await history(api, alice, room["id"])) == 1
    assert await last_seq(api, alice, room["id"]) == 1


async def test_a_retry_with_a_different_body_returns_the_first_message(api: Api) -> None:
    alice, bob = new_user_id("alice"), new_user_id("bob")
    room = await api.group(alice, bob)
    client_msg_id = str(uuid.uuid4())
    first = await api.send(alice, room["id"], "original", client_msg_id=client_msg_id)
    retry = await api.send(alice, room["id"], "changed", client_msg_id=client_msg_id)
    assert retry == first
    assert [m["body"] for m in await history(api, bob, room["id"])] == ["original"]


async def test_concurrent_sends_of_one_client_msg_id_to_two_rooms_store_one_message(
    api: Api,
) -> None:
    alice, bob = new_user_id("alice"), new_user_id("bob")
    rooms = [await api.group(alice, bob), await api.group(alice, bob)]
    payload = {"client_msg_id": str(uuid.uuid4()), "kind": "text", "body": "where?"}
    responses = await asyncio.gather(
        *(api.call(alice, "POST", messages_path(rooms[i % 2]["id"]), payload) for i in range(6))
    )
    created = [r for r in responses if r.status_code == 201]
    for refused in (r for r in responses if r.status_code != 201):
        assert_problem(refused, 409, "CONFLICT")
    assert len({r.json()["id"] for r in created}) == 1
    winner = created[0].json()["room_id"]
    assert all(r.json()["room_id"] == winner for r in created)
    stored = [await history(api, alice, room["id"]) for room in rooms]
    assert sorted(len(items) for items in stored) == [0, 1]


async def test_reusing_a_client_msg_id_in_another_room_is_a_conflict(api: Api) -> None:
    alice, bob, carol = new_user_id("alice"), new_user_id("bob"), new_user_id("carol")
    first_room = await api.group(alice, bob)
    second_room = await api.group(alice, carol)
    client_msg_id = str(uuid.uuid4())
    await api.send(alice, first_room["id"], "here", client_msg_id=client_msg_id)
    resp = await post_message(
        api, alice, second_room["id"], body="there", client_msg_id=client_msg_id
    )
    assert_problem(resp, 409, "CONFLICT")
    assert await history(api, alice, second_room["id"]) == []
    assert await last_seq(api, alice, second_room["id"]) == 0


async def test_the_same_client_msg_id_from_another_sender_is_another_message(api: Api) -> None:
    alice, bob = new_user_id("alice"), new_user_id("bob")
    room = await api.group(alice, bob)
    client_msg_id = str(uuid.uuid4())
    from_alice = await api.send(alice, room["id"], "a", client_msg_id=client_msg_id)
    from_bob = await api.send(bob, room["id"], "b", client_msg_id=client_msg_id)
    assert from_alice["id"] != from_bob["id"]
    assert (from_alice["seq"], from_bob["seq"]) == (1, 2)
    assert from_bob["sender_id"] == bob
    assert len(await history(api, alice, room["id"])) == 2


async def test_two_hundred_concurrent_sends_get_seq_1_to_200(api: Api) -> None:
    senders = [new_user_id(f"m{i}") for i in range(4)]
    room = await api.group(senders[0], *senders[1:])
    responses = await asyncio.gather(
        *(post_message(api, senders[i % 4], room["id"], body=f"n{i}") for i in range(200))
    )
    assert all(r.status_code == 201 for r in responses), {r.status_code for r in responses}
    seqs = sorted(r.json()["seq"] for r in responses)
    assert seqs == list(range(1, 201))
    assert len({r.json()["id"] for r in responses}) == 200
    assert await last_seq(api, senders[0], room["id"]) == 200
    stored = await history(api, senders[1], room["id"], limit=200)
    assert [m["seq"] for m in stored] == list(range(1, 201))


# ---- content rules ---------------------------------------------------------------------


async def test_image_and_file_messages_carry_their_attachment(api: Api) -> None:
    alice, bob = new_user_id("alice"), new_user_id("bob")
    room = await api.group(alice, bob)
    for kind in ("image", "file"):
        resp = await post_message(api, alice, room["id"], kind=kind, attachment=ATTACHMENT)
        assert resp.status_code == 201, resp.text
        assert resp.json()["kind"] == kind
        assert resp.json()["attachment"] == ATTACHMENT


async def test_image_without_attachment_is_rejected(api: Api) -> None:
    alice, bob = new_user_id("alice"), new_user_id("bob")
    room = await api.group(alice, bob)
    resp = await post_message(api, alice, room["id"], kind="image", body="caption")
    assert_problem(resp, 422, "VALIDATION_FAILED")


async def test_file_without_attachment_is_rejected(api: Api) -> None:
    alice, bob = new_user_id("alice"), new_user_id("bob")
    room = await api.group(alice, bob)
    resp = await post_message(api, alice, room["id"], kind="file")
    assert_problem(resp, 422, "VALIDATION_FAILED")


async def test_text_with_attachment_is_rejected(api: Api) -> None:
    alice, bob = new_user_id("alice"), new_user_id("bob")
    room = await api.group(alice, bob)
    resp = await post_message(api, alice, room["id"], body="hi", attachment=ATTACHMENT)
    assert_problem(resp, 422, "VALIDATION_FAILED")


async def test_blank_text_is_rejected(api: Api) -> None:
    alice, bob = new_user_id("alice"), new_user_id("bob")
    room = await api.group(alice, bob)
    for body in ("", "   \n\t"):
        resp = await post_message(api, alice, room["id"], body=body)
        assert_problem(resp, 422, "VALIDATION_FAILED")
    resp = await post_message(api, alice, room["id"])
    assert_problem(resp, 422, "VALIDATION_FAILED")
    assert await history(api, alice, room["id"]) == []


async def test_body_of_exactly_4000_chars_is_accepted(api: Api) -> None:
    alice, bob = new_user_id("alice"), new_user_id("bob")
    room = await api.group(alice, bob)
    sent = await api.send(alice, room["id"], "é" * 4000)
    assert len(sent["body"]) == 4000


async def test_body_over_4000_chars_is_payload_too_large(api: Api) -> None:
    alice, bob = new_user_id("alice"), new_user_id("bob")
    room = await api.group(alice, bob)
    resp = await post_message(api, alice, room["id"], body="x" * 4001)
    assert_problem(resp, 413, "PAYLOAD_TOO_LARGE")
    assert await history(api, alice, room["id"]) == []


async def test_attachment_url_that_is_not_http_is_rejected(api: Api) -> None:
    alice, bob = new_user_id("alice"), new_user_id("bob")
    room = await api.group(alice, bob)
    for url in ("javascript:alert(1)", "file:///etc/passwd", "ftp://example.com/x.png"):
        bad = {**ATTACHMENT, "url": url}
        resp = await post_message(api, alice, room["id"], kind="image", attachment=bad)
        assert_problem(resp, 422, "VALIDATION_FAILED")


async def test_a_sender_id_in_the_body_never_becomes_the_sender(api: Api) -> None:
    alice, bob = new_user_id("alice"), new_user_id("bob")
    room = await api.group(alice, bob)
    resp = await post_message(api, alice, room["id"], body="as bob?", sender_id=bob)
    if resp.status_code == 201:
        assert resp.json()["sender_id"] == alice
    else:
        assert_problem(resp, 422, "VALIDATION_FAILED")
    assert all(m["sender_id"] == alice for m in await history(api, bob, room["id"]))


async def test_a_nul_character_in_the_body_is_rejected(api: Api) -> None:
    alice, bob = new_user_id("alice"), new_user_id("bob")
    room = await api.group(alice, bob)
    resp = await post_message(api, alice, room["id"], body="a\x00b")
    assert_problem(resp, 422, "VALIDATION_FAILED")
    assert await history(api, alice, room["id"]) == []


async def test_an_unknown_kind_is_rejected(api: Api) -> None:
    alice, bob = new_user_id("alice"), new_user_id("bob")
    room = await api.group(alice, bob)
    resp = await post_message(api, alice, room["id"], kind="video", body="x")
    assert_problem(resp, 422, "VALIDATION_FAILED")


async def test_a_client_msg_id_that_is_not_a_uuid_is_rejected(api: Api) -> None:
    alice, bob = new_user_id("alice"), new_user_id("bob")
    room = await api.group(alice, bob)
    resp = await post_message(api, alice, room["id"], body="x", client_msg_id="msg-1")
    assert_problem(resp, 422, "VALIDATION_FAILED")


async def test_non_member_send_is_room_not_found_and_stores_nothing(api: Api) -> None:
    alice, bob, eve = new_user_id("alice"), new_user_id("bob"), new_user_id("eve")
    room = await api.group(alice, bob)
    client_msg_id = str(uuid.uuid4())
    resp = await post_message(api, eve, room["id"], body="let me in", client_msg_id=client_msg_id)
    assert_problem(resp, 404, "ROOM_NOT_FOUND")
    assert await history(api, alice, room["id"]) == []
    assert await last_seq(api, alice, room["id"]) == 0
    # The refused send consumed nothing: eve can still use that id in her own room.
    own = await api.group(eve, alice)
    sent = await api.send(eve, own["id"], "mine", client_msg_id=client_msg_id)
    assert sent["room_id"] == own["id"]


async def test_send_to_an_unknown_room_is_room_not_found(api: Api) -> None:
    resp = await post_message(api, new_user_id(), str(uuid.uuid4()), body="anyone?")
    assert_problem(resp, 404, "ROOM_NOT_FOUND")


# ---- edit and delete -------------------------------------------------------------------


def message_path(room_id: str, message_id: str) -> str:
    return f"/v1/rooms/{room_id}/messages/{message_id}"


async def test_editing_own_message_changes_body_and_sets_edited_at(api: Api) -> None:
    alice, bob = new_user_id("alice"), new_user_id("bob")
    room = await api.group(alice, bob)
    sent = await api.send(alice, room["id"], "tpyo")
    resp = await api.call(alice, "PATCH", message_path(room["id"], sent["id"]), {"body": "typo"})
    assert resp.status_code == 200, resp.text
    edited = resp.json()
    assert edited["body"] == "typo"
    assert edited["edited_at"] is not None
    assert edited["edited_at"].endswith("Z")
    assert (edited["id"], edited["seq"], edited["created_at"]) == (
        sent["id"],
        sent["seq"],
        sent["created_at"],
    )
    assert await history(api, bob, room["id"]) == [edited]


async def test_editing_someone_elses_message_is_forbidden(api: Api) -> None:
    alice, bob = new_user_id("alice"), new_user_id("bob")
    room = await api.group(alice, bob)
    sent = await api.send(alice, room["id"], "mine")
    resp = await api.call(bob, "PATCH", message_path(room["id"], sent["id"]), {"body": "hax"})
    assert_problem(resp, 403, "FORBIDDEN")
    assert (await history(api, alice, room["id"]))[0]["body"] == "mine"


async def test_editing_with_a_message_id_from_another_room_is_message_not_found(
    api: Api,
) -> None:
    alice, bob = new_user_id("alice"), new_user_id("bob")
    first = await api.group(alice, bob)
    second = await api.group(alice, bob)
    sent = await api.send(alice, first["id"], "in first")
    resp = await api.call(alice, "PATCH", message_path(second["id"], sent["id"]), {"body": "x"})
    assert_problem(resp, 404, "MESSAGE_NOT_FOUND")
    assert (await history(api, alice, first["id"]))[0]["body"] == "in first"


async def test_editing_to_a_blank_body_is_rejected(api: Api) -> None:
    alice, bob = new_user_id("alice"), new_user_id("bob")
    room = await api.group(alice, bob)
    sent = await api.send(alice, room["id"], "keep")
    resp = await api.call(alice, "PATCH", message_path(room["id"], sent["id"]), {"body": " "})
    assert_problem(resp, 422, "VALIDATION_FAILED")


async def test_editing_to_an_over_long_body_is_payload_too_large(api: Api) -> None:
    alice, bob = new_user_id("alice"), new_user_id("bob")
    room = await api.group(alice, bob)
    sent = await api.send(alice, room["id"], "keep")
    resp = await api.call(
        alice, "PATCH", message_path(room["id"], sent["id"]), {"body": "y" * 4001}
    )
    assert_problem(resp, 413, "PAYLOAD_TOO_LARGE")


async def test_deleting_own_message_leaves_a_tombstone_with_the_same_seq(api: Api) -> None:
    alice, bob = new_user_id("alice"), new_user_id("bob")
    room = await api.group(alice, bob)
    await api.send(alice, room["id"], "before")
    sent = await api.send(alice, room["id"], "oops")
    photo = await post_message(api, alice, room["id"], kind="image", attachment=ATTACHMENT)
    assert photo.status_code == 201, photo.text
    resp = await api.call(alice, "DELETE", message_path(room["id"], sent["id"]))
    assert resp.status_code == 200, resp.text
    tombstone = resp.json()
    assert tombstone["deleted"] is True
    assert tombstone["body"] is None
    assert tombstone["attachment"] is None
    assert (tombstone["id"], tombstone["seq"]) == (sent["id"], 2)
    resp = await api.call(alice, "DELETE", message_path(room["id"], photo.json()["id"]))
    assert resp.status_code == 200, resp.text
    assert resp.json()["attachment"] is None
    stored = await history(api, bob, room["id"])
    assert [m["seq"] for m in stored] == [1, 2, 3]
    assert stored[1] == tombstone
    assert stored[2]["deleted"] is True
    assert stored[2]["attachment"] is None


async def test_deleting_a_deleted_message_again_is_harmless(api: Api) -> None:
    alice, bob = new_user_id("alice"), new_user_id("bob")
    room = await api.group(alice, bob)
    sent = await api.send(alice, room["id"], "gone")
    first = await api.call(alice, "DELETE", message_path(room["id"], sent["id"]))
    again = await api.call(alice, "DELETE", message_path(room["id"], sent["id"]))
    assert first.status_code == 200, first.text
    assert again.status_code == 200, again.text
    assert again.json() == first.json()
    assert len(await history(api, alice, room["id"])) == 1


async def test_editing_a_deleted_message_is_a_conflict(api: Api) -> None:
    alice, bob = new_user_id("alice"), new_user_id("bob")
    room = await api.group(alice, bob)
    sent = await api.send(alice, room["id"], "gone")
    resp = await api.call(alice, "DELETE", message_path(room["id"], sent["id"]))
    assert resp.status_code == 200, resp.text
    resp = await api.call(alice, "PATCH", message_path(room["id"], sent["id"]), {"body": "back"})
    assert_problem(resp, 409, "CONFLICT")
    stored = (await history(api, alice, room["id"]))[0]
    assert (stored["deleted"], stored["body"]) == (True, None)


async def test_deleting_someone_elses_message_is_forbidden(api: Api) -> None:
    alice, bob = new_user_id("alice"), new_user_id("bob")
    room = await api.group(alice, bob)
    sent = await api.send(alice, room["id"], "mine")
    resp = await api.call(bob, "DELETE", message_path(room["id"], sent["id"]))
    assert_problem(resp, 403, "FORBIDDEN")
    stored = (await history(api, alice, room["id"]))[0]
    assert (stored["deleted"], stored["body"]) == (False, "mine")


async def test_editing_in_a_room_one_is_not_in_is_room_not_found(api: Api) -> None:
    alice, bob, eve = new_user_id("alice"), new_user_id("bob"), new_user_id("eve")
    room = await api.group(alice, bob)
    sent = await api.send(alice, room["id"], "private")
    resp = await api.call(eve, "PATCH", message_path(room["id"], sent["id"]), {"body": "x"})
    assert_problem(resp, 404, "ROOM_NOT_FOUND")
    resp = await api.call(eve, "DELETE", message_path(room["id"], sent["id"]))
    assert_problem(resp, 404, "ROOM_NOT_FOUND")
