"""A push is encoded once for every socket that gets it (`app.ws.protocol.text_frame`):
those bytes must be exactly the frame the WebSocket library itself would send."""

from __future__ import annotations

import pytest
from websockets.frames import Frame, Opcode

from app.ws.protocol import text_frame


@pytest.mark.parametrize("size", [0, 1, 125, 126, 127, 65535, 65536, 70000])
def test_a_pushed_frame_is_byte_for_byte_what_websockets_sends(size: int) -> None:
    payload = ("é" * size).encode()[:size]
    expected = Frame(Opcode.TEXT, payload).serialize(mask=False)
    assert text_frame(payload) == expected
