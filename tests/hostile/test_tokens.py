"""Forged and broken tokens: each refused on REST (401 problem+json, code UNAUTHORIZED,
never a 500) and on the WebSocket (closed with 4401), by header and by first `auth` frame.

Three instances: `hs` (the default HS256 secret), `rs` (RS256 with a public key only,
to prove the HMAC-with-the-public-key confusion fails) and `aud` (HS256 with an audience
and an issuer required). Every forged token is made by hand (or python-jose, where it
will), so the server's own issuing code plays no part in what is refused.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jose import jwt
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.cluster import FRAME_TIMEOUT_S, Fleet, Instance, unhandled_errors
from tests.support import TEST_SECRET, assert_problem, new_user_id, token_for

AUDIENCE = "chat-api"
ISSUER = "https://idp.example.test"
AUTH_TIMEOUT_S = 1.0  # the `hs` instance's, for the query-string test
MAX_TOKEN_BYTES = 8192


@dataclass(frozen=True)
class Keys:
    private_pem: bytes
    public_pem: bytes
    public_der: bytes
    other_private_pem: bytes  # a key the server does not know


def rsa_private() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


@pytest.fixture(scope="module")
def keys() -> Keys:
    private = rsa_private()
    public = private.public_key()
    return Keys(
        private_pem=pem(private),
        public_pem=public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
        public_der=public.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
        other_private_pem=pem(rsa_private()),
    )


@pytest.fixture(scope="module")
def instances(fleet: Fleet, keys: Keys) -> Iterator[dict[str, Instance]]:
    started = fleet.start(
        hs={"auth_timeout_s": str(AUTH_TIMEOUT_S)},
        rs={"jwt_algorithms": "RS256", "jwt_public_key": keys.public_pem.decode()},
        aud={"jwt_audience": AUDIENCE, "jwt_issuer": ISSUER},
    )
    yield started
    for instance in started.values():
        assert unhandled_errors(instance) == []


# ---- making tokens -----------------------------------------------------------------------


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hs256(claims: dict[str, Any] | bytes, key: bytes, header: dict[str, Any] | None = None) -> str:
    """An HS256 JWT made by hand: python-jose refuses to HMAC with a public key. Claims
    given as bytes are used as they are (JSON that no encoder would write)."""
    head = header or {"alg": "HS256", "typ": "JWT"}
    payload = claims if isinstance(claims, bytes) else orjson.dumps(claims)
    signing_input = f"{b64(orjson.dumps(head))}.{b64(payload)}"
    signature = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(signature)}"


def unsigned(claims: dict[str, Any], alg: str = "none") -> str:
    return f"{b64(orjson.dumps({'alg': alg, 'typ': 'JWT'}))}.{b64(orjson.dumps(claims))}."


def claims(user_id: str, **changes: Any) -> dict[str, Any]:
    """Good claims for the user, then changed: a value of None removes that claim."""
    now = int(time.time())
    base: dict[str, Any] = {"sub": user_id, "iat": now, "exp": now + 3600}
    base.update(changes)
    return {k: v for k, v in base.items() if v is not None}


def raw_claims(sub: str, rest: str) -> bytes:
    """Claims as raw JSON text, for values no JSON encoder writes (NaN, Infinity)."""
    return f'{{"sub":"{sub}",{rest}}}'.encode()


def for_aud(user_id: str, **changes: Any) -> dict[str, Any]:
    return claims(user_id, **{"aud": AUDIENCE, "iss": ISSUER, **changes})


SECRET = TEST_SECRET.encode()


@dataclass(frozen=True)
class Forged:
    name: str
    instance: str  # which instance it is tried against
    make: Callable[[Keys, str], str]  # (keys, user id) -> token ("" = none at all)
    # How the WebSocket refuses it in the Authorization header: closed with 4401, or (a
    # header line the WebSocket library will not read, over 8,192 bytes) the handshake
    # itself refused with an HTTP 4xx. Never a `hello`.
    by_header: frozenset[str] = frozenset({"close 4401"})


def now() -> int:
    return int(time.time())


FORGED = [
    Forged("missing", "hs", lambda k, u: ""),
    Forged("alg none", "hs", lambda k, u: unsigned(claims(u))),
    Forged("alg None", "hs", lambda k, u: unsigned(claims(u), "None")),
    Forged("alg none on the RS256 instance", "rs", lambda k, u: unsigned(claims(u))),
    Forged(
        "HS256 keyed with the public key PEM", "rs", lambda k, u: hs256(claims(u), k.public_pem)
    ),
    Forged(
        "HS256 keyed with the public key DER", "rs", lambda k, u: hs256(claims(u), k.public_der)
    ),
    Forged("HS256 keyed with a public key PEM", "hs", lambda k, u: hs256(claims(u), k.public_pem)),
    Forged("HS256 keyed with a public key DER", "hs", lambda k, u: hs256(claims(u), k.public_der)),
    Forged(
        "RS256 signed by an unknown key",
        "rs",
        lambda k, u: jwt.encode(claims(u), k.other_private_pem.decode(), algorithm="RS256"),
    ),
    Forged(
        "RS256 on the HS256 instance",
        "hs",
        lambda k, u: jwt.encode(claims(u), k.private_pem.decode(), algorithm="RS256"),
    ),
    Forged("HS512 when only HS256 is configured", "hs", lambda k, u: hs512(claims(u))),
    Forged("expired", "hs", lambda k, u: hs256(claims(u, exp=now() - 5), SECRET)),
    Forged("no exp", "hs", lambda k, u: hs256(claims(u, exp=None), SECRET)),
    Forged("exp not a number", "hs", lambda k, u: hs256(claims(u, exp="never"), SECRET)),
    Forged("exp NaN", "hs", lambda k, u: hs256(raw_claims(u, '"exp":NaN'), SECRET)),
    Forged("exp Infinity", "hs", lambda k, u: hs256(raw_claims(u, '"exp":Infinity'), SECRET)),
    Forged("exp 1e300", "hs", lambda k, u: hs256(raw_claims(u, '"exp":1e300'), SECRET)),
    Forged(
        "exp a numeric string", "hs", lambda k, u: hs256(claims(u, exp=str(now() + 99)), SECRET)
    ),
    Forged("exp true", "hs", lambda k, u: hs256(claims(u, exp=True), SECRET)),
    Forged(
        "iat NaN", "hs", lambda k, u: hs256(raw_claims(u, f'"exp":{now() + 99},"iat":NaN'), SECRET)
    ),
    Forged(
        "nbf NaN", "hs", lambda k, u: hs256(raw_claims(u, f'"exp":{now() + 99},"nbf":NaN'), SECRET)
    ),
    Forged("future nbf", "hs", lambda k, u: hs256(claims(u, nbf=now() + 3600), SECRET)),
    Forged("future iat", "hs", lambda k, u: hs256(claims(u, iat=now() + 3600), SECRET)),
    Forged("no sub", "hs", lambda k, u: hs256(claims(u, sub=None), SECRET)),
    Forged("sub of 65 characters", "hs", lambda k, u: hs256(claims("s" * 65), SECRET)),
    Forged("sub empty", "hs", lambda k, u: hs256(claims(""), SECRET)),
    Forged("sub with NUL", "hs", lambda k, u: hs256(claims(u + "\x00"), SECRET)),
    Forged(
        "sub with a lone surrogate",
        "hs",
        lambda k, u: hs256(raw_claims(u + "\\ud800", f'"exp":{now() + 99}'), SECRET),
    ),
    Forged("name not a string", "hs", lambda k, u: hs256(claims(u, name=["x"]), SECRET)),
    Forged("name of 201 characters", "hs", lambda k, u: hs256(claims(u, name="n" * 201), SECRET)),
    Forged("sub not a string", "hs", lambda k, u: hs256(claims(u, sub=42), SECRET)),
    Forged("wrong aud", "aud", lambda k, u: hs256(for_aud(u, aud="other-api"), SECRET)),
    Forged("missing aud", "aud", lambda k, u: hs256(for_aud(u, aud=None), SECRET)),
    Forged("wrong iss", "aud", lambda k, u: hs256(for_aud(u, iss="https://evil.test"), SECRET)),
    Forged("missing iss", "aud", lambda k, u: hs256(for_aud(u, iss=None), SECRET)),
    Forged("bad signature", "hs", lambda k, u: hs256(claims(u), b"x" * 48)),
    Forged("signature of another token", "hs", lambda k, u: swap_signature(u)),
    Forged("truncated", "hs", lambda k, u: token_for(u)[:-12]),
    Forged("no signature part", "hs", lambda k, u: token_for(u).rsplit(".", 1)[0]),
    Forged(
        "header not JSON", "hs", lambda k, u: f"{b64(b'{oops')}.{token_for(u).split('.', 1)[1]}"
    ),
    Forged("not a JWT", "hs", lambda k, u: "not-a-jwt"),
    Forged("empty segments", "hs", lambda k, u: ".."),
    Forged("five segments (JWE shape)", "hs", lambda k, u: token_for(u) + ".e30.e30"),
    Forged(
        "over 8 KiB, correctly signed",
        "hs",
        lambda k, u: oversized(u),
        frozenset({"close 4401", "http 4xx"}),
    ),
]


def hs512(payload: dict[str, Any]) -> str:
    token: str = jwt.encode(payload, TEST_SECRET, algorithm="HS512")
    return token


def swap_signature(user_id: str) -> str:
    """This user's claims under the signature of someone else's valid token."""
    head, body, _ = token_for(user_id).split(".")
    signature = token_for(new_user_id()).split(".")[2]
    return f"{head}.{body}.{signature}"


def oversized(user_id: str) -> str:
    token = hs256(claims(user_id, pad="p" * MAX_TOKEN_BYTES), SECRET)
    assert len(token) > MAX_TOKEN_BYTES
    return token


CASES = [pytest.param(f, id=f.name) for f in FORGED]


# ---- trying them -------------------------------------------------------------------------


async def rest_me(instance: Instance, headers: dict[str, str], query: str = "") -> httpx.Response:
    async with httpx.AsyncClient(base_url=instance.http, timeout=FRAME_TIMEOUT_S) as http:
        return await http.get(f"/v1/me{query}", headers=headers)


async def ws_open(instance: Instance, headers: dict[str, str], query: str = "") -> ClientConnection:
    return await connect(
        instance.ws + query,
        additional_headers=headers,
        open_timeout=FRAME_TIMEOUT_S,
        proxy=None,
    )


async def close_code(ws: ClientConnection, timeout_s: float = FRAME_TIMEOUT_S) -> int:
    """The code the server closes with; fails if any frame (e.g. `hello`) comes first."""
    try:
        async with asyncio.timeout(timeout_s):
            with pytest.raises(ConnectionClosed) as closed:
                await ws.recv()
    finally:
        await ws.close()
    assert closed.value.rcvd is not None, closed.value
    return closed.value.rcvd.code


async def header_outcome(instance: Instance, token: str) -> str:
    """How a WebSocket handshake with this bearer token ends: "close <code>" or
    "http 4xx" (refused before any WebSocket exists); fails on a `hello` or a 5xx."""
    try:
        ws = await ws_open(instance, {"Authorization": f"Bearer {token}"})
    except InvalidStatus as refused:
        status = refused.response.status_code
        return "http 4xx" if 400 <= status < 500 else f"http {status}"
    return f"close {await close_code(ws)}"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


@pytest.mark.parametrize("forged", CASES)
async def test_a_forged_token_is_refused_on_rest_with_401_unauthorized(
    forged: Forged, keys: Keys, instances: dict[str, Instance]
) -> None:
    token = forged.make(keys, new_user_id())
    resp = await rest_me(instances[forged.instance], bearer(token))
    assert_problem(resp, 401, "UNAUTHORIZED")


@pytest.mark.parametrize("forged", CASES)
async def test_a_forged_token_in_the_header_closes_the_websocket_with_4401(
    forged: Forged, keys: Keys, instances: dict[str, Instance]
) -> None:
    token = forged.make(keys, new_user_id())
    # An empty bearer stands for "missing": with no header at all the server waits for
    # an `auth` frame instead (see the query-string tests).
    outcome = await header_outcome(instances[forged.instance], token)
    assert outcome in forged.by_header


@pytest.mark.parametrize("forged", CASES)
async def test_a_forged_token_in_the_auth_frame_closes_the_websocket_with_4401(
    forged: Forged, keys: Keys, instances: dict[str, Instance]
) -> None:
    token = forged.make(keys, new_user_id())
    ws = await ws_open(instances[forged.instance], {})
    await ws.send(orjson.dumps({"type": "auth", "token": token}).decode())
    assert await close_code(ws) == 4401


def good_token(instance: str, keys: Keys, user_id: str) -> str:
    if instance == "rs":
        token: str = jwt.encode(claims(user_id), keys.private_pem.decode(), algorithm="RS256")
        return token
    if instance == "aud":
        return hs256(for_aud(user_id), SECRET)
    return token_for(user_id)


@pytest.mark.parametrize("instance", ["hs", "rs", "aud"])
async def test_a_good_token_is_accepted_where_the_forged_ones_are_not(
    instance: str, keys: Keys, instances: dict[str, Instance]
) -> None:
    user = new_user_id()
    token = good_token(instance, keys, user)
    resp = await rest_me(instances[instance], bearer(token))
    assert resp.status_code == 200, resp.text
    assert resp.json()["id"] == user
    ws = await ws_open(instances[instance], bearer(token))
    try:
        async with asyncio.timeout(FRAME_TIMEOUT_S):
            hello = orjson.loads(await ws.recv())
    finally:
        await ws.close()
    assert (hello["type"], hello["user_id"]) == ("hello", user)


# ---- a first frame that is not a good `auth` ------------------------------------------


def auth_text(token: str) -> str:
    return orjson.dumps({"type": "auth", "token": token}).decode()


# Each built from a valid token, so only the shape of the frame is wrong.
FIRST_FRAMES: dict[str, Callable[[str], str | bytes]] = {
    "the auth frame as binary": lambda t: auth_text(t).encode(),
    "not JSON": lambda t: f"auth {t}",
    "a ping": lambda t: '{"type":"ping"}',
    "a send": lambda t: orjson.dumps({"type": "send", "token": t}).decode(),
    "the token under another key": lambda t: orjson.dumps({"type": "auth", "jwt": t}).decode(),
    "auth with an extra field": lambda t: auth_text(t)[:-1] + ',"user_id":"admin"}',
    "a forged token then the valid one, duplicate keys": (
        lambda t: '{"type":"auth","token":"x.y.z","token":"' + t + '"}'
    ),
    "auth as an array": lambda t: orjson.dumps([{"type": "auth", "token": t}]).decode(),
    "a token over 16 KiB": lambda t: auth_text(t + "A" * 16384),
}


@pytest.mark.parametrize("make", FIRST_FRAMES.values(), ids=FIRST_FRAMES.keys())
async def test_a_first_frame_that_is_not_a_good_auth_frame_closes_with_4401(
    make: Callable[[str], str | bytes], instances: dict[str, Instance]
) -> None:
    ws = await ws_open(instances["hs"], {})
    await ws.send(make(token_for(new_user_id())))
    assert await close_code(ws) == 4401


@pytest.mark.parametrize("scheme", ["Basic", "Token", "JWT", "bearer:", ""])
async def test_a_valid_token_under_another_scheme_is_refused_on_rest(
    scheme: str, instances: dict[str, Instance]
) -> None:
    headers = {"Authorization": f"{scheme} {token_for(new_user_id())}".strip()}
    assert_problem(await rest_me(instances["hs"], headers), 401, "UNAUTHORIZED")


@pytest.mark.parametrize("scheme", ["Basic", "Token", "JWT", "bearer:", ""])
async def test_a_valid_token_under_another_scheme_closes_the_websocket_with_4401(
    scheme: str, instances: dict[str, Instance]
) -> None:
    headers = {"Authorization": f"{scheme} {token_for(new_user_id())}".strip()}
    assert await close_code(await ws_open(instances["hs"], headers)) == 4401


# ---- tokens never travel in a URL ------------------------------------------------------


def in_query(token: str) -> str:
    return f"?token={token}&access_token={token}&jwt={token}&authorization=Bearer%20{token}"


async def test_a_token_in_the_query_string_does_not_authenticate_rest(
    instances: dict[str, Instance],
) -> None:
    resp = await rest_me(instances["hs"], {}, in_query(token_for(new_user_id())))
    assert_problem(resp, 401, "UNAUTHORIZED")


async def test_a_token_in_the_query_string_does_not_authenticate_the_websocket(
    instances: dict[str, Instance],
) -> None:
    """No `hello`: the first frame must still be `auth`; a `ping` instead closes 4401."""
    ws = await ws_open(instances["hs"], {}, in_query(token_for(new_user_id())))
    await ws.send(orjson.dumps({"type": "ping"}).decode())
    assert await close_code(ws) == 4401


async def test_a_token_in_the_query_string_alone_is_closed_for_no_auth_in_time(
    instances: dict[str, Instance],
) -> None:
    ws = await ws_open(instances["hs"], {}, in_query(token_for(new_user_id())))
    assert await close_code(ws, AUTH_TIMEOUT_S + FRAME_TIMEOUT_S) == 4408


# ---- a gap: the 8 KiB limit and the WebSocket library's header line limit --------------


def just_under_limit(user_id: str) -> str:
    """A correctly signed token of 8,180 bytes: under the 8 KiB the contract allows."""
    pad = 6000
    while len(token := hs256(claims(user_id, pad="p" * pad), SECRET)) < 8180:
        pad += 1
    assert len(token) <= MAX_TOKEN_BYTES
    return token


async def test_a_token_just_under_8_kib_is_accepted_on_rest_and_in_the_auth_frame(
    instances: dict[str, Instance],
) -> None:
    user = new_user_id()
    token = just_under_limit(user)
    assert (await rest_me(instances["hs"], bearer(token))).status_code == 200
    ws = await ws_open(instances["hs"], {})
    try:
        await ws.send(orjson.dumps({"type": "auth", "token": token}).decode())
        async with asyncio.timeout(FRAME_TIMEOUT_S):
            hello = orjson.loads(await ws.recv())
    finally:
        await ws.close()
    assert (hello["type"], hello["user_id"]) == ("hello", user)


async def test_a_token_just_under_8_kib_opens_the_websocket_by_header(
    instances: dict[str, Instance],
) -> None:
    token = just_under_limit(new_user_id())
    ws = await ws_open(instances["hs"], bearer(token))
    try:
        async with asyncio.timeout(FRAME_TIMEOUT_S):
            assert orjson.loads(await ws.recv())["type"] == "hello"
    finally:
        await ws.close()
