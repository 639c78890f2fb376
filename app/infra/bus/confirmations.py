"""Which of an instance's subscriptions Redis has confirmed, on the one pub/sub connection.

A subscription is in force once Redis has answered its SUBSCRIBE with nothing about the
channel asked since: only then may the publish script count this instance among the
channel's subscribers (`publish.lua`), and only then does a publish reach it. Redis
answers each (un)subscribe of a channel once, in order, so a count of those unanswered
per channel tells.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterable


class Confirmations:
    def __init__(self) -> None:
        self._confirmed: set[str] = set()
        self._unanswered: Counter[str] = Counter()
        # Callers of `until` by channel they wait for: the channels each still waits for,
        # and its future (by channel, as thousands may wait at once in a reconnect storm).
        self._awaiting: dict[str, list[tuple[set[str], asyncio.Future[None]]]] = {}

    def __contains__(self, channel: str) -> bool:
        return channel in self._confirmed

    def asked(self, channels: Iterable[str]) -> None:
        """A SUBSCRIBE or UNSUBSCRIBE of these channels is on its way."""
        self._unanswered.update(channels)

    def withdraw(self, channels: Iterable[str]) -> None:
        """No longer counted as confirmed (they are being unsubscribed)."""
        self._confirmed.difference_update(channels)

    def answered(self, channel: str, followed: bool) -> None:
        """Redis answered an (un)subscribe of `channel`; `followed`: it is still wanted."""
        left = self._unanswered[channel] - 1
        if left > 0:
            self._unanswered[channel] = left
            return
        del self._unanswered[channel]
        if not followed:
            return
        self._confirmed.add(channel)
        for pending, confirmed in self._awaiting.pop(channel, ()):
            pending.discard(channel)
            if not pending and not confirmed.done():
                confirmed.set_result(None)

    def clear(self) -> None:
        """The connection is gone: nothing counts as confirmed until Redis says so again."""
        self._confirmed.clear()
        self._unanswered.clear()

    async def until(self, channels: Iterable[str], timeout_s: float) -> bool:
        """Wait until each of `channels` is confirmed; False past `timeout_s`."""
        pending = {c for c in channels if c not in self._confirmed}
        if not pending:
            return True
        confirmed = asyncio.get_running_loop().create_future()
        entry = (pending, confirmed)
        for channel in pending:
            self._awaiting.setdefault(channel, []).append(entry)
        try:
            done, _ = await asyncio.wait({confirmed}, timeout=timeout_s)
        finally:
            for channel in pending:  # those still pending: the others were popped
                waiting = self._awaiting.get(channel)
                if waiting is not None:
                    waiting.remove(entry)
                    if not waiting:
                        del self._awaiting[channel]
        return bool(done)
