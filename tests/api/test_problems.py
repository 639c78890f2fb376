"""Every failure is an RFC 9457 problem with a contract code; request ids and body caps."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import httpx

from app.errors import ErrorCode
from tests.support import PROBLEM_JSON, Api, assert_problem, auth, new_user_id

MAX_FRAME_BYTES = 65536


async def test_unknown_path_is_a_404_problem_with_a_code(client: httpx.AsyncClient) -> None:
    resp = await client.get("/v1/no-such-thing")
    assert resp.status_code == 404
    assert resp.headers["content-type"].startswith(PROBLEM_JSON)
    problem = resp.json()
    assert problem["status"] == 404
    assert problem["code"] in {code.value for code in ErrorCode}


async def test_problem_body_has_type_title_status_detail_and_code(api: Api) -> None:
    resp = await api.call(new_user_id(), "GET", f"/v1/rooms/{uuid.uuid4()}")
    problem = assert_problem(resp, 404, "ROOM_NOT_FOUND")
    assert {"type", "title", "status", "detail", "code"} <= set(problem)
    assert all(isinstance(problem[k], str) and problem[k] for k in ("type", "title", "detail"))


async def test_missing_token_is_an_unauthorized_problem(client: httpx.AsyncClient) -> None:
    resp = await client.get("/v1/rooms")
    assert_problem(resp, 401, "UNAUTHORIZED")


async def test_malformed_json_body_is_a_validation_problem_with_errors(
    client: httpx.AsyncClient,
) -> None:
    user = new_user_id()
    resp = await client.post(
        "/v1/rooms",
        content=b'{"name": "team", "member_ids": [',
        headers={**auth(user), "Content-Type": "application/json"},
    )
    problem = assert_problem(resp, 422, "VALIDATION_FAILED")
    assert isinstance(problem["errors"], list)
    assert problem["errors"]


async def test_a_wrongly_typed_field_is_a_validation_problem_naming_it(api: Api) -> None:
    resp = await api.call(new_user_id(), "POST", "/v1/rooms", {"name": "t", "member_ids": 5})
    problem = assert_problem(resp, 422, "VALIDATION_FAILED")
    assert any("member_ids" in e["loc"] for e in problem["errors"])


async def test_body_over_64_kib_with_content_length_is_payload_too_large(
    client: httpx.AsyncClient,
) -> None:
    user = new_user_id()
    body = b'{"name": "' + b"x" * MAX_FRAME_BYTES + b'"}'
    resp = await client.post(
        "/v1/rooms", content=body, headers={**auth(user), "Content-Type": "application/json"}
    )
    assert_problem(resp, 413, "PAYLOAD_TOO_LARGE")


async def test_chunked_body_over_64_kib_is_payload_too_large(
    client: httpx.AsyncClient,
) -> None:
    user = new_user_id()

    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"name": "'
        for _ in range(20):
            yield b"x" * 8192
        yield b'"}'

    resp = await client.post(
        "/v1/rooms", content=chunks(), headers={**auth(user), "Content-Type": "application/json"}
    )
    assert_problem(resp, 413, "PAYLOAD_TOO_LARGE")
    rooms = await client.get("/v1/rooms", headers=auth(user))
    assert rooms.json()["items"] == []


async def test_chunked_body_under_the_cap_is_accepted(client: httpx.AsyncClient) -> None:
    user = new_user_id()

    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"name": "chunked", '
        yield b'"member_ids": []}'

    resp = await client.post(
        "/v1/rooms", content=chunks(), headers={**auth(user), "Content-Type": "application/json"}
    )
    assert resp.status_code == 201, resp.text


async def test_every_response_carries_a_request_id(api: Api, client: httpx.AsyncClient) -> None:
    user = new_user_id()
    responses = [
        await client.get("/healthz"),
        await client.get("/v1/nowhere"),
        await client.get("/v1/rooms"),
        await api.call(user, "GET", "/v1/me"),
        await api.call(user, "POST", "/v1/rooms", {"name": ""}),
    ]
    for resp in responses:
        assert resp.headers.get("x-request-id"), (resp.status_code, resp.request.url)


async def test_a_body_refused_by_its_content_length_still_carries_the_request_id(
    client: httpx.AsyncClient,
) -> None:
    resp = await client.post(
        "/v1/rooms",
        content=b"x" * (MAX_FRAME_BYTES + 1),
        headers={
            **auth(new_user_id()),
            "Content-Type": "application/json",
            "X-Request-ID": "too-big-1",
        },
    )
    assert_problem(resp, 413, "PAYLOAD_TOO_LARGE")
    assert resp.headers.get("x-request-id") == "too-big-1"


async def test_request_ids_differ_between_requests(client: httpx.AsyncClient) -> None:
    first, second = await client.get("/healthz"), await client.get("/healthz")
    assert first.headers["x-request-id"] != second.headers["x-request-id"]


async def test_a_sane_incoming_request_id_is_echoed(client: httpx.AsyncClient) -> None:
    resp = await client.get("/healthz", headers={"X-Request-ID": "trace-abc.123_X"})
    assert resp.headers["x-request-id"] == "trace-abc.123_X"


async def test_an_insane_incoming_request_id_is_replaced(client: httpx.AsyncClient) -> None:
    bad = "evil id\twith spaces" + "x" * 100
    resp = await client.get("/healthz", headers={"X-Request-ID": bad})
    assert resp.headers["x-request-id"]
    assert resp.headers["x-request-id"] != bad
