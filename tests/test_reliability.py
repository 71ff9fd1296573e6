"""Reliability and security: load with expiry, faults, fuzzing, isolation, leaks, memory.

Everything runs against the emulator on loopback, bounded in count and time.
Each test prints its figures (run with ``-s`` to see them).
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import random
import resource
import threading
import time
from typing import Any

import httpx
import pytest
import requests
from drivers import _threaded
from helpers import APP, SLACK, fast_retry, jwt_like
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import connect_auth
from connect_auth import (
    ConnectClient,
    ConnectError,
    ConnectUnavailableError,
    JwtBearerSubject,
    RetryPolicy,
    TokenRequest,
)
from connect_auth._protocol import error_from_response, parse_token_response
from connect_auth.httpx import ConnectAuth as HttpxAuth
from connect_auth.requests import ConnectAuth as RequestsAuth
from connect_auth.testing import ConnectEmulator, ConnectorSpec

SHORT = "short/lived"

CREDENTIAL, REFUSED = jwt_like("credential"), jwt_like("refused-credential")


@pytest.fixture
def quiet_heap() -> Any:
    """Freeze what earlier tests left on the heap, so full GC passes over it stay short."""
    gc.collect()
    gc.freeze()
    yield
    gc.unfreeze()


class _Attached:
    """What the adapters attached to each request: the token, and when they were asked."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, float]] = []  # list.append is atomic: no lock needed

    def recording(self, auth_cls: Any) -> Any:
        """``auth_cls`` with its token lookups recorded."""
        seen = self.seen

        class Recording(auth_cls):  # type: ignore[misc, valid-type]
            def token(self) -> str:
                asked = time.time()
                token: str = super().token()
                seen.append((token, asked))
                return token

            async def atoken(self) -> str:
                asked = time.time()
                token: str = await super().atoken()
                seen.append((token, asked))
                return token

        return Recording


class _Sizing:
    """Token lifetime and buffer sized from the request latency measured under the test's
    own load, so a request in flight on a busy machine does not outlive its token."""

    def __init__(self, latencies: list[float]) -> None:
        ordered = sorted(latencies)
        self.p99 = ordered[int(len(ordered) * 0.99)]
        # Floors for what a busy machine adds between two measurements (GC, a neighbour).
        self.buffer_ms = max(1000.0, 10_000 * self.p99)
        self.ttl = max(2.5, 25 * self.p99, 2 * self.buffer_ms / 1000)
        # Refresh-ahead refetches halfway through the time a token can be served.
        self.refresh_every = (self.ttl - self.buffer_ms / 1000) / 2

    def add_connector(self, emu: ConnectEmulator) -> None:
        emu.add_connector(
            ConnectorSpec(
                uid=SHORT,
                type="custom",
                token_ttl=self.ttl,
                links={"prj_emulator": ["development"]},
            )
        )

    def __str__(self) -> str:
        return (
            f"p99 latency {self.p99 * 1000:.0f} ms -> tokens of {self.ttl:.1f} s, "
            f"buffer {self.buffer_ms / 1000:.1f} s, refresh every {self.refresh_every:.1f} s"
        )


def _check_load(
    emu: ConnectEmulator,
    attached: _Attached,
    sizing: _Sizing,
    *,
    name: str,
    requests_made: int,
    failures: int,
    elapsed: float,
) -> None:
    """Print the figures, then hold the library to what is its own doing:
    no failed request, no token attached inside its buffer, one Connect call per
    refresh window. Tokens that died in transit (a request slower than the buffer)
    are the machine's doing: reported, and each must have been resent once."""
    expires_ms = {t.token: t.expires_at_ms for t in emu.issued_tokens()}
    stale = sum(expires_ms[tok] - asked * 1000 <= sizing.buffer_ms for tok, asked in attached.seen)
    calls = emu.token_calls(SHORT)
    died = sum(c.token_state in ("expired", "revoked") for c in emu.provider_calls)
    sent = len(emu.provider_calls)
    print(
        f"\n{name}: {sizing}; {requests_made} requests ({sent - requests_made} resent) in "
        f"{elapsed:.1f} s, failures {failures}, tokens attached inside their buffer {stale}, "
        f"died in transit {died}, Connect calls {calls} "
        f"(refresh windows {elapsed / sizing.refresh_every:.1f})"
    )
    assert failures == 0 and stale == 0
    assert sent == requests_made + died  # each dead-on-arrival request resent once
    # One fetch per refresh window, never one per request or thread; a token refused
    # in transit costs at most one more.
    assert 1 <= calls <= elapsed / sizing.refresh_every + 3 + died


