"""Import cost: what ``import connect_auth.httpx`` adds to httpx's own import, and what
the pytest plugin costs every pytest run, each in fresh interpreters.

Measured as users get the package: a wheel built from this checkout, installed
(not editable) in a folder of its own and compiled to bytecode, found ahead of the
checkout's editable install.
"""

from __future__ import annotations

import compileall
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

_ADAPTER = (
    "import time; t0 = time.perf_counter(); import httpx; t1 = time.perf_counter(); "
    "import connect_auth.httpx; t2 = time.perf_counter(); "
    "import connect_auth; print(t1 - t0, t2 - t1, connect_auth.__file__)"
)
_PLUGIN = (
    "import pytest, time; t0 = time.perf_counter(); import connect_auth_pytest; "
    "print(time.perf_counter() - t0, 0, connect_auth_pytest.__file__)"
)


def imports(scale: float) -> dict[str, Any]:
    """Median milliseconds over fresh interpreters."""
    runs = 15 if scale >= 0.5 else 3
    with tempfile.TemporaryDirectory() as scratch:
        site = _install_wheel(Path(scratch))
        adapter = [_run(_ADAPTER, site) for _ in range(runs)]
        plugin = [_run(_PLUGIN, site)[0] for _ in range(runs)]
    return {
        "runs": runs,
        "installed": "wheel, compiled",
        "httpx_ms": statistics.median(a for a, _ in adapter),
        "connect_auth_httpx_added_ms": statistics.median(b for _, b in adapter),
        "pytest_plugin_ms": statistics.median(plugin),
    }


def _install_wheel(scratch: Path) -> Path:
    """This checkout as a wheel, installed without dependencies into ``scratch/site``
    and compiled (the dependencies come from the running environment)."""
    wheels, site, source = scratch / "wheels", scratch / "site", scratch / "source"
    # Built from a copy: a build in the checkout would leave a build/ folder in it.
    shutil.copytree(
        ROOT,
        source,
        ignore=shutil.ignore_patterns(".*", "build", "*.egg-info", "__pycache__", "docs"),
    )
    pip = [sys.executable, "-m", "pip", "-q", "--disable-pip-version-check"]
    subprocess.run([*pip, "wheel", "--no-deps", "-w", str(wheels), str(source)], check=True)
    wheel = next(wheels.glob("connect_auth-*.whl"))
    subprocess.run([*pip, "install", "--no-deps", "--target", str(site), str(wheel)], check=True)
    if not compileall.compile_dir(site, quiet=1):
        raise RuntimeError(f"the installed wheel in {site} did not compile")
    return site


def _run(code: str, site: Path) -> tuple[float, float]:
    env = {**os.environ, "PYTHONPATH": str(site)}
    # Run from the install folder: ``-c`` puts the working directory first on the path.
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env, cwd=site
    )
    first, second, where = out.stdout.split()
    if not Path(where).is_relative_to(site):  # the editable checkout would time the wrong thing
        raise RuntimeError(f"imported {where}, not the installed wheel in {site}")
    return float(first) * 1e3, float(second) * 1e3


def targets(result: dict[str, Any]) -> list[tuple[str, bool, str]]:
    """The import-cost target as (name, passed, evidence)."""
    added = result["connect_auth_httpx_added_ms"]
    return [
        (
            "import connect_auth.httpx adds <= 30 ms to httpx's import",
            added <= 30.0,
            f"{added:.1f} ms on top of httpx's {result['httpx_ms']:.1f} ms; "
            f"pytest plugin {result['pytest_plugin_ms']:.2f} ms",
        )
    ]


def markdown(result: dict[str, Any]) -> list[str]:
    """The import-cost section of the report."""
    return [
        "",
        f"## Import cost (median of {result['runs']} fresh interpreters, ms; "
        "the package installed from its wheel, with bytecode)",
        "",
        "| import | ms |",
        "|---|---|",
        f"| `import httpx` | {result['httpx_ms']:.1f} |",
        f"| `import connect_auth.httpx`, after httpx "
        f"| {result['connect_auth_httpx_added_ms']:.1f} |",
        f"| the pytest plugin, after pytest | {result['pytest_plugin_ms']:.2f} |",
    ]
