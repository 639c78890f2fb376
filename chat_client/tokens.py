"""Reading a JWT's lifetime on the client side, without verifying it.

The client only needs `exp` (and `iat`, when present) to plan the renewal; the server
does the verification. A token it cannot read is treated as having no known expiry.
"""

from __future__ import annotations

import base64
import json
import time
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Lifetime:
    issued_at: float
    expires_at: float | None


def lifetime(token: str, now: float | None = None) -> Lifetime:
    """`iat` (or now) and `exp` of a JWT, in Unix seconds; `exp` None when unreadable."""
    now = time.time() if now is None else now
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError):
        return Lifetime(issued_at=now, expires_at=None)
    if not isinstance(claims, dict):
        return Lifetime(issued_at=now, expires_at=None)
    exp, iat = claims.get("exp"), claims.get("iat")
    expires_at = float(exp) if isinstance(exp, int | float) and not isinstance(exp, bool) else None
    issued_at = float(iat) if isinstance(iat, int | float) and not isinstance(iat, bool) else now
    return Lifetime(issued_at=min(issued_at, now), expires_at=expires_at)


def renew_at(life: Lifetime, max_margin_s: float = 60.0, min_margin_s: float = 0.5) -> float | None:
    """When to renew: a quarter of the lifetime before `exp` (between the two margins)."""
    if life.expires_at is None:
        return None
    span = max(life.expires_at - life.issued_at, 0.0)
    margin = min(max_margin_s, max(min_margin_s, span / 4))
    return life.expires_at - margin
