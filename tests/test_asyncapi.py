"""The committed AsyncAPI document is generated from the frame models, complete and valid."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from app.ws import asyncapi, frames

ROOT = Path(__file__).resolve().parents[1]
COMMITTED = ROOT / "openapi" / "asyncapi.yaml"
CACHE = ROOT / ".cache" / "asyncapi-parser"
VALIDATOR = ROOT / "tests" / "tools" / "validate_asyncapi.mjs"

CONTRACT_CLIENT = {"auth", "send", "sync", "delivered", "read", "typing", "presence.watch", "ping"}
CONTRACT_SERVER = {
    "hello",
    "message",
    "message.updated",
    "receipt",
    "typing",
    "presence",
    "room",
    "ack",
    "error",
    "pong",
}


def test_committed_document_matches_the_frame_models() -> None:
    assert COMMITTED.read_text() == asyncapi.render(), (
        "openapi/asyncapi.yaml is stale: run `chat openapi`"
    )


def _names(operation: str) -> set[str]:
    document = yaml.safe_load(COMMITTED.read_text())
    messages = document["components"]["messages"]
    refs = document["operations"][operation]["messages"]
    return {messages[ref["$ref"].rsplit("/", 1)[1]]["name"] for ref in refs}


def test_every_client_frame_of_the_contract_is_documented() -> None:
    assert _names("clientFrames") == CONTRACT_CLIENT
    assert frames.CLIENT_TYPES == CONTRACT_CLIENT, "the parser accepts exactly these types"


def test_every_server_frame_of_the_contract_is_documented() -> None:
    assert _names("serverFrames") >= CONTRACT_SERVER


@pytest.fixture(scope="session")
def parser_dir() -> Path:
    npm = shutil.which("npm")
    if npm is None:
        pytest.skip("npm is needed to run the reference AsyncAPI parser")
    if not (CACHE / "node_modules" / "@asyncapi" / "parser").exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                npm,
                "install",
                "--no-audit",
                "--no-fund",
                "--silent",
                "--prefix",
                str(CACHE),
                "@asyncapi/parser@3",
            ],
            check=True,
            timeout=240,
        )
    return CACHE


@pytest.mark.timeout(300)
def test_document_is_valid_for_the_reference_parser(parser_dir: Path) -> None:
    script = parser_dir / "validate.mjs"
    shutil.copyfile(VALIDATOR, script)
    result = subprocess.run(
        ["node", str(script), str(COMMITTED)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "VALID" in result.stdout
