"""A Python client generated from openapi/openapi.json by openapi-python-client, used the way
its README says, against a real server: names, request bodies, response models, the problem
model on errors. Generation is offline and happens once per session."""

from __future__ import annotations

import contextlib
import importlib
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.clients.conftest import SPEC, described, run
from tests.cluster import Instance
from tests.support import new_user_id, token_for

GENERATOR = Path(sys.executable).parent / "openapi-python-client"
PACKAGE = "generated_chat_client"
TIMEOUT_S = 10.0


class Generated:
    """The generated package, reached by module name (it exists only at test time)."""

    def __init__(self, package: str) -> None:
        self.package = package
        self.models = self.module("models")

    def module(self, name: str) -> ModuleType:
        return importlib.import_module(f"{self.package}.{name}")

    def op(self, tag: str, operation_id: str) -> ModuleType:
        """One operation's module: `api/<first tag>/<operationId>.py`."""
        return self.module(f"api.{tag}.{operation_id}")

    def client(self, base_url: str, user_id: str, name: str | None = None) -> Any:
        return self.module("client").AuthenticatedClient(
            base_url=base_url,
            token=token_for(user_id, name),
            raise_on_unexpected_status=True,
            timeout=TIMEOUT_S,
        )


@pytest.fixture(scope="session")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Generated]:
    if not GENERATOR.exists():
        pytest.fail(f"{GENERATOR} missing: install the test extras (openapi-python-client)")
    out = tmp_path_factory.mktemp("python-client")
    config = out / "config.yaml"
    config.write_text("post_hooks: []\n")  # no ruff/black run over the generated code
    result = run(
        [
            GENERATOR,
            "generate",
            *("--path", SPEC, "--output-path", out / PACKAGE),
            *("--meta", "none", "--config", config, "--fail-on-warning"),
        ],
        cwd=out,
        timeout_s=120,
        offline=True,
    )
    assert result.returncode == 0, described(result)
    sys.path.insert(0, str(out))
    importlib.invalidate_caches()
    try:
        yield Generated(PACKAGE)
    finally:
        sys.path.remove(str(out))
        for name in [m for m in sys.modules if m == PACKAGE or m.startswith(f"{PACKAGE}.")]:
            del sys.modules[name]


@dataclass
class People:
    """alice, bob and carol (fresh user ids), each with a generated client of their own."""

    alice: str
    bob: str
    carol: str
    client: dict[str, Any]


@pytest.fixture
def people(generated: Generated, server: Instance) -> Iterator[People]:
    alice, bob, carol = new_user_id("alice"), new_user_id("bob"), new_user_id("carol")
    with contextlib.ExitStack() as stack:
        client = {
            user: stack.enter_context(generated.client(server.http, user, user.split("-")[0]))
            for user in (alice, bob, carol)
        }
        yield People(alice, bob, carol, client)


def test_every_operation_imports_under_its_operation_id(generated: Generated) -> None:
    """Each operationId is a module with the four callables the generator promises."""
    expected = {
        "users": ["get_me", "get_user", "get_presence"],
        "rooms": [
            "open_direct_room",
            "create_group",
            "list_rooms",
            "get_room",
            "update_room",
            "add_member",
            "remove_member",
            "mark_read",
        ],
        "messages": [
            "list_messages",
            "send_message",
            "edit_message",
            "delete_message",
            "list_receipts",
        ],
    }
    for tag, operation_ids in expected.items():
        for operation_id in operation_ids:
            module = generated.op(tag, operation_id)
            for name in ("sync", "sync_detailed", "asyncio", "asyncio_detailed"):
                assert callable(getattr(module, name)), f"{tag}.{operation_id}.{name}"
    for model in ("Room", "Member", "Message", "MessageSend", "Receipt", "Problem", "ErrorCode"):
        assert hasattr(generated.models, model), f"no model {model}"


