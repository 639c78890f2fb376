"""Who may do what: every REST operation and every room-scoped WebSocket frame, against
every kind of caller, as one explicit table each.

The callers (columns):

- `member`: a plain member of the group, acting on their own things;
- `owner`: the group's owner (only for the admin operations, to show they work at all);
- `non_member`: a user who was never in the group;
- `removed_member`: a user the owner removed, acting on their own old message;
- `others_message`: a plain member, on a message someone else sent;
- `other_room_message`: a plain member, on their own message in another room of theirs,
  put under this room's path;
- `anonymous`: no token.

A non-member learns nothing: the room answers exactly as a room that does not exist
(same status and the same body as for a random room id), a message from elsewhere as a
message that does not exist, a user who shares no room as a user who does not exist.
After every refusal nothing has changed: the group's and the other room's name, members,
roles, watermarks and history are what they were (read by the owner).
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.cluster import Client, Instance, Sockets, of_type, send_frame
from tests.support import PROBLEM_JSON, Api, auth, new_user_id

QUIET_S = 0.3

# ---- the callers ---------------------------------------------------------------------

MEMBER = "member"
OWNER = "owner"
NON_MEMBER = "non_member"
REMOVED = "removed_member"
OTHERS_MESSAGE = "others_message"
OTHER_ROOM_MESSAGE = "other_room_message"
ANONYMOUS = "anonymous"


@dataclass(frozen=True)
class Expect:
    status: int
    code: str | None = None  # the problem's `code` when refused

    @property
    def refused(self) -> bool:
        return self.status >= 400


OK = Expect(200)
CREATED = Expect(201)
NO_CONTENT = Expect(204)
FORBIDDEN = Expect(403, "FORBIDDEN")
ROOM_NOT_FOUND = Expect(404, "ROOM_NOT_FOUND")
MESSAGE_NOT_FOUND = Expect(404, "MESSAGE_NOT_FOUND")
USER_NOT_FOUND = Expect(404, "USER_NOT_FOUND")
UNAUTHORIZED = Expect(401, "UNAUTHORIZED")

# ---- the REST matrix -----------------------------------------------------------------
# A cell left out does not apply: there is no message in the request, or the operation
# is not an admin one (so the owner adds nothing a member does not show).

REST_MATRIX: dict[str, dict[str, Expect]] = {
    "get_room": {
        MEMBER: OK,
        NON_MEMBER: ROOM_NOT_FOUND,
        REMOVED: ROOM_NOT_FOUND,
        ANONYMOUS: UNAUTHORIZED,
    },
    "update_room": {
        MEMBER: FORBIDDEN,
        OWNER: OK,
        NON_MEMBER: ROOM_NOT_FOUND,
        REMOVED: ROOM_NOT_FOUND,
        ANONYMOUS: UNAUTHORIZED,
    },
    "add_member": {  # an outsider or a removed member tries to add themselves
        MEMBER: FORBIDDEN,
        OWNER: CREATED,
        NON_MEMBER: ROOM_NOT_FOUND,
        REMOVED: ROOM_NOT_FOUND,
        ANONYMOUS: UNAUTHORIZED,
    },
    "remove_member": {  # someone else: another plain member
        MEMBER: FORBIDDEN,
        OWNER: NO_CONTENT,
        NON_MEMBER: ROOM_NOT_FOUND,
        REMOVED: ROOM_NOT_FOUND,
        ANONYMOUS: UNAUTHORIZED,
    },
    "leave_room": {  # remove_member with the caller's own id
        MEMBER: NO_CONTENT,
        NON_MEMBER: ROOM_NOT_FOUND,
        REMOVED: ROOM_NOT_FOUND,
        ANONYMOUS: UNAUTHORIZED,
    },
    "list_messages": {
        MEMBER: OK,
        NON_MEMBER: ROOM_NOT_FOUND,
        REMOVED: ROOM_NOT_FOUND,
        ANONYMOUS: UNAUTHORIZED,
    },
    "send_message": {  # the removed member repeats their old client_msg_id
        MEMBER: CREATED,
        NON_MEMBER: ROOM_NOT_FOUND,
        REMOVED: ROOM_NOT_FOUND,
        ANONYMOUS: UNAUTHORIZED,
    },
    "edit_message": {
        MEMBER: OK,
        NON_MEMBER: ROOM_NOT_FOUND,
        REMOVED: ROOM_NOT_FOUND,
        OTHERS_MESSAGE: FORBIDDEN,
        OTHER_ROOM_MESSAGE: MESSAGE_NOT_FOUND,
        ANONYMOUS: UNAUTHORIZED,
    },
    "delete_message": {
        MEMBER: OK,
        NON_MEMBER: ROOM_NOT_FOUND,
        REMOVED: ROOM_NOT_FOUND,
        OTHERS_MESSAGE: FORBIDDEN,
        OTHER_ROOM_MESSAGE: MESSAGE_NOT_FOUND,
        ANONYMOUS: UNAUTHORIZED,
    },
    "list_receipts": {  # any member may see any message's receipts
        MEMBER: OK,
        NON_MEMBER: ROOM_NOT_FOUND,
        REMOVED: ROOM_NOT_FOUND,
        OTHERS_MESSAGE: OK,
        OTHER_ROOM_MESSAGE: MESSAGE_NOT_FOUND,
        ANONYMOUS: UNAUTHORIZED,
    },
    "mark_read": {
        MEMBER: OK,
        NON_MEMBER: ROOM_NOT_FOUND,
        REMOVED: ROOM_NOT_FOUND,
        ANONYMOUS: UNAUTHORIZED,
    },
    "get_user": {  # the group's owner, who shares no room with the outsider or the removed
        MEMBER: OK,
        NON_MEMBER: USER_NOT_FOUND,
        REMOVED: USER_NOT_FOUND,
        ANONYMOUS: UNAUTHORIZED,
    },
    "get_presence": {  # of the group's owner
        MEMBER: OK,
        NON_MEMBER: FORBIDDEN,
        REMOVED: FORBIDDEN,
        ANONYMOUS: UNAUTHORIZED,
    },
    "list_rooms": {  # answered for everyone; the group is listed only for its members
        MEMBER: OK,
        NON_MEMBER: OK,
        REMOVED: OK,
        ANONYMOUS: UNAUTHORIZED,
    },
    # Not about a room: anyone signed in, acting as the token's user and no one else.
    "get_me": {MEMBER: OK, NON_MEMBER: OK, REMOVED: OK, ANONYMOUS: UNAUTHORIZED},
    "open_direct_room": {MEMBER: OK, NON_MEMBER: OK, REMOVED: OK, ANONYMOUS: UNAUTHORIZED},
    "create_group": {
        MEMBER: CREATED,
        NON_MEMBER: CREATED,
        REMOVED: CREATED,
        ANONYMOUS: UNAUTHORIZED,
    },
}

CONTRACT_OPERATIONS = {
    "get_me",
    "get_user",
    "open_direct_room",
    "create_group",
    "list_rooms",
    "get_room",
    "update_room",
    "add_member",
    "remove_member",
    "list_messages",
    "send_message",
    "edit_message",
    "delete_message",
    "list_receipts",
    "mark_read",
    "get_presence",
}


# ---- the world each case starts from ---------------------------------------------------


@dataclass(frozen=True)
class World:
    owner: str
    member: str  # plain member
    peer: str  # another plain member, whom the member tries to remove
    removed: str  # a member the owner removed
    outsider: str  # never a member
    room: str  # the group
    other_room: str  # the owner's and the member's other group
    owner_message: dict[str, Any]
    member_message: dict[str, Any]
    removed_message: dict[str, Any]  # sent before the removal
    other_room_message: dict[str, Any]  # the member's, in the other room


async def build_world(api: Api) -> World:
    """A group (owner, member, peer, and a member since removed) with a message from each,
    and another group of the owner and the member with a message of the member's."""
    owner, member, peer = new_user_id("own"), new_user_id("mem"), new_user_id("peer")
    removed, outsider = new_user_id("gone"), new_user_id("out")
    group, other_group = await asyncio.gather(
        api.group(owner, member, peer, removed, name="the group"),
        api.group(owner, member, name="the other group"),
    )
    room, other_room = group["id"], other_group["id"]
    other_room_message, owner_message = await asyncio.gather(
        api.send(member, other_room, "elsewhere"), api.send(owner, room, "from the owner")
    )
    member_message = await api.send(member, room, "from the member")
    removed_message = await api.send(removed, room, "from the soon removed")
    # Watermarks that a refused call could move: the member has read the owner's message.
    resp = await api.call(member, "POST", f"/v1/rooms/{room}/read", {"seq": owner_message["seq"]})
    assert resp.status_code == 200, resp.text
    return World(
        owner,
        member,
        peer,
        removed,
        outsider,
        room,
        other_room,
        owner_message,
        member_message,
        removed_message,
        other_room_message,
    )


