"""The benchmark numbers the README quotes, made from ``results.json`` alone.

`benchmarks.run` writes this summary into the README between two markers, and a
test checks that the README, ``results.md`` and ``results.json`` agree, so there
is one set of numbers.
"""

from __future__ import annotations

import re
from typing import Any

START = "<!-- benchmark summary: written by python -m benchmarks.run -->"
END = "<!-- end of benchmark summary -->"
_BLOCK = re.compile(re.escape(START) + r"\n(.*?)\n" + re.escape(END), re.S)


def summary(results: dict[str, Any]) -> str:
    """The README's paragraph: the headline numbers, then every missed target."""
    meta = results["meta"]
    cached = results["cached_get_token"]["us"]
    httpx_row = results["per_request"]["httpx sync"]
    floor = min(v for k, v in httpx_row.items() if k.startswith("static header"))
    fan_out = results["engine"]["fan_out_s"]
    rollover = results["engine"]["rollover"]["sync get_token"]
    tls = results["tls"]["sequential"]["connect_auth async aget_token"]
    peer_tls = results["tls"]["sequential"]["vercel-connect async get_token"]
    lines = [
        f"Latest run ({meta['date']}, {meta['machine']}, Python {meta['python']}; "
        "`docs/benchmarks/results.md`):",
        "",
        f"- a cached `get_token` costs {cached['connect_auth get_token']:.2f} µs "
        f"(vercel-connect: {cached['vercel-connect get_token']:.1f} µs);",
        f"- the httpx adapter adds {httpx_row['connect_auth'] - floor:.1f} µs per request "
        f"({httpx_row['connect_auth'] / floor:.3f}x a static header);",
        f"- {results['engine']['cold_keys']} cold keys from asyncio take "
        f"{fan_out['connect_auth']:.2f} s (vercel-connect: {fan_out['vercel-connect']:.2f} s);",
        f"- {results['tls']['fetches']} cold async fetches over TLS open "
        f"{tls['connections']} connection(s), at {tls['ms_per_fetch']:.1f} ms each "
        f"(vercel-connect: {peer_tls['ms_per_fetch']:.1f} ms);",
        f"- across token rollovers, {rollover['waited_on_connect']} of "
        f"{rollover['calls']} cached calls waited for Connect (slowest "
        f"{rollover['slowest_ms']:.1f} ms).",
    ]
    missed = [t for t in results["targets"] if not t["pass"]]
    lines.append("")
    if missed:
        lines.append(f"Targets missed in that run ({len(missed)} of {len(results['targets'])}):")
        lines.append("")
        lines += [f"- FAIL {t['name']}: {t['evidence']}" for t in missed]
    else:
        lines.append(f"All {len(results['targets'])} targets passed in that run.")
    return "\n".join(lines)


def quoted(text: str) -> str | None:
    """The summary a page holds between the markers, if any."""
    found = _BLOCK.search(text)
    return found.group(1) if found else None


def with_summary(text: str, block: str) -> str:
    """``text`` with its summary replaced by ``block``."""
    if quoted(text) is None:
        raise ValueError(f"no benchmark summary markers ({START!r}) in the page")
    return _BLOCK.sub(lambda _: f"{START}\n{block}\n{END}", text)