def test_group_messages_history_and_receipts(generated: Generated, people: People) -> None:
    m = generated.models
    alice, bob, carol, client = people.alice, people.bob, people.carol, people.client

    created = generated.op("rooms", "create_group").sync_detailed(
        client=client[alice], body=m.GroupCreate(name="generated", member_ids=[bob])
    )
    assert created.status_code == 201, created.content
    room = created.parsed
    assert isinstance(room, m.Room)
    assert room.kind == m.RoomKind.GROUP
    assert {member.user_id: member.role for member in room.members} == {
        alice: m.Role.OWNER,
        bob: m.Role.MEMBER,
    }

    added = generated.op("rooms", "add_member").sync_detailed(
        room.id, client=client[alice], body=m.MemberAdd(user_id=carol)
    )
    assert added.status_code == 201, added.content
    assert isinstance(added.parsed, m.Room)
    assert {member.user_id for member in added.parsed.members} == {alice, bob, carol}

    send = generated.op("messages", "send_message")
    sent = []
    for n in range(1, 6):
        body = m.MessageSend(client_msg_id=uuid.uuid4(), body=f"message {n}")
        response = send.sync_detailed(room.id, client=client[alice], body=body)
        assert response.status_code == 201, response.content
        assert isinstance(response.parsed, m.Message)
        sent.append(response.parsed)
    assert [message.seq for message in sent] == [1, 2, 3, 4, 5]
    assert all(message.sender_id == alice and message.room_id == room.id for message in sent)
    assert sent[0].created_at.tzinfo is not None  # parsed as an aware datetime

    # Sending the same client_msg_id again returns the first message, creates nothing.
    again = send.sync(
        room.id,
        client=client[alice],
        body=m.MessageSend(client_msg_id=sent[0].client_msg_id, body="message 1"),
    )
    assert isinstance(again, m.Message)
    assert (again.id, again.seq) == (sent[0].id, 1)

    history = generated.op("messages", "list_messages")

    def seqs(**cursor: int) -> list[int]:
        page = history.sync(room.id, client=client[bob], **cursor)
        assert isinstance(page, m.MessagePage), page
        return [message.seq for message in page.items]

    assert seqs() == [1, 2, 3, 4, 5]
    assert seqs(before=4, limit=2) == [2, 3]
    assert seqs(after=2, limit=2) == [3, 4]
    assert seqs(after=5) == []

    marks = generated.op("rooms", "mark_read").sync(
        room.id, client=client[bob], body=m.ReadMark(seq=5)
    )
    assert isinstance(marks, m.Watermarks)
    assert (marks.room_id, marks.read_seq, marks.delivered_seq) == (room.id, 5, 5)

    receipts = generated.op("messages", "list_receipts").sync(
        room.id, sent[-1].id, client=client[alice]
    )
    assert isinstance(receipts, m.ReceiptPage), receipts
    by_user = {receipt.user_id: receipt for receipt in receipts.items}
    assert set(by_user) == {bob, carol}
    assert by_user[bob].read_at is not None
    assert by_user[bob].delivered_at is not None
    assert by_user[bob].delivered_at <= by_user[bob].read_at
    assert (by_user[carol].delivered_at, by_user[carol].read_at) == (None, None)


def test_a_non_member_gets_the_problem_model(generated: Generated, people: People) -> None:
    m = generated.models
    alice, bob, client = people.alice, people.bob, people.client
    room = generated.op("rooms", "create_group").sync(
        client=client[alice], body=m.GroupCreate(name="private", member_ids=[])
    )
    assert isinstance(room, m.Room), room

    response = generated.op("rooms", "get_room").sync_detailed(room.id, client=client[bob])
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.parsed
    assert isinstance(problem, m.Problem), problem
    assert problem.code == m.ErrorCode.ROOM_NOT_FOUND
    assert problem.status == 404


async def test_async_calls(generated: Generated, server: Instance) -> None:
    m = generated.models
    alice, bob = new_user_id("alice"), new_user_id("bob")
    async with generated.client(server.http, alice, "Alice") as client:
        me = await generated.op("users", "get_me").asyncio(client=client)
        assert isinstance(me, m.User), me
        assert (me.id, me.name) == (alice, "Alice")

        direct = await generated.op("rooms", "open_direct_room").asyncio_detailed(
            client=client, body=m.DirectRoomCreate(user_id=bob)
        )
        assert direct.status_code == 200, direct.content
        assert isinstance(direct.parsed, m.Room)
        assert direct.parsed.kind == m.RoomKind.DIRECT

        rooms = await generated.op("rooms", "list_rooms").asyncio(client=client)
        assert isinstance(rooms, m.RoomPage), rooms
        assert direct.parsed.id in {summary.id for summary in rooms.items}