def _calibrate_threads(emu: ConnectEmulator, client: ConnectClient, threads: int) -> _Sizing:
    """Request latency of the thread load's shape, on a long-lived token."""
    url = emu.provider_url(SLACK)
    latencies: list[float] = []

    def worker() -> None:
        with httpx.Client(auth=HttpxAuth(SLACK, subject=APP, client=client), timeout=60) as h:
            for _ in range(100):
                started = time.perf_counter()
                h.get(url)
                latencies.append(time.perf_counter() - started)

    _threaded(threads, worker)
    return _Sizing(latencies)


def test_load_threads_with_expiring_tokens(
    client: ConnectClient, emulator: ConnectEmulator, quiet_heap: None
) -> None:
    """32 threads x 1000 requests (httpx and requests) on tokens that expire every few
    hundred requests: no failure, no stale token attached, one fetch per refresh window."""
    sizing = _calibrate_threads(emulator, client, 32)
    sizing.add_connector(emulator)
    emulator.state.provider_calls.clear()  # count only the load's requests
    url = emulator.provider_url(SHORT)
    attached = _Attached()
    auth_kwargs = {"subject": APP, "client": client, "validity_buffer_ms": sizing.buffer_ms}
    n = 1000

    def worker(use_requests: bool) -> int:
        bad = 0
        if use_requests:
            with requests.Session() as s:
                s.auth = attached.recording(RequestsAuth)(SHORT, **auth_kwargs)
                for _ in range(n):
                    bad += s.get(url, timeout=60).status_code != 200
        else:
            auth = attached.recording(HttpxAuth)(SHORT, **auth_kwargs)
            with httpx.Client(auth=auth, timeout=60) as h:
                for _ in range(n):
                    bad += h.get(url).status_code != 200
        return bad

    kinds = iter([True, False] * 16)
    lock = threading.Lock()

    def next_worker() -> int:
        with lock:
            use_requests = next(kinds)
        return worker(use_requests)

    started = time.monotonic()
    failures = _threaded(32, next_worker)
    elapsed = time.monotonic() - started
    _check_load(
        emulator,
        attached,
        sizing,
        name="load/threads",
        requests_made=32 * n,
        failures=sum(failures),
        elapsed=elapsed,
    )


def test_load_tasks_with_expiring_tokens(
    client: ConnectClient, emulator: ConnectEmulator, quiet_heap: None
) -> None:
    """300 asyncio tasks x 6 requests on one httpx.AsyncClient, tokens that expire during
    the run: no failure, no stale token attached, one fetch per refresh window.

    The tasks pause between requests, as request handlers do, so that together they
    offer half of what the loop and the emulator serve flat out (measured first): a
    saturated loop would queue requests for ever longer, whoever attached their tokens.
    Token lifetimes are then sized from the latency measured at that pace.
    """
    tasks, per_task, connections = 300, 6, 50
    limits = httpx.Limits(max_connections=connections)

    async def run(
        connector: str, auth: Any, rounds: int, pause: float | None
    ) -> tuple[list[int], list[float], float]:
        """``pause=None``: one task per connection, flat out; else ``tasks`` paced tasks."""
        url = emulator.provider_url(connector)
        latencies: list[float] = []
        async with httpx.AsyncClient(auth=auth, limits=limits, timeout=120) as h:

            async def task() -> int:
                bad = 0
                for _ in range(rounds):
                    if pause is not None:  # arrivals and think time spread out
                        await asyncio.sleep(random.random() * 2 * pause)
                    started = time.perf_counter()
                    bad += (await h.get(url)).status_code != 200
                    latencies.append(time.perf_counter() - started)
                return bad

            started = time.perf_counter()
            n = connections if pause is None else tasks
            bad = list(await asyncio.gather(*[task() for _ in range(n)]))
            return bad, latencies, len(latencies) / (time.perf_counter() - started)

    long_lived = HttpxAuth(SLACK, subject=APP, client=client)
    capacity = asyncio.run(run(SLACK, long_lived, 10, None))[2]
    mean_pause = tasks / (capacity / 2)
    sizing = _Sizing(asyncio.run(run(SLACK, long_lived, 2, mean_pause))[1])
    sizing.add_connector(emulator)
    emulator.state.provider_calls.clear()  # count only the load's requests
    attached = _Attached()
    auth = attached.recording(HttpxAuth)(
        SHORT, subject=APP, client=client, validity_buffer_ms=sizing.buffer_ms
    )
    started = time.monotonic()
    failures, _, _ = asyncio.run(run(SHORT, auth, per_task, mean_pause))
    elapsed = time.monotonic() - started
    print(f"\nload/tasks: flat out {capacity:.0f} requests/s; the tasks offer half of it")
    _check_load(
        emulator,
        attached,
        sizing,
        name="load/tasks",
        requests_made=tasks * per_task,
        failures=sum(failures),
        elapsed=elapsed,
    )


