"""Opaque page cursors: clients pass them back unchanged and never build them."""

from __future__ import annotations

import base64
import binascii

import orjson

from app.errors import ValidationFailed


def encode(*parts: str | int) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(list(parts))).decode().rstrip("=")


def decode(cursor: str, arity: int) -> list[str | int]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        parts = orjson.loads(base64.urlsafe_b64decode(padded.encode()))
    except (binascii.Error, orjson.JSONDecodeError, ValueError) as exc:
        raise ValidationFailed("cursor is not one this service issued") from exc
    if not isinstance(parts, list) or len(parts) != arity:
        raise ValidationFailed("cursor is not one this service issued")
    if not all(isinstance(p, str | int) and not isinstance(p, bool) for p in parts):
        raise ValidationFailed("cursor is not one this service issued")
    return parts
