"""`ChatClient`: the reference WebSocket client of the chat service.

One client keeps one connection to `GET /v1/ws` alive for as long as it is open:

- It authenticates with the `Authorization` header, using a token from the application's
  async `token_provider`, and waits for `hello`.
- Any drop (server restart, network loss, close frame) is followed by a reconnect after
  an exponential backoff with full jitter, and then a `sync` from the client's per-room
  cursors, whose replayed messages are delivered like live ones.
- Messages reach the application per room in `seq` order, exactly once: duplicates are
  dropped by (room_id, seq) and a gap (a seq that skips one) triggers a `sync`.
- Delivery is acknowledged with `delivered` frames, coalesced to the highest seq per room
  at most every `delivered_interval_s`.
- A `resync` push triggers a `sync`.
- The token is renewed with an `auth` frame a quarter of its lifetime before `exp` (at
  most a minute before), so the connection outlives any single token.
- `send` awaits the ack and, if the connection drops first, resends the same
  `client_msg_id` after the reconnect: the server stores it once.

Events are handed out through handlers (`on`) and async iterators (`events`,
`messages`), all fed by one dispatcher task in arrival order.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import itertools
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeVar, cast

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from chat_client.backoff import Backoff
from chat_client.errors import ChatError, ClientClosed, ConnectionLost, Refused
from chat_client.events import (
    Attachment,
    ConnectionEvent,
    Event,
    Message,
    MessageEvent,
    PresenceEvent,
    RoomEvent,
    from_push,
)
from chat_client.sequencer import Sequencer
from chat_client.tokens import lifetime, renew_at

log = logging.getLogger("chat_client")

TokenProvider = Callable[[], Awaitable[str]]
E = TypeVar("E", bound=Event)
Handler = Callable[[E], Awaitable[None] | None]

# Close codes after which reconnecting cannot help (4403: this origin is refused).
FATAL_CLOSE_CODES = frozenset({4403})
# A gap may be a push still in flight: wait this long before syncing to fill it.
GAP_GRACE_S = 0.15
# Sync rounds in a row that move no cursor before the client stops insisting.
MAX_STALLED_SYNC_ROUNDS = 3

_Kind = Literal["request", "send", "sync", "delivered"]


@dataclass(slots=True)
class ClientStats:
    """Counters for observability and tests."""

    connects: int = 0
    disconnects: int = 0
    syncs: int = 0
    renewals: int = 0
    resends: int = 0
    delivered_frames: int = 0
    duplicates_dropped: int = 0


@dataclass(slots=True)
class _Pending:
    kind: _Kind
    future: asyncio.Future[dict[str, Any]]
    sync_again: bool = False


class ChatClient:
    """A resilient WebSocket client; see the module docstring for what it guarantees.

    Use it as an async context manager, or call `connect()` and `close()`.
    """

    def __init__(
        self,
        url: str,
        token_provider: TokenProvider,
        *,
        cursors: Mapping[str, int] | None = None,
        backoff_base_s: float = 0.25,
        backoff_cap_s: float = 15.0,
        delivered_interval_s: float = 0.2,
        request_timeout_s: float = 10.0,
        send_timeout_s: float = 60.0,
        open_timeout_s: float = 10.0,
        sync_limit: int = 100,
        ping_interval_s: float | None = 20.0,
        max_frame_bytes: int = 4 * 1024 * 1024,
    ) -> None:
        """`url` is the WebSocket URL (`ws://host:port/v1/ws`); `token_provider` an async
        callable returning a fresh JWT; `cursors` the highest seq per room the application
        already has (e.g. persisted from `cursors` of an earlier run)."""
        self.url = url
        self._provider = token_provider
        self._seq = Sequencer(cursors)
        self._backoff = Backoff(backoff_base_s, backoff_cap_s)
        self.delivered_interval_s = delivered_interval_s
        self.request_timeout_s = request_timeout_s
        self.send_timeout_s = send_timeout_s
        self.open_timeout_s = open_timeout_s
        self.sync_limit = sync_limit
        self._ping_interval_s = ping_interval_s
        self._max_frame_bytes = max_frame_bytes

        self.stats = ClientStats()
        self.user_id: str | None = None
        self.connection_id: str | None = None
        self.heartbeat_s: float | None = None
        self._token: str | None = None
        self._ws: ClientConnection | None = None
        self._connected = asyncio.Event()
        self._synced = asyncio.Event()
        self._sync_wanted = asyncio.Event()
        self._closing = False
        self._fatal: BaseException | None = None
        self._ids = itertools.count(1)
        self._pending: dict[str, _Pending] = {}
        self._delivered_target: dict[str, int] = {}
        self._delivered_sent: dict[str, int] = {}
        self._watching: list[str] | None = None
        self._handlers: dict[type[Any], list[Callable[[Any], Awaitable[None] | None]]] = {}
        self._subscribers: list[tuple[asyncio.Queue[Event | None], frozenset[type[Any]]]] = []
        self._queue: asyncio.Queue[Event | None] = asyncio.Queue()
        self._supervisor: asyncio.Task[None] | None = None
        self._dispatcher: asyncio.Task[None] | None = None
        self._gap_timers: dict[str, asyncio.TimerHandle] = {}
        self._writes: set[asyncio.Future[None]] = set()

    # ---- lifecycle ----------------------------------------------------------------------

    async def connect(self, timeout_s: float | None = None) -> None:
        """Start the client and wait until its first `hello` (and its first sync has been
        asked for). Raises TimeoutError, leaving the client closed, if that takes longer
        than `timeout_s` (default: `open_timeout_s` times three)."""
        if self._supervisor is None:
            self._dispatcher = asyncio.create_task(self._dispatch(), name="chat-dispatch")
            self._supervisor = asyncio.create_task(self._supervise(), name="chat-supervisor")
        try:
            await self.wait_connected(timeout_s or self.open_timeout_s * 3)
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        """Acknowledge what was delivered, close the connection and stop every task.
        Handlers have been called for every event queued before the close."""
        if self._closing:
            return
        ws = self._ws
        if ws is not None:
            with contextlib.suppress(Exception):
                self._flush_delivered(ws)
                if self._writes:
                    await asyncio.wait(list(self._writes), timeout=1.0)
        self._closing = True
        for timer in self._gap_timers.values():
            timer.cancel()
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
        # Wake everyone waiting for a connection or a sync: they raise ClientClosed.
        self._connected.set()
        self._synced.set()
        self._queue.put_nowait(None)
        if self._dispatcher is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._dispatcher

    async def __aenter__(self) -> ChatClient:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def connected(self) -> bool:
        return self._ws is not None

    @property
    def cursors(self) -> dict[str, int]:
        """The highest seq delivered without gap, per room (persist it to resume later)."""
        return self._seq.cursors()

    async def wait_connected(self, timeout_s: float | None = None) -> None:
        async with asyncio.timeout(timeout_s):
            await self._current_ws()

    async def wait_synced(self, timeout_s: float | None = None) -> None:
        """Wait until the connection is up and the sync after it (or after the latest
        gap or `resync`) has completed."""
        async with asyncio.timeout(timeout_s):
            while True:
                self._raise_if_done()
                if self._synced.is_set() and self._ws is not None:
                    return
                await self._synced.wait()
                if self._ws is None and not self._closing and self._fatal is None:
                    await self._current_ws()

    def _raise_if_done(self) -> None:
        if self._fatal is not None:
            raise self._fatal
        if self._closing:
            raise ClientClosed("the client is closed")

    # ---- frames -------------------------------------------------------------------------

    async def request(
        self,
        frame: Mapping[str, Any],
        *,
        timeout_s: float | None = None,
        retry: bool = False,
    ) -> dict[str, Any]:
        """Send one client frame and return its ack's `data`.

        Waits for a connection if there is none. An `error` answer raises `ChatError`,
        except `RATE_LIMITED`, which is waited out and retried. A drop before the answer
        raises `ConnectionLost`, or, with `retry=True` (for idempotent frames), resends
        after the reconnect. Everything is bounded by `timeout_s` (TimeoutError)."""
        return await self._request(frame, "request", timeout_s, retry)

    async def send(
        self,
        room_id: str,
        body: str | None,
        kind: Literal["text", "image", "file"] = "text",
        attachment: Attachment | None = None,
        client_msg_id: str | None = None,
        *,
        timeout_s: float | None = None,
    ) -> Message:
        """Store a message and return it as stored (with its `seq`). Survives drops: the
        same `client_msg_id` is resent after a reconnect, and the server keeps one."""
        frame: dict[str, Any] = {
            "type": "send",
            "room_id": room_id,
            "client_msg_id": client_msg_id or str(uuid.uuid4()),
            "kind": kind,
            "body": body,
        }
        if attachment is not None:
            frame["attachment"] = attachment
        data = await self._request(frame, "send", timeout_s or self.send_timeout_s, True)
        return cast(Message, data["message"])

    async def read(self, room_id: str, seq: int) -> dict[str, Any]:
        """Move this user's read watermark in a room."""
        return await self.request({"type": "read", "room_id": room_id, "seq": seq}, retry=True)

    async def typing(self, room_id: str, active: bool = True) -> None:
        """Tell the room's other members this user is (or stopped) typing."""
        await self.request({"type": "typing", "room_id": room_id, "active": active})

    async def watch_presence(self, user_ids: list[str]) -> list[dict[str, Any]]:
        """Follow these users' presence (replacing the set; kept across reconnects);
        returns each one's state now."""
        self._watching = list(user_ids)
        data = await self.request({"type": "presence.watch", "user_ids": user_ids}, retry=True)
        return cast(list[dict[str, Any]], data["presence"])

    async def sync(self, timeout_s: float | None = None) -> None:
        """Catch up now (the client also does this on its own) and wait for it."""
        self._synced.clear()
        self._sync_wanted.set()
        await self.wait_synced(timeout_s or self.request_timeout_s)

    async def _request(
        self, frame: Mapping[str, Any], kind: _Kind, timeout_s: float | None, retry: bool
    ) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (timeout_s or self.request_timeout_s)
        attempt = 0
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(f"no answer to {frame.get('type')} in time")
            async with asyncio.timeout(remaining):
                ws = await self._current_ws()
                if attempt:
                    self.stats.resends += 1
                attempt += 1
                try:
                    reply = await self._call(ws, dict(frame), kind)
                except ConnectionLost:
                    if not retry:
                        raise
                    continue
                if reply["type"] == "ack":
                    return cast(dict[str, Any], reply.get("data") or {})
                code = str(reply.get("code"))
                if code == "RATE_LIMITED" or (code == "UNAVAILABLE" and retry):
                    wait_ms = reply.get("retry_after_ms") or 250 * min(attempt, 8)
                    await asyncio.sleep(wait_ms / 1000)
                    continue
                raise ChatError(code, str(reply.get("message")), reply.get("retry_after_ms"))

    async def _current_ws(self) -> ClientConnection:
        while True:
            self._raise_if_done()
            if self._ws is not None:
                return self._ws
            await self._connected.wait()
            if self._ws is None and not self._closing and self._fatal is None:
                await asyncio.sleep(0)  # set and cleared again meanwhile: wait anew

    async def _call(
        self, ws: ClientConnection, frame: dict[str, Any], kind: _Kind
    ) -> dict[str, Any]:
        pending = self._send_frame(ws, frame, kind)
        try:
            return await pending.future
        finally:  # answered, dropped, or given up on (a timeout): forget it either way
            self._pending.pop(str(frame["id"]), None)

    def _send_frame(self, ws: ClientConnection, frame: dict[str, Any], kind: _Kind) -> _Pending:
        frame_id = f"c{next(self._ids)}"
        frame["id"] = frame_id
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        pending = _Pending(kind, future)
        self._pending[frame_id] = pending
        text = json.dumps(frame, separators=(",", ":"))
        task = asyncio.ensure_future(ws.send(text))
        self._writes.add(task)
        task.add_done_callback(lambda t: self._sent(frame_id, t))
        return pending

    def _sent(self, frame_id: str, task: asyncio.Future[None]) -> None:
        self._writes.discard(task)
        if task.cancelled() or task.exception() is not None:
            pending = self._pending.pop(frame_id, None)
            if pending is not None and not pending.future.done():
                pending.future.set_exception(ConnectionLost("the connection dropped"))

    # ---- events -------------------------------------------------------------------------

    def on(self, kind: type[E], handler: Handler[E]) -> Callable[[], None]:
        """Call `handler` (plain or async) for every event of this type; returns a
        function that removes it. Handlers run one at a time, in arrival order."""
        handlers = self._handlers.setdefault(kind, [])
        entry = cast(Callable[[Any], Awaitable[None] | None], handler)
        handlers.append(entry)
        return lambda: handlers.remove(entry) if entry in handlers else None

    async def events(self, *kinds: type[Event]) -> AsyncIterator[Event]:
        """Every event (or those of the given types) from now until the client closes."""
        queue: asyncio.Queue[Event | None] = asyncio.Queue()
        entry = (queue, frozenset(kinds))
        self._subscribers.append(entry)
        try:
            while (event := await queue.get()) is not None:
                yield event
        finally:
            self._subscribers.remove(entry)

    async def messages(self) -> AsyncIterator[MessageEvent]:
        """Every new message, per room in seq order, exactly once."""
        async for event in self.events(MessageEvent):
            assert isinstance(event, MessageEvent)
            yield event

    def _emit(self, event: Event) -> None:
        self._queue.put_nowait(event)

    async def _dispatch(self) -> None:
        while (event := await self._queue.get()) is not None:
            for handler in list(self._handlers.get(type(event), ())):
                try:
                    result = handler(event)
                    if inspect.isawaitable(result):
                        await result
                except Exception:
                    log.exception("chat_client handler failed for %s", type(event).__name__)
            for queue, kinds in self._subscribers:
                if not kinds or type(event) in kinds:
                    queue.put_nowait(event)
        for queue, _ in self._subscribers:
            queue.put_nowait(None)

    # ---- the connection -----------------------------------------------------------------

    async def _supervise(self) -> None:
        while not self._closing:
            ws: ClientConnection | None = None
            early: list[dict[str, Any]] = []
            try:
                token = await self._fresh_token()
                ws = await connect(
                    self.url,
                    additional_headers={"Authorization": f"Bearer {token}"},
                    open_timeout=self.open_timeout_s,
                    ping_interval=self._ping_interval_s,
                    ping_timeout=self._ping_interval_s,
                    close_timeout=2,
                    max_size=self._max_frame_bytes,
                    compression=None,
                )
                async with asyncio.timeout(self.open_timeout_s):
                    hello = await self._read_hello(ws, early)
            except asyncio.CancelledError:
                if ws is not None:
                    await _abort(ws)
                raise
            except ConnectionClosed as exc:
                code = exc.rcvd.code if exc.rcvd is not None else None
                if code in FATAL_CLOSE_CODES:
                    self._fatal = Refused(code or 0, exc.rcvd.reason if exc.rcvd else "")
                    self._connected.set()
                    self._synced.set()
                    return
                log.info("chat_client: refused before hello (close code %s)", code)
            except (OSError, TimeoutError, InvalidHandshake, InvalidURI, ValueError) as exc:
                log.info("chat_client: connect failed: %s", exc)
            except Exception:
                log.exception("chat_client: connect failed")
            else:
                self._backoff.reset()
                close_code = await self._serve(ws, hello, early)
                if close_code in FATAL_CLOSE_CODES:
                    self._fatal = Refused(close_code or 0, "refused by the server")
                    self._connected.set()
                    self._synced.set()
                    return
                ws = None
            if ws is not None:
                await _abort(ws)
            await asyncio.sleep(self._backoff.next_delay())

    async def _fresh_token(self) -> str:
        """The current token while it has life left before its renewal time, else a new
        one from the provider."""
        if self._token is not None:
            at = renew_at(lifetime(self._token))
            if at is None or at > time.time():
                return self._token
        self._token = await self._provider()
        return self._token

    @staticmethod
    async def _read_hello(ws: ClientConnection, early: list[dict[str, Any]]) -> dict[str, Any]:
        # Pushes for the user's rooms may be queued just before `hello`: keep them.
        while True:
            frame = json.loads(await ws.recv())
            if frame.get("type") == "hello":
                return cast(dict[str, Any], frame)
            early.append(frame)

    async def _serve(
        self, ws: ClientConnection, hello: dict[str, Any], early: list[dict[str, Any]]
    ) -> int | None:
        self._ws = ws
        self.user_id = str(hello["user_id"])
        self.connection_id = str(hello["connection_id"])
        self.heartbeat_s = float(hello.get("heartbeat_s") or 0) or None
        self.stats.connects += 1
        self._delivered_sent.clear()
        self._synced.clear()
        self._sync_wanted.set()
        self._connected.set()
        self._emit(ConnectionEvent(connected=True, connection_id=self.connection_id))
        helpers = [
            asyncio.create_task(self._sync_loop(ws), name="chat-sync"),
            asyncio.create_task(self._delivered_loop(ws), name="chat-delivered"),
            asyncio.create_task(self._renew_loop(ws), name="chat-renew"),
        ]
        if self._watching is not None:
            helpers.append(asyncio.create_task(self._rewatch(), name="chat-rewatch"))
        code: int | None = None
        try:
            for frame in early:
                self._on_frame(frame)
            async for raw in ws:
                self._on_frame(json.loads(raw))
        except ConnectionClosed:
            pass
        finally:
            self._ws = None
            self._connected.clear()
            self._synced.clear()
            for task in helpers:
                task.cancel()
            await asyncio.gather(*helpers, return_exceptions=True)
            for pending in self._pending.values():
                if not pending.future.done():
                    pending.future.set_exception(ConnectionLost("the connection dropped"))
            self._pending.clear()
            if not self._closing:
                self.stats.disconnects += 1
            code = ws.close_code
            self._emit(ConnectionEvent(False, self.connection_id, code))
            await _abort(ws)
        log.info("chat_client: disconnected (close code %s)", code)
        return code

    def _on_frame(self, frame: dict[str, Any]) -> None:
        kind = frame.get("type")
        if kind in ("ack", "error"):
            pending = self._pending.pop(str(frame.get("id")), None)
            if pending is None:
                if kind == "error":
                    log.warning("chat_client: error frame %s", frame)
                return
            if kind == "ack":
                data = frame.get("data") or {}
                if pending.kind == "send":
                    self._offer(data["message"])
                elif pending.kind == "sync":
                    outcome = self._seq.after_sync(data.get("rooms") or {})
                    for message in outcome.released:
                        self._release(message)
                    pending.sync_again = outcome.again
            if not pending.future.done():
                pending.future.set_result(frame)
        elif kind == "message":
            self._offer(frame["message"])
        elif kind == "resync":
            self._sync_wanted.set()
        elif kind in ("hello", "pong"):
            return
        else:
            event = from_push(frame)
            if event is None:
                log.debug("chat_client: ignored frame %s", kind)
                return
            if (
                isinstance(event, RoomEvent)
                and event.event == "member_removed"
                and event.user_id == self.user_id
            ):
                self._seq.forget(event.room_id)
                self._delivered_target.pop(event.room_id, None)
            self._emit(event)

    def _offer(self, message: dict[str, Any]) -> None:
        offered = self._seq.offer(message)
        self.stats.duplicates_dropped = self._seq.duplicates
        for released in offered.released:
            self._release(released)
        if offered.needs_sync:
            room_id = str(message["room_id"])
            if self._seq.cursor(room_id) is None:
                self._sync_wanted.set()  # a room new to this client
            elif room_id not in self._gap_timers:
                loop = asyncio.get_running_loop()
                self._gap_timers[room_id] = loop.call_later(GAP_GRACE_S, self._gap_check, room_id)

    def _gap_check(self, room_id: str) -> None:
        self._gap_timers.pop(room_id, None)
        if self._seq.held(room_id):
            self._sync_wanted.set()

    def _release(self, message: dict[str, Any]) -> None:
        room_id, seq = str(message["room_id"]), int(message["seq"])
        if seq > self._delivered_target.get(room_id, 0):
            self._delivered_target[room_id] = seq
        own = message.get("sender_id") == self.user_id
        self._emit(MessageEvent(message=cast(Message, message), own=own))

    async def _sync_loop(self, ws: ClientConnection) -> None:
        while True:
            await self._sync_wanted.wait()
            self._sync_wanted.clear()
            stalled = 0
            while stalled < MAX_STALLED_SYNC_ROUNDS:
                cursors = self._seq.cursors()
                frame = {"type": "sync", "cursors": cursors, "limit": self.sync_limit}
                pending = self._send_frame(ws, frame, "sync")
                try:
                    async with asyncio.timeout(self.request_timeout_s):
                        reply = await pending.future
                except ConnectionLost:
                    return
                except TimeoutError:  # a slow server: ask again, later
                    self._pending.pop(str(frame["id"]), None)
                    self._sync_wanted.set()
                    await asyncio.sleep(self._backoff.base_s * 4)
                    break
                self.stats.syncs += 1
                if reply["type"] == "error":
                    log.warning("chat_client: sync refused: %s", reply)
                    stalled += 1
                    await asyncio.sleep((reply.get("retry_after_ms") or 500) / 1000)
                    continue
                for room_id, seq in cursors.items():  # a sync cursor acknowledges delivery
                    if seq > self._delivered_sent.get(room_id, 0):
                        self._delivered_sent[room_id] = seq
                if not pending.sync_again:
                    break
                stalled = stalled + 1 if self._seq.cursors() == cursors else 0
            if not self._sync_wanted.is_set():
                self._synced.set()

    async def _delivered_loop(self, ws: ClientConnection) -> None:
        while True:
            await asyncio.sleep(self.delivered_interval_s)
            self._flush_delivered(ws)

    def _flush_delivered(self, ws: ClientConnection) -> None:
        for room_id, seq in list(self._delivered_target.items()):
            previous = self._delivered_sent.get(room_id, 0)
            if seq <= previous:
                continue
            self._delivered_sent[room_id] = seq
            self.stats.delivered_frames += 1
            frame = {"type": "delivered", "room_id": room_id, "seq": seq}
            pending = self._send_frame(ws, frame, "delivered")
            pending.future.add_done_callback(
                functools.partial(self._delivered_answered, room_id, seq, previous)
            )

    def _delivered_answered(
        self, room_id: str, seq: int, previous: int, fut: asyncio.Future[dict[str, Any]]
    ) -> None:
        failed = fut.cancelled() or fut.exception() is not None
        refused = failed or fut.result().get("type") == "error"
        if refused and self._delivered_sent.get(room_id) == seq:
            # Sent again on the next tick (or acknowledged by the next sync's cursors).
            self._delivered_sent[room_id] = previous

    async def _renew_loop(self, ws: ClientConnection) -> None:
        while True:
            token = self._token
            if token is None:
                return
            life = lifetime(token)
            at = renew_at(life)
            if at is None:
                return
            await asyncio.sleep(max(0.0, at - time.time()))
            try:
                fresh = await self._provider()
            except Exception:
                log.exception("chat_client: token provider failed")
                await asyncio.sleep(1.0)
                continue
            new_exp, old_exp = lifetime(fresh).expires_at, life.expires_at
            if new_exp is not None and old_exp is not None and new_exp <= old_exp:
                # Not fresher than what we have: ask again a little later.
                await asyncio.sleep(min(1.0, max(0.05, (old_exp - time.time()) / 4)))
                continue
            frame = {"type": "auth", "token": fresh}
            pending = self._send_frame(ws, frame, "request")
            try:
                async with asyncio.timeout(self.request_timeout_s):
                    reply = await pending.future
            except ConnectionLost:
                return
            except TimeoutError:  # try again (before exp, or reconnect after a 4401)
                self._pending.pop(str(frame["id"]), None)
                continue
            if reply["type"] == "ack":
                self._token = fresh
                self.stats.renewals += 1
            else:
                log.warning("chat_client: token renewal refused: %s", reply.get("code"))
                await asyncio.sleep(1.0)

    async def _rewatch(self) -> None:
        if self._watching is None:
            return
        try:
            states = await self.watch_presence(self._watching)
        except (ChatError, ConnectionLost, TimeoutError) as exc:
            log.warning("chat_client: presence.watch after reconnect failed: %s", exc)
            return
        for state in states:  # what changed while disconnected
            self._emit(
                PresenceEvent(
                    user_id=state["user_id"],
                    online=bool(state["online"]),
                    last_seen=state.get("last_seen"),
                )
            )


async def _abort(ws: ClientConnection) -> None:
    with contextlib.suppress(Exception):
        async with asyncio.timeout(2):
            await ws.close()
    with contextlib.suppress(Exception):
        ws.transport.abort()
