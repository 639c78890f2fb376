"""Text the stores can hold: PostgreSQL `text` has no NUL character and only valid UTF-8."""

from __future__ import annotations

MAX_USER_ID_CHARS = 64


def storable(text: str) -> bool:
    """False for text PostgreSQL would refuse (a NUL, or a lone surrogate from JSON escapes)."""
    if "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def valid_user_id(user_id: str) -> bool:
    return 1 <= len(user_id) <= MAX_USER_ID_CHARS and storable(user_id)
