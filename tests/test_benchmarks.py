"""Smoke test: every benchmark case runs end to end at a tiny size and reports."""

from __future__ import annotations

import json
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
