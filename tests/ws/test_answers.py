"""Answers go out in the order of their frames, and what an answer names to follow it
comes after it, however late its turn comes."""

from __future__ import annotations

from app.ws.answers import AnswerLine


def test_what_follows_an_answer_waits_for_an_earlier_frames_answer() -> None:
    out: list[str] = []
    line = AnswerLine(out.append)
    earlier, later = line.take_place(), line.take_place()

    line.answer(later, "ack 2", lambda: out.append("after 2"))
    assert out == []
    line.answer(earlier, "ack 1")

    assert out == ["ack 1", "ack 2", "after 2"]


def test_what_follows_an_answer_whose_turn_it_is_comes_at_once() -> None:
    out: list[str] = []
    line = AnswerLine(out.append)

    line.answer(line.take_place(), "ack 1", lambda: out.append("after 1"))

    assert out == ["ack 1", "after 1"]
