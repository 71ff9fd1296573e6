"""Every code example in README.md and docs/ runs, against the emulator, so none can rot."""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from connect_auth.testing import ConnectEmulator

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(\w+)\n(.*?)^```", re.M | re.S)


def _blocks(language: str) -> list[Any]:
    found = []
    for page in PAGES:
        for n, match in enumerate(FENCE.finditer(page.read_text())):
            if match.group(1) == language:
                found.append(pytest.param(match.group(2), id=f"{page.name}#{n}"))
    return found


def _localize(code: str, emu: ConnectEmulator) -> str:
    """Point the examples' provider URLs at the emulator's fake providers."""
    code = code.replace("https://slack.com", f"{emu.url}/provider/slack%2Facme-slack")
    code = code.replace("https://api.github.com", f"{emu.url}/provider/github%2Facme-github")
    return code.replace('"api.github.com"', f'"127.0.0.1:{emu.port}"')


def test_there_are_examples() -> None:
    """The docs hold enough examples for this file to mean something."""
    assert len(_blocks("python")) >= 15 and len(_blocks("bash")) >= 3


@pytest.mark.parametrize("code", _blocks("python"))
def test_python_example_runs(
    code: str,
    connect_emulator: ConnectEmulator,
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each Python block executes; test functions it defines are run too."""
    if "CONNECT_AUTH_REDIS_URL" in code:  # the shared-cache examples get a real Redis
        monkeypatch.setenv("CONNECT_AUTH_REDIS_URL", request.getfixturevalue("redis_server").url)
        monkeypatch.setenv("CONNECT_AUTH_CACHE_KEY", "docs example key: 32 bytes long!")
    namespace: dict[str, Any] = {"__name__": "docs_example"}
    logger = logging.getLogger("connect_auth")  # an example may turn logging on
    request.addfinalizer(lambda level=logger.level: logger.setLevel(level))
    exec(compile(_localize(code, connect_emulator), "<docs>", "exec"), namespace)
    for name, fn in list(namespace.items()):
        if not name.startswith("test_") or not callable(fn):
            continue
        # A test configured by the connect_emulator marker runs in tests/test_fixture.py's
        # inner pytest sessions; here it is only defined.
        marked = any(m.name == "connect_emulator" for m in getattr(fn, "pytestmark", []))
        if not marked:
            params = inspect.signature(fn).parameters
            fixtures = {"connect_emulator": connect_emulator, "monkeypatch": monkeypatch}
            kwargs = {name: value for name, value in fixtures.items() if name in params}
            result = fn(**kwargs)
            if inspect.iscoroutine(result):
                asyncio.run(result)


@pytest.mark.parametrize("code", _blocks("bash"))
def test_shell_example_runs(code: str, connect_emulator: ConnectEmulator) -> None:
    """connect-auth command lines in the docs exit 0 (the README's set-up lines are CI's)."""
    for line in code.strip().splitlines():
        if not line.startswith("connect-auth "):
            continue
        args = shlex.split(line)[1:]
        out = subprocess.run(
            [sys.executable, "-m", "connect_auth", *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert out.returncode == 0, (line, out.stderr)


@pytest.mark.parametrize("code", _blocks("toml"))
def test_toml_config_example_loads(code: str, tmp_path: Path) -> None:
    """Config examples load into a working emulator."""
    path = tmp_path / "connect.toml"
    path.write_text(code)
    with ConnectEmulator.from_file(path) as emu:
        assert any(spec.uid for spec in emu.state.connectors.values())


def test_built_docs_have_no_raw_roles_private_paths_or_internal_notes(tmp_path: Path) -> None:
    """The rendered site: no Sphinx roles shown as text, no private module paths, no
    review notes (the reference is generated from docstrings, so this checks them too)."""
    site = tmp_path / "site"
    out = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        timeout=300,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    raw_role = re.compile(r":(?:func|meth|class|attr|data|mod|exc|obj):`")
    private = re.compile(r"connect_auth\._[a-z]")
    notes = re.compile(r"the seed's|margin of the|review note|\bTODO\b|\bFIXME\b")
    # Built-in types' docstrings, as shown for a class attribute's value by mistake.
    builtins_doc = re.compile(
        r"Create a new string object|bool\(x\) -> bool|Convert a string or number"
    )
    pages = [p for p in site.rglob("*.html") if "search" not in p.parts]
    assert len(pages) >= 10
    for page in pages:
        text = re.sub(r"<[^>]+>", " ", page.read_text(encoding="utf-8"))  # what readers see
        for pattern in (raw_role, private, notes, builtins_doc):
            found = pattern.search(text)
            assert found is None, (
                page.relative_to(site),
                text[found.start() - 80 : found.end() + 80],
            )
