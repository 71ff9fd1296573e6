"""The Connect emulator in a process of its own, for the cases that load it.

In the measuring process, the emulator's worker threads would share the clients'
interpreter lock, and the server would become what is measured; in a process of
its own (run as ``python -m benchmarks.emulator``) it answers a 200-way fan-out as
fast as the real service's latency allows. Its answers are held back for
``latency`` seconds without holding a worker, ``SLOW`` answers ``slow`` seconds
more, every user has consented, and tokens live ``ttl`` seconds.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import quote

from . import peers

SLACK = peers.SLACK
SLOW = "slow/connector"
ROLL = "roll/connector"
ROLL_VERCEL = "roll/vercel"
ROOT = Path(__file__).resolve().parent.parent


class EmulatorProcess:
    """A running emulator in a child process: its URL, an OIDC token it accepts, and
    its count of token calls per connector (asked over the child's stdin)."""

    def __init__(self, latency: float, *, ttl: float = 3600.0, slow: float = 3.0) -> None:
        self._spec = {"latency": latency, "ttl": ttl, "slow": slow}
        self.url = ""
        self.oidc = ""

    def __enter__(self) -> EmulatorProcess:
        self._child = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.emulator", json.dumps(self._spec)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,  # where ``benchmarks`` is importable from
        )
        assert self._child.stdout is not None
        ready = json.loads(self._child.stdout.readline())
        self.url, self.oidc = ready["url"], ready["oidc"]
        return self

    def __exit__(self, *exc: object) -> None:
        with self._child:  # closes the pipes; closing stdin stops the child's emulator
            assert self._child.stdin is not None
            self._child.stdin.close()
            self._child.wait(timeout=30)

    def oidc_token(self) -> str:
        """A Vercel OIDC token the emulator accepts (valid for 12 hours)."""
        return self.oidc

    def provider_url(self, connector: str, path: str = "api") -> str:
        """The emulator's fake provider API for ``connector``."""
        return f"{self.url}/provider/{quote(connector, safe='')}/{path}"

    def token_calls(self, connector: str) -> int:
        """Token calls the emulator answered for ``connector``."""
        assert self._child.stdin is not None and self._child.stdout is not None
        self._child.stdin.write(connector + "\n")
        self._child.stdin.flush()
        return int(self._child.stdout.readline())


def _serve(spec: dict[str, Any]) -> None:
    from connect_auth.testing import ConnectEmulator, ConnectorSpec

    connectors = [
        ConnectorSpec(uid=uid, type="custom", users={"*"}, token_ttl=spec["ttl"], latency=extra)
        for uid, extra in ((SLACK, 0.0), (SLOW, spec["slow"]), (ROLL, 0.0), (ROLL_VERCEL, 0.0))
    ]
    with ConnectEmulator(connectors) as emulator:
        emulator.latency = spec["latency"]
        ready = {"url": emulator.url, "oidc": emulator.oidc_token(ttl=12 * 3600)}
        print(json.dumps(ready), flush=True)
        for line in sys.stdin:  # one connector per line: answer its token calls
            print(emulator.token_calls(line.strip()), flush=True)


if __name__ == "__main__":
    _serve(json.loads(sys.argv[1]))