async def remove(api: Api, world: World) -> None:
    resp = await api.call(world.owner, "DELETE", f"/v1/rooms/{world.room}/members/{world.removed}")
    assert resp.status_code == 204, resp.text


async def snapshot(api: Api, world: World) -> dict[str, Any]:
    """Everything a refused call must leave alone, as the owner reads it: each room's
    name, members, roles, watermarks and last seq, its history, and the receipts."""
    paths = [
        *(f"/v1/rooms/{room_id}" for room_id in (world.room, world.other_room)),
        *(f"/v1/rooms/{room_id}/messages?limit=200" for room_id in (world.room, world.other_room)),
        f"/v1/rooms/{world.room}/messages/{world.owner_message['id']}/receipts",
    ]
    answers = await asyncio.gather(*(api.call(world.owner, "GET", path) for path in paths))
    for resp in answers:
        assert resp.status_code == 200, resp.text
    return {path: resp.json() for path, resp in zip(paths, answers, strict=True)}


# ---- one request per cell --------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    user: str | None  # None: no token
    method: str
    path: str
    body: Any = None


def _actor(world: World, case: str) -> str | None:
    return {
        MEMBER: world.member,
        OWNER: world.owner,
        NON_MEMBER: world.outsider,
        REMOVED: world.removed,
        OTHERS_MESSAGE: world.member,
        OTHER_ROOM_MESSAGE: world.member,
        ANONYMOUS: None,
    }[case]


