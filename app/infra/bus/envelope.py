"""The bytes on a bus channel: a small JSON header, a newline, then the frame exactly as
clients receive it. Receivers split at the first newline (orjson never emits a raw one)
and write the frame bytes on without parsing them."""

from __future__ import annotations

from typing import Any

import orjson


def encode(header: dict[str, Any], frame: bytes = b"") -> bytes:
    return orjson.dumps(header) + b"\n" + frame


def decode(data: bytes) -> tuple[dict[str, Any], bytes]:
    head, _, frame = data.partition(b"\n")
    header = orjson.loads(head)
    if not isinstance(header, dict):
        raise ValueError("bus header is not an object")
    return header, frame
