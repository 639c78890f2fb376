"""Whole WebSocket frames cut from a client's byte stream, for the protocol's fast path.

`ChatWebSocketProtocol` hands a detached socket's bytes to a `FrameSplitter`; a text
message in one frame is unmasked here (`text_payload`) and goes to the app without
websockets' parser, and every other frame goes to websockets whole. `between_frames`
tells when websockets can be bypassed without cutting one of its frames in two.
"""

from __future__ import annotations

import struct
from typing import Final

from websockets.protocol import Protocol as WebSocketsProtocol
from websockets.server import ServerProtocol
from websockets.streams import StreamReader

try:
    from websockets.speedups import apply_mask
except ImportError:  # pragma: no cover - websockets built without its C extension
    from websockets.utils import apply_mask

# The first byte of a text message in one frame: FIN, no reserved bit, opcode 0x1.
_WHOLE_TEXT: Final = 0x81
_MASKED: Final = 0x80
_U16: Final = struct.Struct("!H")
_U64: Final = struct.Struct("!Q")


class FrameSplitter:
    """Cuts what a client sends into whole WebSocket frames (RFC 6455, section 5.2).

    Why it exists: websockets' parser is a chain of generators (about 3 µs for a
    180-byte masked text frame), and uvicorn then dispatches each event on its type:
    4.5 µs per such frame through `data_received`. Cut here, unmasked and decoded
    directly, the frame costs 1.7 µs. At 5,000 chat messages/s the server reads some
    9,000 frames/s: the difference is 2-3% of the event loop's one thread.

    It only finds where frames end; the protocol decides what to do with each one
    (`text_payload`, or websockets for everything else). It holds back the start of a
    frame not yet whole: never more than one frame, of at most `max_size` + 14 bytes.
    A frame websockets refuses from its header alone (unmasked, or declaring more than
    `max_size`) is not waited for: the splitter stops there, `refused`, and the bytes
    from that frame on (`take_rest`) must go to websockets, which fails the connection
    with the close code it always used.
    """

    __slots__ = ("_buffer", "_max_size", "_wanted", "refused")

    def __init__(self, max_size: int | None) -> None:
        self._max_size = max_size
        # The start of a frame not yet whole, and the size it must reach before another
        # look at it can tell more (its header, then the whole frame).
        self._buffer = bytearray()
        self._wanted = 0
        self.refused = False

    def split(self, data: bytes) -> list[bytes]:
        """The frames that `data` completes, in order, each as its own bytes."""
        buffer = self._buffer
        if buffer:
            buffer += data
            if len(buffer) < self._wanted:
                # A large frame arriving in many reads: no copy, no second look.
                return []
            data = bytes(buffer)
            buffer.clear()
        frames: list[bytes] = []
        start, end = 0, len(data)
        max_size = self._max_size
        while True:
            wanted = start + 2
            if wanted > end:
                break
            second = data[start + 1]
            if not second & _MASKED:
                # A client must mask; websockets closes with 1002 as soon as it sees this.
                self.refused = True
                break
            length = second & 0x7F
            if length == 126:
                wanted = start + 4
                if wanted > end:
                    break
                (length,) = _U16.unpack_from(data, start + 2)
            elif length == 127:
                wanted = start + 10
                if wanted > end:
                    break
                (length,) = _U64.unpack_from(data, start + 2)
            if max_size is not None and length > max_size:
                # Not buffered: websockets closes with 1009 on the header alone.
                self.refused = True
                break
            # The 4-byte mask key, then the payload.
            wanted += 4 + length
            if wanted > end:
                break
            frames.append(data[start:wanted])
            start = wanted
        if start < end:
            buffer += memoryview(data)[start:]
            self._wanted = wanted - start
        return frames

    def take_rest(self) -> bytes:
        """The bytes held back (the start of a frame, or all from a refused one on)."""
        rest = bytes(self._buffer)
        self._buffer.clear()
        return rest


def text_payload(frame: bytes) -> bytes | None:
    """The unmasked payload of a whole frame that is a text message on its own (FIN, no
    reserved bit, masked); None for any other frame."""
    if frame[0] != _WHOLE_TEXT or not frame[1] & _MASKED:
        return None
    length = frame[1] & 0x7F
    start = 6 if length < 126 else 8 if length == 126 else 14
    return apply_mask(frame[start:], frame[start - 4 : start])


_PARSE_CODE: Final = WebSocketsProtocol.parse.__code__
_AT_EOF_CODE: Final = StreamReader.at_eof.__code__


def between_frames(conn: ServerProtocol) -> bool:
    """websockets has parsed every byte it was given and waits for a frame's first byte.

    An empty buffer alone does not say so: the parser may have taken a frame's header
    and be waiting for the rest. Where its generators are suspended does: at the top of
    `Protocol.parse`'s loop, in `StreamReader.at_eof`. Should a later websockets be
    built otherwise, this is False and frames simply keep going through its parser.
    """
    outer: object = None
    inner: object = conn.parser
    while (deeper := getattr(inner, "gi_yieldfrom", None)) is not None:
        outer, inner = inner, deeper
    return (
        not conn.reader.buffer
        and getattr(inner, "gi_code", None) is _AT_EOF_CODE
        and getattr(outer, "gi_code", None) is _PARSE_CODE
    )