def _message(world: World, case: str) -> dict[str, Any]:
    return {
        MEMBER: world.member_message,
        NON_MEMBER: world.owner_message,
        REMOVED: world.removed_message,
        OTHERS_MESSAGE: world.owner_message,
        OTHER_ROOM_MESSAGE: world.other_room_message,
        ANONYMOUS: world.member_message,
    }[case]


def build_request(operation: str, case: str, world: World, room: str) -> Request:
    """The request of one cell; `room` is the group's id, or a random one to compare with."""
    actor = _actor(world, case)
    base = f"/v1/rooms/{room}"
    if operation in {"edit_message", "delete_message", "list_receipts"}:
        message = f"{base}/messages/{_message(world, case)['id']}"
        return {
            "edit_message": Request(actor, "PATCH", message, {"body": "changed"}),
            "delete_message": Request(actor, "DELETE", message),
            "list_receipts": Request(actor, "GET", f"{message}/receipts"),
        }[operation]
    if operation == "send_message":
        client_msg_id = (
            world.removed_message["client_msg_id"] if case == REMOVED else str(uuid.uuid4())
        )
        body = {"client_msg_id": client_msg_id, "kind": "text", "body": "let me in"}
        return Request(actor, "POST", f"{base}/messages", body)
    if operation == "add_member":
        newcomer = actor if case in (NON_MEMBER, REMOVED) else new_user_id("new")
        return Request(actor, "POST", f"{base}/members", {"user_id": newcomer, "role": "member"})
    simple = {
        "get_room": Request(actor, "GET", base),
        "update_room": Request(actor, "PATCH", base, {"name": "taken over"}),
        "remove_member": Request(actor, "DELETE", f"{base}/members/{world.peer}"),
        "leave_room": Request(actor, "DELETE", f"{base}/members/{actor or world.member}"),
        "list_messages": Request(actor, "GET", f"{base}/messages"),
        "mark_read": Request(actor, "POST", f"{base}/read", {"seq": 3}),
        "get_user": Request(actor, "GET", f"/v1/users/{world.owner}"),
        "get_presence": Request(actor, "GET", f"/v1/presence?user_ids={world.owner}"),
        "list_rooms": Request(actor, "GET", "/v1/rooms?limit=200"),
        "get_me": Request(actor, "GET", "/v1/me"),
        "open_direct_room": Request(actor, "POST", "/v1/rooms/direct", {"user_id": world.owner}),
        "create_group": Request(
            actor, "POST", "/v1/rooms", {"name": "mine", "member_ids": [world.owner]}
        ),
    }
    return simple[operation]


async def perform(client: httpx.AsyncClient, request: Request) -> httpx.Response:
    headers = auth(request.user) if request.user is not None else {}
    return await client.request(request.method, request.path, json=request.body, headers=headers)