# -- faults ------------------------------------------------------------------------------


FAULTS = ["503 burst", "429 Retry-After", "dropped", "stalled", "mixed"]


@pytest.mark.parametrize("fault", FAULTS)
def test_faults_end_in_a_token_or_a_typed_error(emulator: ConnectEmulator, fault: str) -> None:
    """Every caller gets a token or ConnectUnavailableError, in bounded calls and time."""
    policy = RetryPolicy(
        max_attempts=4, deadline=3.0, initial_backoff=0.02, max_backoff=0.2, retry_after_cap=1.0
    )
    outcomes: dict[str, int] = {"token": 0, "unavailable": 0}
    rounds = 6
    with ConnectClient(
        base_url=emulator.url, vercel_token=emulator.oidc_token(), timeout=0.5, retry=policy
    ) as c:
        for r in range(rounds):
            if fault == "503 burst":
                emulator.fail_next(2 + r % 4, status=503)
            elif fault == "429 Retry-After":
                emulator.fail_next(1 + r % 2, status=429, retry_after="0.2")
            elif fault == "dropped":
                emulator.drop_next(1 + r % 5)
            elif fault == "stalled":
                emulator.stall_next(1 + r % 2, seconds=2)
            else:
                emulator.fail_next(1, status=502)
                emulator.drop_next(1)
                emulator.fail_next(1, status=429, retry_after="0.1")
            before = emulator.token_calls()
            started = time.monotonic()
            results = _threaded(8, lambda: _token_or_error(c))  # type: ignore[arg-type]
            took = time.monotonic() - started
            for kind in results:
                outcomes[str(kind)] += 1
            # Single-flight: 8 callers share each attempt; attempts are bounded.
            assert emulator.token_calls() - before <= policy.max_attempts
            assert took < policy.deadline + 2 * 0.5 + 1  # deadline + one timeout + slack
            emulator.reset_faults()
            c.clear_token_cache()
    print(
        f"\nfaults/{fault}: {outcomes['token']} tokens, "
        f"{outcomes['unavailable']} ConnectUnavailableError, {rounds} rounds of 8 callers"
    )
    assert outcomes["token"] + outcomes["unavailable"] == rounds * 8


def _token_or_error(c: ConnectClient) -> str:
    try:
        c.get_token(SLACK, subject=APP)
    except ConnectUnavailableError:
        return "unavailable"
    return "token"  # any other exception propagates and fails the test


# -- fuzzing --------------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=12), children, max_size=5)
    ),
    max_leaves=20,
)
bodies = st.one_of(
    st.binary(max_size=2000),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.fixed_dictionaries(
        {
            "token": json_values,
            "expiresAt": json_values,
            "connector": json_values,
            "tenantId": json_values,
            "metadata": json_values,
        }
    ).map(lambda v: json.dumps(v).encode()),
    st.fixed_dictionaries({"error": json_values, "err": json_values}).map(
        lambda v: json.dumps(v).encode()
    ),
    st.integers(0, 5).map(lambda n: b'{"token": "' + b"x" * (10**n) + b'"'),  # huge, truncated
)
FUZZ = settings(
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
fuzz_counts: dict[str, int] = {}


@FUZZ
@given(body=bodies)
def test_fuzz_success_parser(body: bytes) -> None:
    """The 2xx parser returns a TokenResponse or raises a ConnectError, nothing else."""
    fuzz_counts["success"] = fuzz_counts.get("success", 0) + 1
    try:
        response = parse_token_response(body)
    except ConnectError:
        return
    assert isinstance(response.token, str) and isinstance(response.expires_at, int)


@FUZZ
@given(status=st.integers(100, 599), text=st.text(max_size=30), body=bodies)
def test_fuzz_error_parser(status: int, text: str, body: bytes) -> None:
    """Any error response maps to a ConnectError subclass whose message is bounded by
    what was received (answers are capped at 1 MiB before they are parsed)."""
    fuzz_counts["error"] = fuzz_counts.get("error", 0) + 1
    err = error_from_response(status, text, body)
    assert isinstance(err, ConnectError) and err.status == status
    assert len(str(err)) < 2 * len(body) + len(text) + 400


anything = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.text(max_size=10),
    st.lists(st.text(max_size=5), max_size=3),
    json_values,
)
subjects = st.one_of(
    anything,
    st.fixed_dictionaries(
        {"type": st.sampled_from(["app", "user", "jwt-bearer", "token", "x"])},
        optional={
            "id": anything,
            "sub": anything,
            "token": anything,
            "issuer": anything,
            "extra": anything,
        },
    ),
)


