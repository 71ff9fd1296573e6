"""``connect-auth demo``: the whole flow against an emulator embedded in this process."""

from __future__ import annotations

import contextlib
import itertools
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

import httpx

from . import _api
from ._client import ConnectClient
from ._errors import UserAuthorizationRequiredError
from ._models import AppSubject, UserSubject
from .testing import ConnectEmulator

__all__ = ["run_demo"]

T = TypeVar("T")

CONNECTOR = "slack/acme-slack"
SUBJECT = AppSubject()


def redact(token: str) -> str:
    """Enough of a token to tell two apart, never enough to use it."""
    return f"{token[:10]}…({len(token)} chars, redacted)"


class _Demo:
    def __init__(self, total: int) -> None:
        self.total = total
        self.step = 0
        self.failures: list[str] = []

    def section(self, title: str) -> None:
        self.step += 1
        print(f"\n[{self.step}/{self.total}] {title}", flush=True)

    def check(self, ok: bool, what: str) -> None:
        print(f"    {'ok  ' if ok else 'FAIL'} {what}", flush=True)
        if not ok:
            self.failures.append(what)


@contextlib.contextmanager
def _progress(label: str) -> Iterator[None]:
    """A spinner on stderr while something slow runs, on a terminal only (a log file
    gets the section's result line, not a row of progress marks)."""
    if not sys.stderr.isatty():
        yield
        return
    done = threading.Event()

    def spin() -> None:
        frames = itertools.cycle("|/-\\")
        while not done.wait(0.1):
            sys.stderr.write(f"\r    {label} {next(frames)}")
            sys.stderr.flush()

    thread = threading.Thread(target=spin, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()
        sys.stderr.write("\r" + " " * (len(label) + 8) + "\r")
        sys.stderr.flush()


def _timed(fn: Callable[[], T]) -> tuple[T, float]:
    start = time.perf_counter()
    value = fn()
    return value, (time.perf_counter() - start) * 1000


def run_demo() -> int:
    """Run every section; exit code 0 when each outcome was as expected."""
    began = time.perf_counter()
    demo = _Demo(total=9)
    print("connect_auth demo: Vercel Connect tokens with no Vercel account, on loopback")

    demo.section("Start the embedded Connect emulator")
    emulator, ms = _timed(lambda: ConnectEmulator().start())
    try:
        with _environment(
            CONNECT_AUTH_BASE_URL=emulator.url, VERCEL_OIDC_TOKEN=emulator.oidc_token()
        ):
            _api.set_default_client(None)
            print(f"    listening on {emulator.url} ({ms:.0f} ms)")
            print("    export CONNECT_AUTH_BASE_URL=... VERCEL_OIDC_TOKEN=<emulator-signed JWT>")
            _run_sections(demo, emulator)
    finally:
        previous = _api.set_default_client(None)
        if previous is not None:
            previous.close()
        emulator.stop()
    total = time.perf_counter() - began
    if demo.failures:
        print(f"\n{len(demo.failures)} check(s) failed in {total:.1f} s: {demo.failures}")
        return 1
    print(f"\nAll {demo.total} sections passed in {total:.1f} s.")
    return 0


def _run_sections(demo: _Demo, emulator: ConnectEmulator) -> None:
    demo.section("get_token and get_token_response")
    token, ms = _timed(lambda: _api.get_token(CONNECTOR, subject=SUBJECT, scopes=["chat:write"]))
    print(f"    get_token('{CONNECTOR}', subject=AppSubject()) -> {redact(token)} ({ms:.1f} ms)")
    response = _api.get_token_response(CONNECTOR, subject=SUBJECT, scopes=["chat:write"])
    left = (response.expires_at / 1000 - time.time()) / 60
    print(
        f"    get_token_response -> connector {response.connector.uid} ({response.connector.type}),"
        f" tenant {response.tenant_id}, installation {response.installation_id},"
        f" expires in {left:.0f} min"
    )
    print(f"    repr hides the token: {response!r}"[:160] + "…")
    demo.check(response.token == token, "second call served from the cache")
    demo.check(emulator.token_calls() == 1, "one Connect call so far")

    demo.section("Call the provider through both auth adapters")
    from .httpx import ConnectAuth as HttpxAuth

    url = emulator.provider_url(CONNECTOR, "chat.postMessage")
    with httpx.Client(auth=HttpxAuth(CONNECTOR, subject=SUBJECT, scopes=["chat:write"])) as h:
        r = h.post(url, json={"channel": "C123", "text": "hello"})
        print(
            f"    httpx.Client(auth=ConnectAuth(...)).post -> {r.status_code} "
            f"(provider saw tokenState={r.json()['tokenState']})"
        )
        demo.check(r.status_code == 200, "httpx request accepted by the provider")
    try:
        import requests

        from .requests import ConnectAuth as RequestsAuth
    except ImportError:
        demo.check(False, "requests is installed (pip install 'connect-auth[requests]')")
    else:
        with requests.Session() as session:
            session.auth = RequestsAuth(CONNECTOR, subject=SUBJECT, scopes=["chat:write"])
            rr = session.post(url, json={"channel": "C123", "text": "hello"})
            print(f"    session.auth = ConnectAuth(...); session.post -> {rr.status_code}")
            demo.check(rr.status_code == 200, "requests request accepted by the provider")
    demo.check(emulator.token_calls() == 1, "adapters reused the cached token (1 Connect call)")

    demo.section("A token revoked behind the app's back")
    emulator.revoke(token)
    print("    the provider now refuses the cached token")
    with httpx.Client(auth=HttpxAuth(CONNECTOR, subject=SUBJECT, scopes=["chat:write"])) as h:
        r, ms = _timed(lambda: h.post(url, json={"text": "after revoke"}))
    states = [c.token_state for c in emulator.provider_calls[-2:]]
    print(
        f"    provider answers: {states[0]} -> 401, refreshed once, resent -> "
        f"{states[1]} -> {r.status_code} ({ms:.1f} ms)"
    )
    demo.check(r.status_code == 200 and len(r.history) == 1, "one refresh, one resend, success")
    demo.check(emulator.token_calls() == 2, "exactly one extra Connect call")

    demo.section("Connect answers 503 three times")
    emulator.fail_next(3, status=503)
    with _progress("retrying with backoff"):
        fresh, ms = _timed(
            lambda: _api.get_token(
                CONNECTOR, subject=SUBJECT, scopes=["chat:write"], force_refresh=True
            )
        )
    attempts = emulator.token_calls() - 2
    print(f"    503, 503, 503, then 200: a new token after {attempts} attempts ({ms:.0f} ms)")
    demo.check(isinstance(fresh, str) and attempts == 4, "backoff absorbed the burst")

    demo.section("The cost of a cached call")
    n = 20_000
    start = time.perf_counter()
    for _ in range(n):
        _api.get_token(CONNECTOR, subject=SUBJECT, scopes=["chat:write"])
    per_call = (time.perf_counter() - start) / n * 1e6
    print(
        f"    get_token from the cache: {per_call:.1f} µs per call ({n} calls, "
        f"{emulator.token_calls() - 6} Connect calls)"
    )
    demo.check(emulator.token_calls() == 6, "no Connect call on the cached path")

    demo.section("A user who has not authorized the connector yet")
    carol = UserSubject("u_carol")
    try:
        _api.get_token(CONNECTOR, subject=carol)
        refused = False
    except UserAuthorizationRequiredError:
        refused = True
    print("    get_token(..., subject=UserSubject('u_carol')) -> UserAuthorizationRequiredError")
    request = _api.start_authorization(
        CONNECTOR, subject=carol, callback_url="http://localhost:3000/connected"
    )
    print(f"    start_authorization -> send the user to {request.url}")
    answer = httpx.post(request.url, data={"decision": "approve"})  # the user clicks Approve
    print(f"    the user approves -> {answer.status_code}, back to {answer.headers['location']}")
    granted = _api.wait_for_authorization(CONNECTOR, subject=carol, timeout=30, interval=0.1)
    print(f"    wait_for_authorization -> {redact(granted.token)} for {granted.external_subject}")
    demo.check(refused and answer.status_code == 303, "consent asked for, then given")
    demo.check(granted.external_subject == "user:u_carol", "the user's own token")

    demo.section("Local development: a stale .env.local heals itself")
    _stale_env_local(demo, emulator)

    demo.section("An agent calls an MCP tool for a user, consent included")
    from ._demo_mcp import agent_section

    agent_section(emulator, demo.check)


def _stale_env_local(demo: _Demo, emulator: ConnectEmulator) -> None:
    """A linked checkout whose pulled token expired, with a Vercel CLI login that
    expired too: the token is renewed through the login, as on a developer's laptop."""
    with (
        tempfile.TemporaryDirectory() as root,
        _environment(
            XDG_DATA_HOME=os.path.join(root, "data"),
            CONNECT_AUTH_VERCEL_ISSUER=emulator.url,
            VERCEL_OIDC_TOKEN=None,
            VERCEL=None,
        ),
    ):
        app = os.path.join(root, "app")
        os.mkdir(app)
        emulator.link_project(app)
        emulator.write_cli_login(os.path.join(root, "data"), expired=True)
        stale = emulator.oidc_token(ttl=-3600)
        with open(os.path.join(app, ".env.local"), "w") as env_local:
            env_local.write(f'VERCEL_OIDC_TOKEN="{stale}"\n')
        print("    vercel link + vercel env pull, a day ago: the token in .env.local expired,")
        print("    and so did the Vercel CLI login")
        with contextlib.chdir(app), ConnectClient(base_url=emulator.url) as client:
            token, ms = _timed(lambda: client.get_token(CONNECTOR, subject=SUBJECT))
        saved = os.path.join("com.vercel.token", f"{emulator.project_id}.json")
        print(f"    get_token -> {redact(token)} ({ms:.0f} ms): the CLI login was renewed,")
        print(f"    a new project token minted and saved in <data>/{saved}")
        demo.check(
            emulator.vercel.refreshes == 1 and emulator.vercel.project_tokens == 1,
            "one CLI login renewal and one new project token",
        )
        demo.check(
            os.path.exists(os.path.join(root, "data", saved)),
            "the token saved for the next process",
        )


@contextlib.contextmanager
def _environment(**values: str | None) -> Iterator[None]:
    """Set (or, with None, unset) environment variables for a block."""
    saved = {k: os.environ.get(k) for k in values}
    try:
        for key, value in values.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