def _with_message(request: Request, message_id: str) -> Request:
    parts = request.path.split("/")
    parts[5] = message_id  # ["", "v1", "rooms", room, "messages", message, ...]
    return Request(request.user, request.method, "/".join(parts), request.body)


def _with_user(request: Request, world: World, user_id: str) -> Request:
    return Request(request.user, request.method, request.path.replace(world.owner, user_id))


def assert_refusal(resp: httpx.Response, expect: Expect) -> dict[str, Any]:
    assert resp.status_code == expect.status, resp.text
    assert resp.headers["content-type"].startswith(PROBLEM_JSON), resp.headers
    problem: dict[str, Any] = resp.json()
    assert (problem["code"], problem["status"]) == (expect.code, expect.status), problem
    return problem


async def _lookalike(
    client: httpx.AsyncClient, operation: str, case: str, world: World, request: Request
) -> httpx.Response | None:
    """The same request about something that does not exist, which the refusal must match."""
    if case in (NON_MEMBER, REMOVED) and operation in {"get_user", "get_presence"}:
        return await perform(client, _with_user(request, world, new_user_id("nobody")))
    if case in (NON_MEMBER, REMOVED) and request.path.startswith(f"/v1/rooms/{world.room}"):
        lookalike = build_request(operation, case, world, str(uuid.uuid4()))
        return await perform(client, lookalike)
    if case == OTHER_ROOM_MESSAGE:
        return await perform(client, _with_message(request, str(uuid.uuid4())))
    return None


def _listed(resp: httpx.Response) -> set[str]:
    return {room["id"] for room in resp.json()["items"]}


# Checks of what an allowed call did, where the status alone would not show it.
async def _verify_allowed(
    api: Api, operation: str, case: str, world: World, resp: httpx.Response
) -> None:
    actor = _actor(world, case)
    body: Any = resp.json() if resp.content else None
    if operation == "list_rooms":
        assert (world.room in _listed(resp)) == (case == MEMBER)
    elif operation == "create_group":  # the caller owns it, whatever the body names
        roles = {m["user_id"]: m["role"] for m in body["members"]}
        assert roles == {actor: "owner", world.owner: "member"}
    elif operation == "open_direct_room":
        assert {m["user_id"] for m in body["members"]} == {actor, world.owner}
    elif operation == "get_me":
        assert body["id"] == actor
    elif operation == "list_messages":
        assert [m["id"] for m in body["items"]] == [
            world.owner_message["id"],
            world.member_message["id"],
            world.removed_message["id"],
        ]
    elif operation == "update_room":
        assert body["name"] == "taken over"


REST_CASES = [
    pytest.param(operation, case, expect, id=f"{operation}-{case}")
    for operation, row in REST_MATRIX.items()
    for case, expect in row.items()
]


def test_the_rest_matrix_covers_every_contract_operation() -> None:
    covered = set(REST_MATRIX) - {"leave_room"}
    assert covered == CONTRACT_OPERATIONS
    for operation, row in REST_MATRIX.items():
        assert {MEMBER, NON_MEMBER, REMOVED, ANONYMOUS} <= set(row), operation


# Operations that change something when allowed; their allowed cells get a world of
# their own. Every other cell shares one: a refusal must leave it exactly as it was (each
# asserts so), and the other allowed cells only read.
MUTATING = {
    "update_room",
    "add_member",
    "remove_member",
    "leave_room",
    "send_message",
    "edit_message",
    "delete_message",
    "mark_read",
    "open_direct_room",  # a new shared room changes who may see whom
    "create_group",
}


@pytest.fixture(scope="module")
async def shared_world(client: httpx.AsyncClient) -> World:
    api = Api(client)
    world = await build_world(api)
    await remove(api, world)
    return world


@pytest.mark.parametrize(("operation", "case", "expect"), REST_CASES)
async def test_rest(
    api: Api,
    client: httpx.AsyncClient,
    shared_world: World,
    operation: str,
    case: str,
    expect: Expect,
) -> None:
    world = shared_world
    if operation in MUTATING and not expect.refused:
        world = await build_world(api)
        await remove(api, world)
    before = await snapshot(api, world)
    request = build_request(operation, case, world, world.room)

    resp = await perform(client, request)

    if not expect.refused:
        assert resp.status_code == expect.status, resp.text
        await _verify_allowed(api, operation, case, world, resp)
        return
    problem = assert_refusal(resp, expect)
    lookalike = await _lookalike(client, operation, case, world, request)
    if lookalike is not None:  # existence is not revealed: word for word the same answer
        assert lookalike.status_code == resp.status_code, lookalike.text
        assert lookalike.json() == problem
    assert await snapshot(api, world) == before


