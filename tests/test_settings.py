"""Settings that would leave the service unable to work are refused at start."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from app.settings import Settings


def test_write_lanes_default_to_one() -> None:
    assert Settings().write_lanes == 1


def test_zero_write_lanes_are_refused() -> None:
    with pytest.raises(ValidationError):
        Settings(write_lanes=0)


def test_the_order_hold_defaults_to_half_a_second() -> None:
    assert Settings().order_hold_ms == 500


def test_a_negative_order_hold_is_refused() -> None:
    with pytest.raises(ValidationError):
        Settings(order_hold_ms=-1)
