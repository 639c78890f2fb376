"""TypeScript types generated from openapi/openapi.json by openapi-typescript, used through
openapi-fetch: a small strict program (tests/clients/ts/main.ts) must type-check and, run
under Node, work against a real server; a file of deliberate misuses (ts/misuse.ts) must be
refused by tsc line by line, which proves the generated types are real and not `any`.

The npm packages are pinned in ts/package.json and ts/package-lock.json and installed once
into .cache/ts-client (reinstalled when the pins or Node change). Skipped without node/npm."""

from __future__ import annotations

import fcntl
import hashlib
import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.clients.conftest import ROOT, SPEC, described, run
from tests.cluster import Instance
from tests.support import new_user_id, token_for

PROJECT = Path(__file__).resolve().parent / "ts"
CACHE = ROOT / ".cache" / "ts-client"
PINS = ("package.json", "package-lock.json")
SOURCES = ("tsconfig.json", "main.ts", "misuse.ts")
MIN_NODE = 18  # global fetch
INSTALL_TIMEOUT_S = 300
STEP_TIMEOUT_S = 60
EXPECT = re.compile(r"//\s*expect-error\s+(TS\d+)\s*$")
DIAGNOSTIC = re.compile(r"^(?P<file>[^\s(]+)\((?P<line>\d+),\d+\): error (?P<code>TS\d+):", re.M)


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"`{name}` not on PATH: the TypeScript client check needs Node.js and npm")
    return path


@pytest.fixture(scope="session")
def node() -> str:
    node = tool("node")
    tool("npm")
    version = run([node, "--version"], timeout_s=STEP_TIMEOUT_S).stdout.strip()
    if int(version.lstrip("v").split(".")[0]) < MIN_NODE:
        pytest.skip(f"Node {version} is older than {MIN_NODE} (no global fetch)")
    return node


@pytest.fixture(scope="session")
def toolchain(node: str) -> Path:
    """node_modules with the pinned packages, installed with `npm ci` once per pin change."""
    npm = tool("npm")
    node_version = run([node, "--version"], timeout_s=STEP_TIMEOUT_S).stdout.strip()
    digest = hashlib.sha256(node_version.encode())
    for name in PINS:
        digest.update((PROJECT / name).read_bytes())
    stamp = digest.hexdigest()
    CACHE.mkdir(parents=True, exist_ok=True)
    with (CACHE / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # test workers share the cache: one installs
        stamp_file = CACHE / ".stamp"
        modules = CACHE / "node_modules"
        if not modules.is_dir() or not stamp_file.exists() or stamp_file.read_text() != stamp:
            shutil.rmtree(modules, ignore_errors=True)
            stamp_file.unlink(missing_ok=True)
            for name in PINS:
                shutil.copyfile(PROJECT / name, CACHE / name)
            result = run(
                [npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error"],
                cwd=CACHE,
                timeout_s=INSTALL_TIMEOUT_S,
            )
            assert result.returncode == 0, described(result)
            stamp_file.write_text(stamp)
    return modules


@pytest.fixture(scope="session")
def project(node: str, toolchain: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The program's sources next to schema.d.ts generated from the committed document."""
    work = tmp_path_factory.mktemp("ts-client")
    for name in ("package.json", *SOURCES):  # package.json: "type": "module" for Node
        shutil.copyfile(PROJECT / name, work / name)
    (work / "node_modules").symlink_to(toolchain, target_is_directory=True)
    result = run(
        [
            node,
            toolchain / "openapi-typescript" / "bin" / "cli.js",
            SPEC,
            # A default value does not make a request field required.
            *("--default-non-nullable", "false"),
            *("--output", work / "schema.d.ts"),
        ],
        cwd=work,
        timeout_s=STEP_TIMEOUT_S,
        offline=True,
    )
    assert result.returncode == 0, described(result)
    return work


def tsc(node: str, project: Path, *args: str) -> tuple[bool, str]:
    result = run(
        [node, project / "node_modules" / "typescript" / "bin" / "tsc", "--pretty", "false", *args],
        cwd=project,
        timeout_s=STEP_TIMEOUT_S,
    )
    return result.returncode == 0, result.stdout


def test_program_type_checks_and_runs_against_a_live_server(
    node: str, project: Path, server: Instance
) -> None:
    ok, output = tsc(node, project, "-p", "tsconfig.json", "--noEmit")
    assert ok, f"main.ts does not type-check against the generated schema:\n{output}"
    ok, output = tsc(node, project, "-p", "tsconfig.json")
    assert ok, output

    user, peer = new_user_id("ts"), new_user_id("peer")
    result = run(
        [node, project / "out" / "main.js"],
        cwd=project,
        env={
            "CHAT_BASE_URL": server.http,
            "CHAT_TOKEN": token_for(user, "Tess"),
            "CHAT_PEER_ID": peer,
        },
        timeout_s=STEP_TIMEOUT_S,
    )
    assert result.returncode == 0, described(result)
    printed: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])

    assert printed["me"] == {"id": user, "name": "Tess", "online": False}
    room = printed["room"]
    assert room["kind"] == "group"
    assert sorted(room["members"], key=lambda m: m["role"]) == [
        {"user_id": peer, "role": "member"},
        {"user_id": user, "role": "owner"},
    ]
    sent = printed["sent"]
    assert (sent["seq"], sent["body"], sent["sender_id"]) == (1, "hello from typescript", user)
    assert printed["history"] == [{"id": sent["id"], "seq": 1, "body": "hello from typescript"}]
    assert printed["next_cursor"] is None
    error = printed["error"]
    assert (error["status"], error.get("code")) == (404, "ROOM_NOT_FOUND"), error
    assert error["content_type"].startswith("application/problem+json"), error


def test_misuse_of_the_generated_types_is_refused(node: str, project: Path) -> None:
    expected = {
        number: match.group(1)
        for number, line in enumerate((project / "misuse.ts").read_text().splitlines(), 1)
        if (match := EXPECT.search(line))
    }
    assert expected, "misuse.ts marks no line with `// expect-error TSnnnn`"
    config = {"extends": "./tsconfig.json", "files": ["misuse.ts"]}
    (project / "tsconfig.misuse.json").write_text(json.dumps(config))

    ok, output = tsc(node, project, "-p", "tsconfig.misuse.json", "--noEmit")
    assert not ok, "tsc accepted misuse.ts: the generated types are not checking anything"

    found: dict[int, set[str]] = {}
    for diagnostic in DIAGNOSTIC.finditer(output):
        assert diagnostic["file"] == "misuse.ts", output
        found.setdefault(int(diagnostic["line"]), set()).add(diagnostic["code"])
    missed = {line: code for line, code in expected.items() if code not in found.get(line, set())}
    unexpected = {line: codes for line, codes in found.items() if line not in expected}
    assert not missed, f"misuses tsc let through (line: expected error): {missed}\n{output}"
    assert not unexpected, f"misuse.ts fails where it should not: {unexpected}\n{output}"