# ---- the WebSocket matrix --------------------------------------------------------------
# Frames that name a room (or users), from a member, from someone who never was one, and
# from a removed member whose socket (on the other instance) was open when they were
# removed. `auth` and `ping` name nothing and are not in it.

ACK = "ack"
WS_MATRIX: dict[str, dict[str, str]] = {
    "send": {MEMBER: ACK, NON_MEMBER: "ROOM_NOT_FOUND", REMOVED: "ROOM_NOT_FOUND"},
    "delivered": {MEMBER: ACK, NON_MEMBER: "ROOM_NOT_FOUND", REMOVED: "ROOM_NOT_FOUND"},
    "read": {MEMBER: ACK, NON_MEMBER: "ROOM_NOT_FOUND", REMOVED: "ROOM_NOT_FOUND"},
    "typing": {MEMBER: ACK, NON_MEMBER: "ROOM_NOT_FOUND", REMOVED: "ROOM_NOT_FOUND"},
    # Acked for everyone; the room is skipped for those who are not in it (nothing replayed).
    "sync": {MEMBER: ACK, NON_MEMBER: ACK, REMOVED: ACK},
    "presence.watch": {MEMBER: ACK, NON_MEMBER: "FORBIDDEN", REMOVED: "FORBIDDEN"},
}


def ws_frame(kind: str, room: str, world: World) -> dict[str, Any]:
    seq = world.removed_message["seq"]
    return {
        "send": send_frame(room, "let me in"),
        "delivered": {"type": "delivered", "room_id": room, "seq": seq},
        "read": {"type": "read", "room_id": room, "seq": seq},
        "typing": {"type": "typing", "room_id": room, "active": True},
        "sync": {"type": "sync", "cursors": {room: 0}},
        "presence.watch": {"type": "presence.watch", "user_ids": [world.owner]},
    }[kind]


def _about_room(frames: list[dict[str, Any]], room: str) -> list[dict[str, Any]]:
    """Frames that carry anything of the room."""
    return [
        f
        for f in frames
        if f.get("room_id") == room or (f.get("message") or {}).get("room_id") == room
    ]


async def open_as(
    sockets: Sockets, api: Api, world: World, case: str, instance: Instance
) -> Client:
    """The caller's socket on `instance`; a removed member's is opened first, then the
    owner removes them, and it is told (`member_removed`) before the test goes on."""
    if case != REMOVED:
        return await sockets.open(instance, _actor(world, case) or "")
    socket = await sockets.open(instance, world.removed)
    await remove(api, world)
    event = await socket.next_of("room", event="member_removed")
    assert (event["room_id"], event["user_id"]) == (world.room, world.removed)
    return socket


WS_CASES = [
    pytest.param(kind, case, expect, id=f"{kind}-{case}")
    for kind, row in WS_MATRIX.items()
    for case, expect in row.items()
]


@pytest.mark.parametrize(("kind", "case", "expect"), WS_CASES)
async def test_websocket(
    api: Api, a: Instance, b: Instance, sockets: Sockets, kind: str, case: str, expect: str
) -> None:
    world = await build_world(api)
    if case != REMOVED:  # else removed below, while their socket is open
        await remove(api, world)
    watcher = await sockets.open(a, world.owner)  # would see anything that leaks
    socket = await open_as(sockets, api, world, case, b)
    await watcher.drain(0.1)  # the removal's own pushes
    before = await snapshot(api, world)

    reply = await socket.reply_to(await socket.send(ws_frame(kind, world.room, world)))

    if expect != ACK:
        assert (reply["type"], reply["code"]) == ("error", expect), reply
        # Word for word what a room (or a user) that does not exist gets.
        ghost = (
            {"type": "presence.watch", "user_ids": [new_user_id("nobody")]}
            if kind == "presence.watch"
            else ws_frame(kind, str(uuid.uuid4()), world)
        )
        lookalike = await socket.reply_to(await socket.send(ghost))
        assert (lookalike["code"], lookalike["message"]) == (reply["code"], reply["message"])
    else:
        assert reply["type"] == "ack", reply
    if kind == "sync":
        replayed = [f["message"] for f in of_type(socket.frames, "message")]
        listed = set(reply["data"]["rooms"])
        if case == MEMBER:
            assert world.room in listed
            assert [m["room_id"] for m in replayed].count(world.room) == 3
        else:
            assert world.room not in listed
            assert [m for m in replayed if m["room_id"] == world.room] == []
    if case != MEMBER:
        assert _about_room(await watcher.drain(QUIET_S), world.room) == []
        assert await snapshot(api, world) == before
    elif kind == "typing":  # the watcher does hear a member type: it would see a leak
        pushed = await watcher.next_of("typing", room_id=world.room)
        assert pushed["user_id"] == world.member