@FUZZ
@given(
    connector=anything | st.just(SLACK),
    subject=subjects,
    options=st.dictionaries(
        st.sampled_from(
            [
                "installation_id",
                "audience",
                "scopes",
                "resources",
                "authorization_details",
                "validity_buffer_ms",
                "vercel_token",
                "force_refresh",
                "unknown_option",
            ]
        ),
        anything,
        max_size=3,
    ),
)
def test_fuzz_public_functions(connector: Any, subject: Any, options: dict[str, Any]) -> None:
    """Bad arguments raise ValueError/TypeError before any network call; good ones work."""
    fuzz_counts["arguments"] = fuzz_counts.get("arguments", 0) + 1
    sent: list[httpx.Request] = []

    def connect_api(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(
            200,
            json={
                "token": "t",
                "expiresAt": int((time.time() + 3600) * 1000),
                "connector": {"id": "i", "uid": "u", "type": "x"},
            },
        )

    with ConnectClient(
        base_url="http://127.0.0.1:9",
        vercel_token=CREDENTIAL,
        transport=httpx.MockTransport(connect_api),
    ) as c:
        try:
            assert c.get_token(connector, subject=subject, **options) == "t"
        except (ValueError, TypeError):
            assert sent == []  # refused before the network
        except ConnectError:
            # Arguments were valid; Connect itself (here: an odd credential) refused.
            assert options.get("vercel_token") not in (None, CREDENTIAL) or sent


def test_fuzz_figures() -> None:
    """Report how many examples the fuzzers tried (run after them in file order)."""
    print(f"\nfuzz examples: {fuzz_counts}")
    assert sum(fuzz_counts.values()) >= 3


# -- isolation -----------------------------------------------------------------------------


def test_identities_never_see_each_others_tokens(emulator: ConnectEmulator) -> None:
    """Callers with different Vercel tokens, concurrently, get only their own tokens."""
    emulator.add_connector(
        ConnectorSpec(
            uid="shared/crm",
            type="custom",
            links={"prj_a": ["development"], "prj_b": ["development"]},
        )
    )
    creds = {p: emulator.oidc_token(project_id=p) for p in ("prj_a", "prj_b")}
    emulator.latency = 0.05
    received: list[tuple[str, str]] = []
    lock = threading.Lock()
    counter = iter(range(10_000))

    with ConnectClient(base_url=emulator.url) as c:  # ONE client, one cache, two identities

        def caller() -> None:
            with lock:
                project = ("prj_a", "prj_b")[next(counter) % 2]
            for _ in range(50):
                token = c.get_token("shared/crm", subject=APP, vercel_token=creds[project])
                with lock:
                    received.append((project, token))

        _threaded(32, caller)  # type: ignore[arg-type]
    issued_to = {t.token: t.project_id for t in emulator.issued_tokens()}
    wrong = [(p, issued_to.get(t)) for p, t in received if issued_to.get(t) != p]
    print(
        f"\nisolation: {len(received)} tokens received by 2 identities, "
        f"{emulator.token_calls()} Connect calls, {len(wrong)} crossed"
    )
    assert wrong == [] and emulator.token_calls() == 2


# -- leak scans ----------------------------------------------------------------------------


def test_no_secret_leaks_anywhere(
    emulator: ConnectEmulator, debug_logs: pytest.LogCaptureFixture
) -> None:
    """With DEBUG logs captured, no token shows in logs, reprs, errors, or other hosts."""
    oidc = emulator.oidc_token()
    shown: list[str] = []
    with ConnectClient(base_url=emulator.url, vercel_token=oidc, retry=fast_retry()) as c:
        auth = HttpxAuth(SLACK, subject=APP, client=c)
        rauth = RequestsAuth(SLACK, subject=APP, client=c)
        with httpx.Client(auth=auth, follow_redirects=True) as h, requests.Session() as s:
            s.auth = rauth
            url = emulator.provider_url(SLACK)
            h.get(url)
            emulator.revoke(c.get_token(SLACK, subject=APP))  # 401 -> refresh -> resend
            h.get(url)
            s.get(url)
            emulator.fail_next(2, status=503)  # retries
            response = c.get_token_response(SLACK, subject=APP, force_refresh=True)
            other = emulator.provider_url(SLACK, host="localhost") + "?status=401"
            from urllib.parse import quote

            h.get(url + "?redirect=" + quote(other, safe=""))  # redirect to another origin
            s.get(url + "?redirect=" + quote(other, safe=""))

            def gen() -> Any:
                yield b"x"

            emulator.expire_all()
            h.post(url, content=gen())  # one-shot body: refreshed, not resent, logged
            errors: list[BaseException] = []
            for bad in ("nope/x", "github/acme-github", "salesforce/acme-sf"):
                try:
                    c.get_token(bad, subject=APP)
                except ConnectError as exc:
                    errors.append(exc)
            emulator.fail_next(10, status=503)
            try:
                c.get_token(SLACK, subject=APP, force_refresh=True)
            except ConnectUnavailableError as exc:
                errors.append(exc)
            with ConnectClient(base_url=emulator.url, vercel_token=REFUSED) as bad_c:
                try:
                    bad_c.get_token(SLACK, subject=APP)
                except ConnectError as exc:
                    errors.append(exc)
            shown += [repr(c), repr(auth), repr(rauth), repr(response), str(response)]
            for exc in errors:
                shown += [str(exc), repr(exc), repr(exc.__cause__)]
    secrets = [t.token for t in emulator.issued_tokens()] + [oidc, REFUSED]
    haystacks = {"logs": debug_logs.text, "reprs and errors": "\n".join(shown)}
    for where, text in haystacks.items():
        leaked = [s[:12] for s in secrets if s in text]
        assert leaked == [], f"secret found in {where}"
    assert debug_logs.records, "the scenario should have logged something to scan"
    elsewhere = [p for p in emulator.provider_calls if p.host.startswith("localhost")]
    assert elsewhere and not any(p.had_authorization for p in elsewhere)
    print(
        f"\nleak scan: {len(secrets)} secrets, {len(debug_logs.records)} log records, "
        f"{len(shown)} reprs/messages, {len(elsewhere)} requests to another origin: clean"
    )


# -- memory -----------------------------------------------------------------------------------


def test_million_calls_keep_memory_flat(emulator: ConnectEmulator) -> None:
    """1 000 000 get_token calls over rotating keys: cache at cache_size, memory flat."""
    with ConnectClient(
        base_url=emulator.url, vercel_token=emulator.oidc_token(), cache_size=100
    ) as c:
        hot = [JwtBearerSubject(f"hot{i}") for i in range(50)]
        rss: list[int] = []
        gc.collect()
        for i in range(1_000_000):
            if i % 100 == 0:  # a new key every 100 calls: 10 000 fetches and evictions
                c.get_token(SLACK, subject=JwtBearerSubject(f"cold{i}"))
            else:
                c.get_token(SLACK, subject=hot[i % 50])
            if i % 200_000 == 199_999:
                gc.collect()
                rss.append(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
                assert len(c._engine) == 100
    growth_kib = rss[-1] - rss[0]
    print(
        f"\nmemory: 1e6 calls, {emulator.token_calls()} Connect calls, cache "
        f"{len(c._engine)} entries, peak RSS {rss[0]} -> {rss[-1]} KiB (+{growth_kib})"
    )
    assert growth_kib < 20_000  # bounded: no per-call or per-key growth
    assert emulator.token_calls() == 10_000 + 50


def test_module_functions_survive_fuzzed_env(
    monkeypatch: pytest.MonkeyPatch, emulator: ConnectEmulator
) -> None:
    """Garbage credentials in the environment give OidcTokenError, never a crash."""
    for junk in ("", "a.b", "a.b.c", "x" * 10_000, "eyJ.eyJ.sig", "Bearer x"):
        monkeypatch.setenv("VERCEL_OIDC_TOKEN", junk)
        previous = connect_auth.set_default_client(None)
        if previous is not None:
            previous.close()
        if not junk:
            monkeypatch.delenv("VERCEL_OIDC_TOKEN")
        with pytest.raises(connect_auth.OidcTokenError):
            connect_auth.get_token(SLACK, subject=APP)
    assert TokenRequest.build(SLACK, subject=APP).connector == SLACK
    logging.getLogger("connect_auth").debug("done")
