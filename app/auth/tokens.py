"""JWT verification and issuing: python-jose behind one file, with its sharp edges filed off.

python-jose on its own accepts tokens without `exp`, a missing `aud` when an audience is
configured, and (with no algorithm list) an HMAC token keyed with a public key. Every
one of those is closed here.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from jose import jwt
from jose.exceptions import JOSEError

from app.domain.text import storable, valid_user_id
from app.errors import Unauthorized
from app.settings import Settings

HMAC_ALGORITHMS = frozenset({"HS256", "HS384", "HS512"})
KEY_ALGORITHMS = frozenset({"RS256", "RS384", "RS512", "ES256", "ES384", "ES512"})
MIN_SECRET_BYTES = 32
CLOCK_SKEW_S = 30
SECRET_FILE = "jwt-secret"  # noqa: S105 (a file name, not a secret)


class ConfigError(Exception):
    """The identity settings are unsafe or incomplete; the server must not start."""


@dataclass(frozen=True, slots=True)
class Claims:
    sub: str
    name: str | None
    expires_at: datetime


def resolve_secret(settings: Settings) -> str | None:
    """The configured HS256 secret; in embedded mode, one generated once under data_dir."""
    if settings.jwt_secret is not None:
        return settings.jwt_secret
    if not settings.embedded or settings.jwt_public_key is not None:
        return None
    path = Path(settings.data_dir) / SECRET_FILE
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(48))
        path.chmod(0o600)
    return path.read_text().strip()


class TokenVerifier:
    def __init__(self, settings: Settings, secret: str | None) -> None:
        algorithms = [a.strip().upper() for a in settings.jwt_algorithms]
        unknown = set(algorithms) - HMAC_ALGORITHMS - KEY_ALGORITHMS
        if not algorithms or unknown:
            raise ConfigError(f"CHAT_JWT_ALGORITHMS has unsupported entries: {sorted(unknown)}")
        uses_hmac = bool(set(algorithms) & HMAC_ALGORITHMS)
        uses_keys = bool(set(algorithms) & KEY_ALGORITHMS)
        if uses_hmac and uses_keys:
            # An HMAC verifier handed the public key would accept tokens anyone can sign.
            raise ConfigError("CHAT_JWT_ALGORITHMS must not mix HMAC and public-key algorithms")
        if uses_hmac:
            if secret is None:
                raise ConfigError("CHAT_JWT_SECRET is required for HMAC algorithms")
            if len(secret.encode()) < MIN_SECRET_BYTES:
                raise ConfigError(f"CHAT_JWT_SECRET must be at least {MIN_SECRET_BYTES} bytes")
            self._key: str = secret
        else:
            if not settings.jwt_public_key:
                raise ConfigError("CHAT_JWT_PUBLIC_KEY is required for RS/ES algorithms")
            self._key = settings.jwt_public_key
        self._algorithms = algorithms
        self._audience = settings.jwt_audience
        self._issuer = settings.jwt_issuer
        self._max_bytes = settings.max_token_bytes

    def verify(self, token: str) -> Claims:
        if not token or len(token.encode()) > self._max_bytes:
            raise Unauthorized("token missing or too large")
        try:
            header = jwt.get_unverified_header(token)
            if header.get("alg") not in self._algorithms:
                raise Unauthorized("token algorithm not accepted")
            claims: dict[str, Any] = jwt.decode(
                token,
                self._key,
                algorithms=self._algorithms,
                audience=self._audience,
                issuer=self._issuer,
                options={
                    "require_exp": True,
                    "require_sub": True,
                    "require_aud": self._audience is not None,
                    "require_iss": self._issuer is not None,
                    "leeway": 0,
                },
            )
        except Unauthorized:
            raise
        except (JOSEError, ValueError, TypeError, KeyError, AttributeError, OverflowError) as exc:
            # OverflowError: python-jose does int() on exp/iat/nbf, and int(Infinity) overflows.
            raise Unauthorized("invalid token") from exc
        return self._claims(claims)

    @staticmethod
    def _claims(claims: dict[str, Any]) -> Claims:
        sub, name, exp, iat = (
            claims.get("sub"),
            claims.get("name"),
            claims["exp"],
            claims.get("iat"),
        )
        if not isinstance(sub, str) or not valid_user_id(sub):
            raise Unauthorized("sub must be a string of 1 to 64 characters")
        if name is not None and (
            not isinstance(name, str) or len(name) > 200 or not storable(name)
        ):
            raise Unauthorized("name must be a string of at most 200 characters")
        if not isinstance(exp, int | float) or isinstance(exp, bool):
            raise Unauthorized("exp must be a number")
        if iat is not None and (
            not isinstance(iat, int | float) or iat > time.time() + CLOCK_SKEW_S
        ):
            raise Unauthorized("token issued in the future")
        try:
            expires_at = datetime.fromtimestamp(exp, UTC)
        except (OverflowError, OSError, ValueError) as exc:
            raise Unauthorized("exp is out of range") from exc
        return Claims(sub=sub, name=name, expires_at=expires_at)


def issue(secret: str, sub: str, *, name: str | None = None, ttl_s: int = 3600) -> str:
    """An HS256 token for `sub`, as `chat token` prints it."""
    now = int(time.time())
    claims: dict[str, Any] = {"sub": sub, "iat": now, "exp": now + ttl_s}
    if name is not None:
        claims["name"] = name
    token: str = jwt.encode(claims, secret, algorithm="HS256")
    return token
