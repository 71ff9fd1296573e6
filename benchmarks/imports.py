"""Import cost: what ``import connect_auth.httpx`` adds to httpx's own import, and what
the pytest plugin costs every pytest run, each in fresh interpreters."""

from __future__ import annotations

import statistics
import subprocess
import sys
from typing import Any

_ADAPTER = (
    "import time; t0 = time.perf_counter(); import httpx; t1 = time.perf_counter(); "
    "import connect_auth.httpx; t2 = time.perf_counter(); print(t1 - t0, t2 - t1)"
)
_PLUGIN = (
    "import pytest, time; t0 = time.perf_counter(); import connect_auth_pytest; "
    "print(time.perf_counter() - t0, 0)"
)


def imports(scale: float) -> dict[str, Any]:
    """Median milliseconds over fresh interpreters."""
    runs = 15 if scale >= 0.5 else 3
    adapter = [_run(_ADAPTER) for _ in range(runs)]
    plugin = [_run(_PLUGIN)[0] for _ in range(runs)]
    return {
        "runs": runs,
        "httpx_ms": statistics.median(a for a, _ in adapter),
        "connect_auth_httpx_added_ms": statistics.median(b for _, b in adapter),
        "pytest_plugin_ms": statistics.median(plugin),
    }


def _run(code: str) -> tuple[float, float]:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    first, second = out.stdout.split()
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
        f"## Import cost (median of {result['runs']} fresh interpreters, ms)",
        "",
        "| import | ms |",
        "|---|---|",
        f"| `import httpx` | {result['httpx_ms']:.1f} |",
        f"| `import connect_auth.httpx`, after httpx "
        f"| {result['connect_auth_httpx_added_ms']:.1f} |",
        f"| the pytest plugin, after pytest | {result['pytest_plugin_ms']:.2f} |",
    ]
