"""Identity: who the caller is comes from a verified JWT and from nowhere else."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

import httpx
import pytest
from jose import jwt

from app.auth.tokens import ConfigError, TokenVerifier
from app.errors import Unauthorized
from app.settings import Settings
from tests.support import TEST_SECRET, Api, assert_problem, new_user_id, token_for

AUDIENCE = "chat-api"
ISSUER = "https://id.example.com"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _segment(obj: dict[str, Any]) -> str:
    return _b64(json.dumps(obj, separators=(",", ":")).encode())


def _claims(sub: str | None = None, ttl_s: int = 3600, **extra: Any) -> dict[str, Any]:
    now = int(time.time())
    claims: dict[str, Any] = {"sub": sub or new_user_id(), "iat": now, "exp": now + ttl_s}
    claims.update(extra)
    return claims


def _signed(
    claims: dict[str, Any], *, alg: str = "HS256", secret: str = TEST_SECRET, header_alg: str = ""
) -> str:
    """A token signed by hand, so its header and claims can be anything JSON can carry."""
    header = {"alg": header_alg or alg, "typ": "JWT"}
    signing_input = f"{_segment(header)}.{_segment(claims)}"
    digest = {"HS256": hashlib.sha256, "HS384": hashlib.sha384}[alg]
    signature = hmac.new(secret.encode(), signing_input.encode(), digest).digest()
    return f"{signing_input}.{_b64(signature)}"


async def _me(client: httpx.AsyncClient, token: str) -> httpx.Response:
    return await client.get("/v1/me", headers={"Authorization": f"Bearer {token}"})


# ---- refusals on a protected endpoint ------------------------------------------------------


async def test_a_request_without_authorization_is_unauthorized(client: httpx.AsyncClient) -> None:
    assert_problem(await client.get("/v1/me"), 401, "UNAUTHORIZED")


async def test_a_non_bearer_scheme_is_unauthorized(client: httpx.AsyncClient) -> None:
    basic = base64.b64encode(f"{new_user_id()}:pw".encode()).decode()
    resp = await client.get("/v1/me", headers={"Authorization": f"Basic {basic}"})
    assert_problem(resp, 401, "UNAUTHORIZED")


async def test_a_valid_token_under_a_non_bearer_scheme_is_unauthorized(
    client: httpx.AsyncClient,
) -> None:
    resp = await client.get(
        "/v1/me", headers={"Authorization": f"Token {token_for(new_user_id())}"}
    )
    assert_problem(resp, 401, "UNAUTHORIZED")


async def test_a_garbage_token_is_unauthorized(client: httpx.AsyncClient) -> None:
    assert_problem(await _me(client, "not-a.jwt.at-all"), 401, "UNAUTHORIZED")


async def test_a_token_in_the_query_string_is_not_accepted(client: httpx.AsyncClient) -> None:
    token = token_for(new_user_id())
    for param in ("access_token", "token"):
        resp = await client.get("/v1/me", params={param: token})
        assert_problem(resp, 401, "UNAUTHORIZED")


async def test_an_alg_none_token_is_unauthorized(client: httpx.AsyncClient) -> None:
    token = f"{_segment({'alg': 'none', 'typ': 'JWT'})}.{_segment(_claims())}."
    assert_problem(await _me(client, token), 401, "UNAUTHORIZED")


async def test_an_expired_token_is_unauthorized(client: httpx.AsyncClient) -> None:
    token = _signed(_claims(ttl_s=-60))
    assert_problem(await _me(client, token), 401, "UNAUTHORIZED")


async def test_a_token_signed_with_another_secret_is_unauthorized(
    client: httpx.AsyncClient,
) -> None:
    token = _signed(_claims(), secret="another-secret-that-is-also-long-enough!!")
    assert_problem(await _me(client, token), 401, "UNAUTHORIZED")


async def test_a_token_without_exp_is_unauthorized(client: httpx.AsyncClient) -> None:
    claims = _claims()
    del claims["exp"]
    assert_problem(await _me(client, _signed(claims)), 401, "UNAUTHORIZED")


async def test_a_token_without_sub_is_unauthorized(client: httpx.AsyncClient) -> None:
    claims = _claims()
    del claims["sub"]
    assert_problem(await _me(client, _signed(claims)), 401, "UNAUTHORIZED")


async def test_an_empty_sub_is_unauthorized(client: httpx.AsyncClient) -> None:
    claims = _claims()
    claims["sub"] = ""
    assert_problem(await _me(client, _signed(claims)), 401, "UNAUTHORIZED")


async def test_a_non_string_sub_is_unauthorized(client: httpx.AsyncClient) -> None:
    claims = _claims()
    claims["sub"] = 12345
    assert_problem(await _me(client, _signed(claims)), 401, "UNAUTHORIZED")


async def test_a_sub_longer_than_64_characters_is_unauthorized(client: httpx.AsyncClient) -> None:
    token = _signed(_claims(sub="s" * 65))
    assert_problem(await _me(client, token), 401, "UNAUTHORIZED")


async def test_a_sub_of_exactly_64_characters_is_accepted(client: httpx.AsyncClient) -> None:
    sub = new_user_id("edge").ljust(64, "x")
    resp = await _me(client, _signed(_claims(sub=sub)))
    assert resp.status_code == 200, resp.text
    assert resp.json()["id"] == sub


async def test_a_token_over_8_kib_is_unauthorized(client: httpx.AsyncClient) -> None:
    token = _signed(_claims(pad="p" * 8192))
    assert len(token) > 8192
    assert_problem(await _me(client, token), 401, "UNAUTHORIZED")


async def test_a_token_just_under_8_kib_is_accepted(client: httpx.AsyncClient) -> None:
    token = _signed(_claims(pad="p" * 5800))
    assert 7000 < len(token) <= 8192
    resp = await _me(client, token)
    assert resp.status_code == 200, resp.text


async def test_a_token_issued_in_the_future_is_unauthorized(client: httpx.AsyncClient) -> None:
    token = _signed(_claims(iat=int(time.time()) + 3600))
    assert_problem(await _me(client, token), 401, "UNAUTHORIZED")


async def test_a_genuine_hs384_token_is_unauthorized(client: httpx.AsyncClient) -> None:
    token = jwt.encode(_claims(), TEST_SECRET, algorithm="HS384")
    assert_problem(await _me(client, token), 401, "UNAUTHORIZED")


async def test_a_token_whose_header_says_rs256_is_unauthorized(client: httpx.AsyncClient) -> None:
    token = _signed(_claims(), header_alg="RS256")
    assert_problem(await _me(client, token), 401, "UNAUTHORIZED")


@pytest.mark.parametrize(
    "claim",
    [
        pytest.param({"exp": 10**20}, id="exp-past-the-platform-clock"),
        pytest.param({"exp": 253402300800}, id="exp-after-year-9999"),
        pytest.param({"exp": float("inf")}, id="exp-infinite"),
        pytest.param({"iat": float("inf")}, id="iat-infinite"),
        pytest.param({"nbf": float("-inf")}, id="nbf-infinite"),
        pytest.param({"exp": True}, id="exp-boolean"),
        pytest.param({"exp": "soon"}, id="exp-text"),
    ],
)
async def test_a_token_with_an_unusable_time_claim_is_unauthorized(
    client: httpx.AsyncClient, claim: dict[str, Any]
) -> None:
    assert_problem(await _me(client, _signed(_claims(**claim))), 401, "UNAUTHORIZED")


@pytest.mark.parametrize(
    "claim",
    [
        pytest.param({"sub": "nul\x00inside"}, id="sub-with-nul"),
        pytest.param({"sub": "half\ud800surrogate"}, id="sub-with-lone-surrogate"),
        pytest.param({"name": "nul\x00inside"}, id="name-with-nul"),
        pytest.param({"name": "half\udfffsurrogate"}, id="name-with-lone-surrogate"),
        pytest.param({"name": 42}, id="name-not-a-string"),
    ],
)
async def test_a_token_with_unstorable_text_is_unauthorized(
    client: httpx.AsyncClient, claim: dict[str, Any]
) -> None:
    assert_problem(await _me(client, _signed(_claims(**claim))), 401, "UNAUTHORIZED")


# ---- first sight and the actor ------------------------------------------------------------


async def test_the_first_token_creates_the_user_with_its_name(client: httpx.AsyncClient) -> None:
    sub = new_user_id("first")
    resp = await _me(client, token_for(sub, name="Ada"))
    assert resp.status_code == 200, resp.text
    me = resp.json()
    assert me["id"] == sub
    assert me["name"] == "Ada"


async def test_a_later_token_with_a_new_name_renames_the_user(
    api: Api, client: httpx.AsyncClient
) -> None:
    sub, peer = new_user_id("renamed"), new_user_id("peer")
    await _me(client, token_for(sub, name="Old Name"))
    await _me(client, token_for(sub, name="New Name"))
    room = await api.direct(peer, sub)
    names = {m["user_id"]: m["name"] for m in room["members"]}
    assert names[sub] == "New Name"


async def test_a_later_token_without_a_name_keeps_the_stored_name(
    client: httpx.AsyncClient,
) -> None:
    sub = new_user_id("keeps")
    await _me(client, token_for(sub, name="Grace"))
    resp = await _me(client, token_for(sub))
    assert resp.json()["name"] == "Grace"


async def test_an_owner_id_in_a_group_body_is_a_validation_failure(api: Api) -> None:
    caller, other = new_user_id("caller"), new_user_id("usurper")
    resp = await api.call(
        caller, "POST", "/v1/rooms", {"name": "team", "member_ids": [], "owner_id": other}
    )
    assert_problem(resp, 422, "VALIDATION_FAILED")


async def test_the_token_subject_owns_the_group_it_creates(api: Api) -> None:
    caller, other = new_user_id("caller"), new_user_id("other")
    room = await api.group(caller, other)
    roles = {m["user_id"]: m["role"] for m in room["members"]}
    assert roles == {caller: "owner", other: "member"}


# ---- configuration and audience/issuer ---------------------------------------------------


def _settings(**kw: Any) -> Settings:
    return Settings(_env_file=None, **kw)


def test_an_hs256_secret_shorter_than_32_bytes_is_a_config_error() -> None:
    with pytest.raises(ConfigError):
        TokenVerifier(_settings(jwt_secret="short", jwt_algorithms=["HS256"]), "short")


def test_an_hs256_secret_of_32_bytes_is_accepted() -> None:
    secret = "k" * 32
    verifier = TokenVerifier(_settings(jwt_secret=secret, jwt_algorithms=["HS256"]), secret)
    assert verifier.verify(jwt.encode(_claims(sub="alice"), secret)).sub == "alice"


def test_mixing_hmac_and_public_key_algorithms_is_a_config_error() -> None:
    settings = _settings(
        jwt_secret=TEST_SECRET,
        jwt_public_key="-----BEGIN PUBLIC KEY-----\nMFkw\n-----END PUBLIC KEY-----\n",
        jwt_algorithms=["HS256", "RS256"],
    )
    with pytest.raises(ConfigError):
        TokenVerifier(settings, TEST_SECRET)


def test_an_unknown_algorithm_is_a_config_error() -> None:
    settings = _settings(jwt_secret=TEST_SECRET, jwt_algorithms=["none"])
    with pytest.raises(ConfigError):
        TokenVerifier(settings, TEST_SECRET)


@pytest.fixture
def scoped_verifier() -> TokenVerifier:
    settings = _settings(
        jwt_secret=TEST_SECRET,
        jwt_algorithms=["HS256"],
        jwt_audience=AUDIENCE,
        jwt_issuer=ISSUER,
    )
    return TokenVerifier(settings, TEST_SECRET)


def test_a_token_with_the_configured_audience_and_issuer_passes(
    scoped_verifier: TokenVerifier,
) -> None:
    token = jwt.encode(_claims(sub="alice", aud=AUDIENCE, iss=ISSUER), TEST_SECRET)
    assert scoped_verifier.verify(token).sub == "alice"


@pytest.mark.parametrize(
    "claims",
    [
        pytest.param({"aud": "someone-else", "iss": ISSUER}, id="wrong-audience"),
        pytest.param({"iss": ISSUER}, id="missing-audience"),
        pytest.param({"aud": AUDIENCE, "iss": "https://evil.example.com"}, id="wrong-issuer"),
        pytest.param({"aud": AUDIENCE}, id="missing-issuer"),
    ],
)
def test_a_token_without_the_configured_audience_or_issuer_is_refused(
    scoped_verifier: TokenVerifier, claims: dict[str, Any]
) -> None:
    token = jwt.encode(_claims(**claims), TEST_SECRET)
    with pytest.raises(Unauthorized):
        scoped_verifier.verify(token)