async def test_a_removed_members_open_socket_gets_nothing_more_from_the_room(
    api: Api, a: Instance, b: Instance, sockets: Sockets
) -> None:
    world = await build_world(api)
    owner_socket = await sockets.open(a, world.owner)
    member_socket = await sockets.open(b, world.member)  # keeps b following the room
    removed_socket = await open_as(sockets, api, world, REMOVED, b)

    sent = [
        await owner_socket.request(send_frame(world.room, text)) for text in ("one", "two", "three")
    ]
    edited = await api.call(
        world.owner,
        "PATCH",
        f"/v1/rooms/{world.room}/messages/{world.owner_message['id']}",
        {"body": "edited"},
    )
    assert edited.status_code == 200, edited.text
    await owner_socket.request({"type": "typing", "room_id": world.room, "active": True})
    # Reads that pass the removed member's old message: receipts go to a message's sender,
    # but no longer to one who has left the room.
    last = sent[-1]["message"]["seq"]
    await owner_socket.request({"type": "read", "room_id": world.room, "seq": last})
    await member_socket.request({"type": "read", "room_id": world.room, "seq": last})

    heard = [(await member_socket.next_of("message"))["message"]["body"] for _ in range(3)]
    assert heard == ["one", "two", "three"]  # b does relay the room
    await member_socket.next_of("message.updated")
    assert _about_room(await removed_socket.drain(QUIET_S), world.room) == []


async def test_the_actor_is_always_the_token_never_a_field(api: Api) -> None:
    world = await build_world(api)
    await remove(api, world)
    claims: list[tuple[str, str, dict[str, Any]]] = [
        ("POST", f"/v1/rooms/{world.room}/messages", {"sender_id": world.owner}),
        ("POST", "/v1/rooms", {"name": "mine", "owner_id": world.owner}),
        ("POST", f"/v1/rooms/{world.room}/read", {"seq": 1, "user_id": world.owner}),
    ]
    before = await snapshot(api, world)
    for method, path, claim in claims:
        body: dict[str, Any] = {"client_msg_id": str(uuid.uuid4()), "body": "as the owner", **claim}
        if not path.endswith("/messages"):
            body = claim
        resp = await api.call(world.member, method, path, body)
        assert_refusal(resp, Expect(422, "VALIDATION_FAILED"))
    assert await snapshot(api, world) == before


async def test_a_removed_member_no_longer_sees_the_presence_of_those_they_watched(
    api: Api, a: Instance, b: Instance, sockets: Sockets
) -> None:
    world = await build_world(api)
    removed_socket = await sockets.open(b, world.removed)
    await removed_socket.request({"type": "presence.watch", "user_ids": [world.owner]})
    await remove(api, world)  # the owner and they now share no room
    await removed_socket.next_of("room", event="member_removed")

    owner_socket = await sockets.open(a, world.owner)  # online, then offline
    await owner_socket.close()

    pushed = of_type(await removed_socket.drain(1.0), "presence")
    assert [f for f in pushed if f["user_id"] == world.owner] == []


async def test_those_who_watched_a_removed_member_no_longer_see_their_presence(
    api: Api, a: Instance, b: Instance, sockets: Sockets
) -> None:
    world = await build_world(api)
    owner_socket = await sockets.open(a, world.owner)
    await owner_socket.request({"type": "presence.watch", "user_ids": [world.removed]})
    await remove(api, world)  # the owner and they now share no room
    await owner_socket.next_of("room", event="member_removed")

    removed_socket = await sockets.open(b, world.removed)  # online, then offline
    await removed_socket.close()

    pushed = of_type(await owner_socket.drain(1.0), "presence")
    assert [f for f in pushed if f["user_id"] == world.removed] == []
