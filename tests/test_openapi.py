"""The committed OpenAPI document is the one the app serves, and reads well in generated clients."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from openapi_spec_validator import validate

from app.cli import render_openapi

COMMITTED = Path(__file__).resolve().parents[1] / "openapi" / "openapi.json"
METHODS = {"get", "post", "put", "patch", "delete"}


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(render_openapi())
    return loaded


def _operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (path, method, op)
        for path, item in document["paths"].items()
        for method, op in item.items()
        if method in METHODS
    ]


def test_committed_document_matches_the_app() -> None:
    assert COMMITTED.read_text() == render_openapi(), (
        "openapi/openapi.json is stale: run `chat openapi`"
    )


def test_document_is_valid_openapi(document: dict[str, Any]) -> None:
    validate(document)


def test_every_operation_has_a_snake_case_operation_id_and_a_tag(
    document: dict[str, Any],
) -> None:
    ids = []
    for path, method, op in _operations(document):
        assert re.fullmatch(r"[a-z]+(_[a-z]+)*", op["operationId"]), (path, method)
        assert op.get("tags"), (path, method)
        ids.append(op["operationId"])
    assert len(ids) == len(set(ids))


def test_every_v1_operation_documents_its_problem_responses(document: dict[str, Any]) -> None:
    for path, method, op in _operations(document):
        if not path.startswith("/v1"):
            continue
        assert {"401", "503"} <= set(op["responses"]), (path, method)
        problem = op["responses"]["401"]["content"]
        assert "application/problem+json" in problem, (path, method)
        assert op.get("security") == [{"bearerAuth": []}], (path, method)


def test_every_contract_operation_is_present(document: dict[str, Any]) -> None:
    contract = {
        ("/v1/me", "get"),
        ("/v1/users/{user_id}", "get"),
        ("/v1/rooms/direct", "post"),
        ("/v1/rooms", "post"),
        ("/v1/rooms", "get"),
        ("/v1/rooms/{room_id}", "get"),
        ("/v1/rooms/{room_id}", "patch"),
        ("/v1/rooms/{room_id}/members", "post"),
        ("/v1/rooms/{room_id}/members/{user_id}", "delete"),
        ("/v1/rooms/{room_id}/messages", "get"),
        ("/v1/rooms/{room_id}/messages", "post"),
        ("/v1/rooms/{room_id}/messages/{message_id}", "patch"),
        ("/v1/rooms/{room_id}/messages/{message_id}", "delete"),
        ("/v1/rooms/{room_id}/messages/{message_id}/receipts", "get"),
        ("/v1/rooms/{room_id}/read", "post"),
        ("/v1/presence", "get"),
        ("/healthz", "get"),
        ("/readyz", "get"),
        ("/metrics", "get"),
    }
    present = {(path, method) for path, method, _ in _operations(document)}
    assert contract <= present
