"""compose.yaml: valid for Compose, and the scale-out the README describes."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "compose.yaml"
NGINX = ROOT / "deploy" / "nginx.conf"


def _compose_command() -> list[str] | None:
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    if shutil.which("docker"):
        probe = subprocess.run(
            ["docker", "compose", "version"], capture_output=True, timeout=30, check=False
        )
        if probe.returncode == 0:
            return ["docker", "compose"]
    return None


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return loaded


def test_compose_file_is_valid_for_compose() -> None:
    command = _compose_command()
    if command is None:
        pytest.skip("no Compose client (apt-get install docker-compose) to validate with")
    result = subprocess.run(
        [*command, "-f", str(COMPOSE), "config", "-q"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_compose_runs_two_replicas_on_shared_stores(compose: dict[str, Any]) -> None:
    services = compose["services"]
    chat = services["chat"]
    assert chat["deploy"]["replicas"] >= 2
    env = chat["environment"]
    assert "@postgres:5432/" in env["CHAT_DATABASE_URL"]
    assert env["CHAT_REDIS_URL"].startswith("redis://redis:6379")
    assert env["CHAT_JWT_SECRET"], "every replica must share one secret"
    assert set(chat["depends_on"]) == {"postgres", "redis"}
    assert {"postgres", "redis", "chat", "lb"} <= set(services)


def test_the_load_balancer_passes_websocket_upgrades(compose: dict[str, Any]) -> None:
    lb = compose["services"]["lb"]
    assert any("deploy/nginx.conf" in volume for volume in lb["volumes"])
    conf = NGINX.read_text()
    assert "proxy_set_header Upgrade $http_upgrade;" in conf
    assert "proxy_set_header Connection $connection_upgrade;" in conf
    assert "proxy_http_version 1.1;" in conf
    assert "server chat:8000;" in conf


def test_readme_scale_out_section_matches_the_compose_file(compose: dict[str, Any]) -> None:
    readme = (ROOT / "README.md").read_text()
    port = compose["services"]["lb"]["ports"][0].split(":")[0]
    assert "compose.yaml" in readme
    assert f"port {port}" in readme
    assert "deploy/nginx.conf" in readme
    assert "--scale chat=" in readme
