"""Answers to one connection's frames, sent in the order the frames came.

Writes are handled concurrently (a `send` waits for its batch to commit while the next
frames are read), yet a client reads the answers in the order it sent the frames: each
frame takes its place in line when it is read, and its answer goes out once every answer
before it has. Pushes (messages, receipts, typing) are not in this line: they go out at
once, interleaved with the answers; an answer may name what is to follow it (`then`).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable


class Place:
    """One frame's place in line; `text` is its answer once known, and `then` what to do
    once that has gone out."""

    __slots__ = ("text", "then")

    def __init__(self) -> None:
        self.text: str | None = None
        self.then: Callable[[], None] | None = None


class AnswerLine:
    def __init__(self, send: Callable[[str], None]) -> None:
        self._send = send
        # Made by the first frame that has to wait its turn: most never do.
        self._line: deque[Place] | None = None

    def __len__(self) -> int:
        """Frames read and not yet answered (or answered behind one that is not)."""
        return len(self._line) if self._line is not None else 0

    def take_place(self) -> Place:
        place = Place()
        if self._line is None:
            self._line = deque()
        self._line.append(place)
        return place

    def answer(self, place: Place, text: str, then: Callable[[], None] | None = None) -> None:
        place.text = text
        place.then = then
        line = self._line
        while line and (ready := line[0].text) is not None:
            after = line.popleft().then
            self._send(ready)
            if after is not None:
                after()
        if not line:
            self._line = None  # an idle socket holds no line

    def answer_now(self, text: str) -> None:
        """Answer a frame handled on the spot, after those still waiting."""
        if self._line:
            self.answer(self.take_place(), text)
        else:
            self._send(text)
