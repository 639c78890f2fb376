"""Typing indicators: forwarded to the room's other members, never stored.

Per connection and room at most one `typing` is forwarded per second; a change that comes
sooner is held and sent when the second is up (a refresh of the same state within the
second is dropped; a later `active` refresh is forwarded again, so a client that cleared
the indicator, say when the typist's message arrived, shows it again).
`active: true` lapses by itself: six seconds without a refresh and the others are told
`active: false`, as they are when the connection ends.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass

from app.domain.events import RoomMessage
from app.domain.ports import EventPublisher
from app.errors import RoomNotFound

LAPSE_S = 6.0
THROTTLE_S = 1.0

Key = tuple[str, str]  # (connection id, room id)


@dataclass(slots=True)
class _State:
    user_id: str
    forwarded: bool = False
    last_forward_at: float = float("-inf")
    pending: bool | None = None
    flush: asyncio.TimerHandle | None = None
    lapse: asyncio.TimerHandle | None = None


class TypingIndicators:
    def __init__(
        self,
        publisher: EventPublisher,
        *,
        lapse_s: float = LAPSE_S,
        throttle_s: float = THROTTLE_S,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self._publisher = publisher
        self._lapse_s = lapse_s
        self._throttle_s = throttle_s
        self._clock = clock or (lambda: asyncio.get_running_loop().time())
        self._states: dict[Key, _State] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def update(
        self,
        connection_id: str,
        user_id: str,
        room_id: str,
        active: bool,
        member_rooms: Collection[str],
    ) -> None:
        if room_id not in member_rooms:
            raise RoomNotFound("no such room")
        key = (connection_id, room_id)
        state = self._states.setdefault(key, _State(user_id=user_id))
        if state.lapse is not None:
            state.lapse.cancel()
            state.lapse = None
        if active:
            loop = asyncio.get_running_loop()
            state.lapse = loop.call_later(self._lapse_s, self._spawn, self._lapse, key)
        await self._set(key, active)

    async def connection_closed(self, connection_id: str) -> None:
        """A connection that ends stops typing everywhere it was."""
        for key in [k for k in self._states if k[0] == connection_id]:
            state = self._states.pop(key)
            for handle in (state.flush, state.lapse):
                if handle is not None:
                    handle.cancel()
            if state.forwarded:
                await self._forward(key, state, False)

    async def _set(self, key: Key, active: bool) -> None:
        state = self._states.get(key)
        if state is None:
            return
        if self._clock() - state.last_forward_at >= self._throttle_s:
            if active != state.forwarded or active:
                await self._forward(key, state, active)
        elif active != state.forwarded:
            state.pending = active
            if state.flush is None:
                delay = state.last_forward_at + self._throttle_s - self._clock()
                state.flush = asyncio.get_running_loop().call_later(
                    max(delay, 0), self._spawn, self._flush, key
                )
        else:
            state.pending = None
        self._forget_if_idle(key, state)

    async def _lapse(self, key: Key) -> None:
        state = self._states.get(key)
        if state is not None:
            state.lapse = None
            await self._set(key, False)

    async def _flush(self, key: Key) -> None:
        state = self._states.get(key)
        if state is None:
            return
        state.flush = None
        pending, state.pending = state.pending, None
        if pending is not None and pending != state.forwarded:
            await self._forward(key, state, pending)
        self._forget_if_idle(key, state)

    async def _forward(self, key: Key, state: _State, active: bool) -> None:
        state.forwarded = active
        state.last_forward_at = self._clock()
        room_id = key[1]
        frame = {"type": "typing", "room_id": room_id, "user_id": state.user_id, "active": active}
        # A start or refresh may be shed under load (the next refresh repeats it); a stop
        # never is, or the others would show the typist typing until the next start.
        message = RoomMessage(room_id, frame, skip_user=state.user_id, advisory=active)
        await self._publisher.publish([message])

    def _forget_if_idle(self, key: Key, state: _State) -> None:
        # Kept until its throttle window has passed, so a quick re-start still waits for it.
        idle = not state.forwarded and state.pending is None and state.flush is None
        if (
            idle
            and state.lapse is None
            and self._clock() - state.last_forward_at >= self._throttle_s
        ):
            self._states.pop(key, None)

    def _spawn(self, coroutine: Callable[[Key], Awaitable[None]], key: Key) -> None:
        task = asyncio.ensure_future(coroutine(key))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
