"""What the Dockerfile's image runs, run here: the wheel installed into a clean virtual
environment, started from a working directory holding only alembic.ini and migrations/
(as /srv in the image), with the image's environment and its HEALTHCHECK command.

No Docker engine runs on this machine, so the image itself is not built; this exercises
the same install, the same entrypoint and the same probe."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.cluster import free_port
from tests.support import TEST_SECRET, Stores

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"

pytestmark = pytest.mark.timeout(400)


def _healthcheck_command() -> str:
    match = re.search(r'CMD python -c "(.+)"\n', DOCKERFILE.read_text())
    assert match, "the Dockerfile has a python HEALTHCHECK"
    return match.group(1)


@pytest.fixture(scope="module")
def image_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    build = tmp_path_factory.mktemp("image")
    wheels = build / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheels), str(ROOT)],
        check=True,
        timeout=240,
    )
    venv = build / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    wheel = next(wheels.glob("chat_backend-*.whl"))
    subprocess.run(
        [str(venv / "bin" / "pip"), "install", "-q", str(wheel)], check=True, timeout=300
    )
    return venv


@pytest.fixture
def served(image_venv: Path, stores: Stores, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    workdir = tmp_path / "srv"
    workdir.mkdir()
    shutil.copy(ROOT / "alembic.ini", workdir)
    shutil.copytree(ROOT / "migrations", workdir / "migrations")
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("CHAT_")},
        "CHAT_HOST": "127.0.0.1",
        "CHAT_PORT": str(port),
        "CHAT_DATA_DIR": str(tmp_path / "data"),
        "CHAT_DATABASE_URL": stores.database_url,
        "CHAT_REDIS_URL": stores.redis_url,
        "CHAT_JWT_SECRET": TEST_SECRET,
    }
    proc = subprocess.Popen(
        [str(image_venv / "bin" / "chat"), "serve"],
        cwd=workdir,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
            try:
                if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.3)
        yield base, image_venv
    finally:
        proc.terminate()
        proc.wait(20)


def test_the_installed_wheel_serves_and_passes_the_image_healthcheck(
    served: tuple[str, Path],
) -> None:
    base, venv = served
    assert httpx.get(f"{base}/readyz", timeout=5).json()["status"] == "ready"
    probe = _healthcheck_command().replace("127.0.0.1:8000", base.removeprefix("http://"))
    result = subprocess.run(
        [str(venv / "bin" / "python"), "-c", probe], capture_output=True, timeout=30, check=False
    )
    assert result.returncode == 0, result.stderr
    demo = httpx.get(f"{base}/demo/", timeout=5)
    assert demo.status_code == 200, "the demo's static files ship in the wheel"
    assert "demo.js" in demo.text
