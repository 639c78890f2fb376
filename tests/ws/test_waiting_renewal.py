"""What the reader answers when a token expires: is a renewal the client sent still to be
handled? And what the expiry does with the answer. Stand-ins for the connection and the
services: a typing frame is the slow frame, held until the test lets it through."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import orjson
import pytest

from app.auth.tokens import Claims
from app.domain.ports import Actor
from app.errors import Unauthorized
from app.lifespan import Services
from app.ws.connection import Connection
from app.ws.dispatch import Peer
from app.ws.expiry import RENEWAL_RECHECK_S, Expiry
from app.ws.reader import FrameReader
from tests.ws.stand_ins import WAIT_S

USER = "renewing-user"
ROOM = "5a3c58a8-5d6c-4f0e-9a57-2f7d5c1e9b10"
GOOD = "a-fresh-token"
SLOW = orjson.dumps({"type": "typing", "room_id": ROOM, "active": True}).decode()
CLOSE_AUTH = 4401


def auth(token: str) -> str:
    return orjson.dumps({"type": "auth", "id": token, "token": token}).decode()


@dataclass
class Limits:
    frames_per_s: float = 1000.0
    frames_in_flight: int = 32
    max_frame_bytes: int = 65536


class Protocol:
    read_ahead = 64

    def hold_reading(self) -> None:
        pass

    def release_reading(self) -> None:
        pass


@dataclass(eq=False)
class Socket:
    """Stands in for the connection: records what is answered and how it closes."""

    expires_at: datetime = field(default_factory=lambda: datetime.now(UTC) + timedelta(hours=1))
    on_renewed: Callable[[], None] | None = None
    id: str = "connection"
    rooms: set[str] = field(default_factory=set)
    protocol: Protocol = field(default_factory=Protocol)
    last_frame_at: float = 0.0
    close_code: int | None = None
    draining: bool = False
    answers: list[dict[str, Any]] = field(default_factory=list)

    def push(self, text: str) -> None:
        self.answers.append(orjson.loads(text))

    def close(self, code: int, reason: str = "") -> None:
        self.close_code = code

    def frame_started(self) -> None:
        pass

    def frame_done(self) -> None:
        pass

    def answer_to(self, frame_id: str) -> dict[str, Any] | None:
        return next((a for a in self.answers if a.get("id") == frame_id), None)


class Typing:
    """Stands in for typing indicators: each update waits until the test lets it through."""

    def __init__(self) -> None:
        self.held: list[asyncio.Future[None]] = []

    async def update(self, *args: object) -> None:
        gate = asyncio.get_running_loop().create_future()
        self.held.append(gate)
        await gate

    async def until_held(self, count: int) -> None:
        await until(lambda: len(self.held) >= count)

    def let_through(self) -> None:
        for gate in self.held:
            if not gate.done():
                gate.set_result(None)


class Verifier:
    """Only `GOOD` is a token for the user."""

    def verify(self, token: str) -> Claims:
        if token != GOOD:
            raise Unauthorized("invalid token")
        return Claims(USER, None, datetime.now(UTC) + timedelta(hours=2))


@dataclass
class Stand:
    settings: Limits = field(default_factory=Limits)
    typing: Typing = field(default_factory=Typing)
    verifier: Verifier = field(default_factory=Verifier)


@pytest.fixture
def stand() -> Stand:
    return Stand()


@pytest.fixture
def socket() -> Socket:
    return Socket()


@pytest.fixture
async def reader(stand: Stand, socket: Socket) -> AsyncIterator[FrameReader]:
    finished = asyncio.Event()
    peer = Peer(cast(Services, stand), cast(Connection, socket), Actor(USER))
    reader = FrameReader(peer, finished.set)
    yield reader
    reader.end()  # every frame taken is handled, the held ones let through, then it finishes
    async with asyncio.timeout(WAIT_S):
        while not finished.is_set():
            stand.typing.let_through()
            await asyncio.sleep(0)


async def until(condition: Callable[[], object]) -> None:
    async with asyncio.timeout(WAIT_S):
        while not condition():  # noqa: ASYNC110 (the stand-ins have no event to wait on)
            await asyncio.sleep(0)


async def test_an_auth_frame_queued_behind_a_slow_frame_waits_until_it_has_been_handled(
    reader: FrameReader, stand: Stand, socket: Socket
) -> None:
    reader.take(SLOW)
    await stand.typing.until_held(1)
    reader.take(auth(GOOD))

    waiting = reader.waiting_renewal()
    assert waiting is not None
    assert waiting()

    stand.typing.let_through()
    await until(lambda: socket.answer_to(GOOD))
    assert not waiting()
    assert reader.waiting_renewal() is None
    assert socket.expires_at > datetime.now(UTC) + timedelta(hours=1)


async def test_an_auth_frame_being_handled_is_a_renewal_waiting(
    reader: FrameReader, socket: Socket
) -> None:
    reader.take(auth(GOOD))  # started at once, handled on the loop's next turn

    waiting = reader.waiting_renewal()
    assert waiting is not None
    assert waiting()

    await until(lambda: socket.answer_to(GOOD))
    assert not waiting()


async def test_frames_that_are_not_auth_frames_are_no_renewal(reader: FrameReader) -> None:
    reader.take(SLOW)
    for raw in (
        '{"type": "ping"}',
        '{"type": "auth", "token": ',  # bad JSON
        '{"type": "auth"}',  # no token
        '{"type": "auth", "token": "x", "token": "y"}',  # duplicate key
        auth(GOOD).encode(),  # binary
        SLOW,
    ):
        reader.take(raw)

    assert reader.waiting_renewal() is None


async def test_an_auth_frame_taken_after_the_question_does_not_count(
    reader: FrameReader, stand: Stand, socket: Socket
) -> None:
    reader.take(SLOW)
    await stand.typing.until_held(1)
    reader.take(auth("a-stale-token"))
    reader.take(SLOW)
    waiting = reader.waiting_renewal()
    assert waiting is not None
    reader.take(auth(GOOD))

    stand.typing.let_through()  # the first slow frame; the stale renewal fails after it
    await stand.typing.until_held(2)

    assert socket.answer_to("a-stale-token") is not None
    assert not waiting()
    assert reader.waiting_renewal() is not None  # the later one, asked about afresh


async def test_an_expired_token_closes_once_the_renewal_waiting_has_failed(
    socket: Socket,
) -> None:
    socket.expires_at = datetime.now(UTC) - timedelta(seconds=1)
    waits = [True]
    asked: list[None] = []

    def waiting_renewal() -> Callable[[], bool]:
        asked.append(None)
        return lambda: waits[0]

    expiry = Expiry(cast(Connection, socket), CLOSE_AUTH)
    expiry.start(waiting_renewal)
    try:
        await asyncio.sleep(RENEWAL_RECHECK_S * 3)
        assert socket.close_code is None
        waits[0] = False
        await until(lambda: socket.close_code is not None)
    finally:
        expiry.stop()

    assert socket.close_code == CLOSE_AUTH
    assert len(asked) == 1  # renewals taken later are never asked about
