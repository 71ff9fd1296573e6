"""Every benchmark case runs end to end at a tiny size, and the docs quote one run."""

from __future__ import annotations

import json
import re
from pathlib import Path

from benchmarks import run


def test_benchmark_smoke(tmp_path: Path) -> None:
    """Every case runs; the report, JSON and chart are written; exact counts hold."""
    run.main(["--scale", "0.003", "--out", str(tmp_path)])  # timing targets are noise here
    results = json.loads((tmp_path / "results.json").read_text())
    for case in run.CASES:
        assert case in results
    assert (tmp_path / "chart.png").read_bytes().startswith(b"\x89PNG")
    report = (tmp_path / "results.md").read_text()
    assert "| connect_auth |" in report and "PASS" in report
    for mode in ("sync", "async"):
        assert results["cold_herd"][mode]["connect_auth"] == {"calls": 1, "failures": 0}
    assert results["storm"]["connect_auth"] == {"refreshes": 1, "failures": 0}
    assert results["cache_scaling"]["cache_size"] == 100
    per = results["per_request"]
    assert {
        "httpx sync",
        "httpx2 sync",
        "httpx async",
        "requests",
        "aiohttp",
        "aiohttp over loopback",
        "niquests sync",
    } <= set(per)
    assert "static header (hand-written middleware)" in per["aiohttp"]
    assert "static header (niquests BearerTokenAuth)" in per["niquests sync"]
    assert all(row["connect_auth"] > 0 for row in per.values() if isinstance(row, dict))
    names = {t["name"] for t in results["targets"]}
    assert "cached get_token >= 10x faster than vercel-connect" in names
    counted = results["bytecodes"]["per_request"]["httpx sync"]
    assert counted["static header"] < counted["connect_auth"] < counted["connect_auth, Slack rule"]
    over_tls = results["tls"]["sequential"]
    assert over_tls["connect_auth async aget_token"]["connections"] == 1  # one pool per loop
    assert over_tls["connect_auth sync get_token"]["connections"] == 1
    fetch_engine = results["engine"]
    assert fetch_engine["rollover"]["connect_calls"] >= 1
    assert "rollover (sync get_token): no caller waited on Connect" in names


def test_the_readme_and_the_results_page_quote_the_results() -> None:
    """One set of numbers: results.md and the README's summary are made from
    results.json, and the README shows the run's missed targets as missed."""
    from benchmarks.run import markdown
    from benchmarks.summary import quoted, summary

    root = Path(__file__).resolve().parent.parent
    results = json.loads((root / "docs/benchmarks/results.json").read_text())
    checks = [(t["name"], t["pass"], t["evidence"]) for t in results["targets"]]
    assert (root / "docs/benchmarks/results.md").read_text() == markdown(results, checks)
    readme = (root / "README.md").read_text()
    assert quoted(readme) == summary(results)
    for name, ok, _ in checks:
        assert (f"FAIL {name}" in readme) is not ok
    # No other page or paragraph states a measured time of its own.
    outside = readme.replace(quoted(readme) or "", "")
    for page in [outside, *(p.read_text() for p in (root / "docs").glob("*.md"))]:
        assert not re.search(r"\d(\.\d+)? ?(µs|us)\b|latest run", page, re.I)
