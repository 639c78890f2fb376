"""Clients generated from the committed OpenAPI document, driven against a real `chat serve`.

The document is read from disk when a test session starts (never from the app), so these
tests check exactly what a user of `openapi/openapi.json` gets."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from tests.cluster import Instance
from tests.support import Stores

ROOT = Path(__file__).resolve().parents[2]
SPEC = ROOT / "openapi" / "openapi.json"

# A proxy nobody listens on: a generator that tried to reach the network would fail
# instead of quietly depending on it.
OFFLINE = {
    "HTTP_PROXY": "http://127.0.0.1:9",
    "HTTPS_PROXY": "http://127.0.0.1:9",
    "http_proxy": "http://127.0.0.1:9",
    "https_proxy": "http://127.0.0.1:9",
    "NO_PROXY": "",
    "no_proxy": "",
}


def run(
    cmd: Sequence[str | Path],
    *,
    timeout_s: float,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    offline: bool = False,
) -> subprocess.CompletedProcess[str]:
    """Run a command with a bounded time; output captured (stdout and stderr merged)."""
    full_env = {**os.environ, **(env or {}), **(OFFLINE if offline else {})}
    try:
        return subprocess.run(
            [str(part) for part in cmd],
            cwd=cwd,
            env=full_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=timeout_s,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        # Always bytes (or None), whatever `text` says.
        output = exc.output.decode(errors="replace") if isinstance(exc.output, bytes) else ""
        pytest.fail(f"{cmd[0]} timed out after {timeout_s}s:\n{output}")


def described(result: subprocess.CompletedProcess[str]) -> str:
    return f"`{' '.join(result.args)}` exited {result.returncode}:\n{result.stdout}"


@pytest.fixture(scope="session")
def server(stores: Stores, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Instance]:
    """One real server process for the generated clients."""
    instance = Instance("clients", stores, tmp_path_factory.mktemp("clients"))
    try:
        instance.start()
        yield instance
    finally:
        instance.stop()
