"""Pushes kept back from a connection until an answer of its own has gone out.

- While a connection is set up (`SetupHolds`): it is registered before its `hello` goes
  out, so that nothing addressed to it meanwhile is missed, and a client's first frame is
  always its `hello`. Everything pushed to it until then is kept, in order, and sent after.
- While a `presence.watch` is answered (`PresenceHolds`): the answer gives each user's
  state as of the answer. A report that comes while the answer is made would otherwise
  overtake it (the answer waits its turn behind earlier frames' answers) and be undone by
  it, leaving the client on the older state. The last report of each user is kept, and
  once the answer is out only those newer than what it said are sent.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import structlog

from app.ws.connection import CLOSE_TOO_SLOW, TOO_SLOW_REASON, Connection
from app.ws.registry import newer_version

log = structlog.get_logger(__name__)


class SetupHolds:
    def __init__(self) -> None:
        # Connections held and not yet released, with the frames (text and wire bytes, as
        # the fan-out pushes them) pushed to them meanwhile, in order.
        self._held: dict[Connection, list[tuple[str, bytes]]] = {}

    def __bool__(self) -> bool:
        return bool(self._held)

    def hold(self, conn: Connection) -> None:
        self._held[conn] = []

    def release(self, conn: Connection) -> list[tuple[str, bytes]]:
        """What was kept for `conn`; from now on it is not held."""
        return self._held.pop(conn, [])

    def keep(self, conns: list[Connection], text: str, wire: bytes) -> list[Connection]:
        """Keep the frame for those of `conns` that are held; the others."""
        held, others = self._held, []
        for conn in conns:
            frames = held.get(conn)
            if frames is None:
                others.append(conn)
            elif len(frames) < conn.outbox_size:
                frames.append((text, wire))
            else:
                # Bounded as the outbox it is bound for, with the same overflow policy.
                del held[conn]
                log.warning("outbox_overflow", connection_id=conn.id, user_id=conn.user_id)
                conn.close(CLOSE_TOO_SLOW, TOO_SLOW_REASON)
        return others


class PresenceHolds:
    def __init__(self) -> None:
        # Per held connection, the last report of each user: its version and frame. One
        # per user, so bounded by how many users a connection may watch.
        self._held: dict[Connection, dict[str, tuple[int | None, bytes]]] = {}

    def hold(self, conn: Connection) -> None:
        self._held.setdefault(conn, {})

    def keep(
        self, conns: Iterable[Connection], user_id: str, version: int | None, data: bytes
    ) -> list[Connection]:
        """Keep a report of `user_id` for those of `conns` that are held; the others."""
        held = self._held
        if not held:
            return list(conns)
        others = []
        for conn in conns:
            reports = held.get(conn)
            if reports is None:
                others.append(conn)
            else:
                reports[user_id] = (version, data)
        return others

    def release(self, conn: Connection, answered: Mapping[str, int] | None) -> list[bytes]:
        """The reports kept for `conn` that it is still to get: of users it still watches,
        and newer than the versions its answer gave (`answered`; None when no answer
        went out, and the client is to get them all)."""
        reports = self._held.pop(conn, {})
        out = []
        for user_id, (version, data) in reports.items():
            if user_id not in conn.watching:
                continue
            if newer_version(version, answered.get(user_id) if answered is not None else None):
                out.append(data)
        return out

    def drop(self, conn: Connection) -> None:
        self._held.pop(conn, None)
