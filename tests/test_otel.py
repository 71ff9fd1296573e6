"""connect_auth.otel: spans and metrics of real fetches against the emulator, read with
the OpenTelemetry SDK's in-memory exporter and metric reader."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from helpers import APP, SLACK, fast_retry, run_in_tasks, run_in_threads, wait_for
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from connect_auth import (
    ConnectClient,
    NoValidTokenError,
    UserAuthorizationRequiredError,
    verify_connect_webhook,
)
from connect_auth import _webhooks as webhooks
from connect_auth.httpx import ConnectAuth
from connect_auth.otel import instrument, uninstrument
from connect_auth.redis import RedisTokenCache
from connect_auth.testing import ConnectEmulator, ConnectorSpec
from connect_auth.testing._redis_servers import RedisServer

ALICE = {"type": "user", "id": "u_alice"}
KEY = "a test key for the shared cache, 32+ bytes long"


@dataclass
class Recorded:
    """What the instrumentation under test recorded."""

    spans: InMemorySpanExporter
    reader: InMemoryMetricReader
    tracer_provider: TracerProvider

    def finished(self, name: str = "connect_auth.fetch_token") -> list[ReadableSpan]:
        return [s for s in self.spans.get_finished_spans() if s.name == name]

    def points(self, metric: str) -> list[Any]:
        data = self.reader.get_metrics_data()
        found = []
        for resource in data.resource_metrics if data is not None else []:
            for scope in resource.scope_metrics:
                for m in scope.metrics:
                    if m.name == metric:
                        found.extend(m.data.data_points)
        return found

    def value(self, metric: str, **attributes: str) -> int:
        """A counter's total over the points whose attributes include ``attributes``."""
        wanted = {f"connect.{k}": v for k, v in attributes.items()}
        return sum(
            p.value for p in self.points(metric) if wanted.items() <= dict(p.attributes).items()
        )


def _providers() -> tuple[TracerProvider, InMemorySpanExporter, MeterProvider, Any]:
    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    reader = InMemoryMetricReader()
    return tracer_provider, spans, MeterProvider(metric_readers=[reader]), reader


@pytest.fixture
def recorded() -> Iterator[Recorded]:
    tracer_provider, spans, meter_provider, reader = _providers()
    instrument(tracer_provider=tracer_provider, meter_provider=meter_provider)
    try:
        yield Recorded(spans, reader, tracer_provider)
    finally:
        uninstrument()
        meter_provider.shutdown()
        tracer_provider.shutdown()


def _attrs(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


# -- token fetches -----------------------------------------------------------------------


def test_a_fetch_is_one_span_and_cache_hits_are_counted(
    client: ConnectClient, recorded: Recorded
) -> None:
    token = client.get_token(SLACK, subject=APP)
    for _ in range(5):
        assert client.get_token(SLACK, subject=APP) == token
    (span,) = recorded.finished()
    assert _attrs(span) == {
        "connect.connector": SLACK,
        "connect.subject.type": "app",
        "connect.reason": "miss",
        "connect.source": "connect",
        "connect.attempts": 1,
    }
    assert span.status.status_code is StatusCode.UNSET
    assert recorded.value("connect_auth.token.fetches", reason="miss", outcome="ok") == 1
    (duration,) = recorded.points("connect_auth.token.fetch.duration")
    assert duration.count == 1 and 0 < duration.sum < 30
    assert recorded.value("connect_auth.cache.hits") == 5
    assert recorded.value("connect_auth.cache.misses") == 1


def test_a_retried_503_is_one_span_with_its_attempts(
    emulator: ConnectEmulator, client: ConnectClient, recorded: Recorded
) -> None:
    emulator.fail_next(2, status=503)
    client.get_token(SLACK, subject=APP)
    (span,) = recorded.finished()
    assert _attrs(span)["connect.attempts"] == 3
    assert span.status.status_code is StatusCode.UNSET
    assert emulator.token_calls() == 3


def test_a_refusal_is_an_error_span_with_its_code(
    client: ConnectClient, recorded: Recorded, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="connect_auth")
    with pytest.raises(UserAuthorizationRequiredError):
        client.get_token(SLACK, subject={"type": "user", "id": "u_nobody"})
    (span,) = recorded.finished()
    assert span.status.status_code is StatusCode.ERROR
    assert _attrs(span)["connect.error.code"] == "user_authorization_required"
    assert _attrs(span)["error.type"] == "UserAuthorizationRequiredError"
    assert _attrs(span)["connect.subject.type"] == "user"
    assert not span.events  # no exception text recorded
    assert (
        recorded.value(
            "connect_auth.token.fetches",
            outcome="error",
            **{"error.code": "user_authorization_required"},
        )
        == 1
    )
    (line,) = [r for r in caplog.records if r.name == "connect_auth.tokens"]
    assert line.levelno == logging.INFO and "not authorized" in line.getMessage()


def test_reasons_forced_and_refresh_ahead(emulator: ConnectEmulator, recorded: Recorded) -> None:
    """A forced refresh, then a hit past the refresh point starts a background refresh."""
    now = [time.time()]
    with ConnectClient(
        base_url=emulator.url,
        vercel_token=emulator.oidc_token(),
        retry=fast_retry(),
        refresh_ahead_ms=3_000_000,  # from halfway through the token's life
        clock=lambda: now[0],
    ) as c:
        c.get_token(SLACK, subject=APP)
        c.get_token(SLACK, subject=APP, force_refresh=True)
        now[0] += 2000  # past halfway of a one-hour token
        tracer = recorded.tracer_provider.get_tracer("app")
        with tracer.start_as_current_span("GET /inbox") as parent:
            c.get_token(SLACK, subject=APP)
        wait_for(lambda: len(recorded.finished()) == 3)
    reasons = [_attrs(s)["connect.reason"] for s in recorded.finished()]
    assert reasons == ["miss", "forced", "refresh_ahead"]
    background = recorded.finished()[2]  # in a thread of its own, in the hit's trace
    assert background.parent is not None
    assert background.parent.span_id == parent.get_span_context().span_id
    assert recorded.value("connect_auth.token.fetches", reason="refresh_ahead") == 1


def test_a_provider_refusal_is_counted_and_its_refresh_says_why(
    emulator: ConnectEmulator, client: ConnectClient, recorded: Recorded
) -> None:
    url = emulator.provider_url(SLACK)
    with httpx.Client(auth=ConnectAuth(SLACK, subject=APP, client=client)) as http:
        assert http.get(url).status_code == 200
        emulator.revoke(client.get_token(SLACK, subject=APP))
        assert http.get(url).status_code == 200
    assert [_attrs(s)["connect.reason"] for s in recorded.finished()] == ["miss", "refused"]
    assert recorded.value("connect_auth.refusals", connector=SLACK) == 1


def test_barrier_threads_and_tasks_share_one_fetch_and_one_span(
    emulator: ConnectEmulator, client: ConnectClient, recorded: Recorded
) -> None:
    emulator.latency = 0.2  # the fetch is still running when the others ask
    results, errors = run_in_threads(8, lambda: client.get_token(SLACK, subject=APP))
    assert errors == [] and len(set(results)) == 1

    async def tasks() -> list[Any]:
        return await run_in_tasks(8, lambda: client.aget_token(SLACK, subject=ALICE))

    assert len(set(asyncio.run(tasks()))) == 1
    assert len(recorded.finished()) == 2
    assert recorded.value("connect_auth.cache.misses") == 16
    assert recorded.value("connect_auth.token.fetches") == 2


# -- trace context -------------------------------------------------------------------------


def test_the_fetch_span_is_a_child_of_the_callers_span(
    client: ConnectClient, recorded: Recorded
) -> None:
    tracer = recorded.tracer_provider.get_tracer("app")
    with tracer.start_as_current_span("GET /inbox") as parent:
        client.get_token(SLACK, subject=APP)
    (span,) = recorded.finished()
    assert span.parent is not None and span.parent.span_id == parent.get_span_context().span_id
    assert span.context.trace_id == parent.get_span_context().trace_id


@pytest.mark.anyio
async def test_an_async_fetch_led_by_a_detached_task_keeps_the_callers_trace(
    client: ConnectClient, recorded: Recorded
) -> None:
    tracer = recorded.tracer_provider.get_tracer("app")
    with tracer.start_as_current_span("GET /inbox") as parent:
        await client.aget_token(SLACK, subject=ALICE)
    (span,) = recorded.finished()
    assert span.parent is not None and span.parent.span_id == parent.get_span_context().span_id


# -- the other Connect calls -----------------------------------------------------------------


def test_revoke_authorize_install_metadata_and_jwks_have_spans(
    emulator: ConnectEmulator, client: ConnectClient, recorded: Recorded
) -> None:
    client.revoke_token(SLACK, subject=ALICE)
    client.start_authorization(SLACK, subject={"type": "user", "id": "u_carol"})
    client.get_connector_metadata(SLACK)
    with pytest.raises(Exception):  # noqa: B017 - whatever Connect answers, it has a span
        client.experimental_start_installation("nobody/none")
    webhooks._JWKS.clear()
    verify_connect_webhook(
        {"Authorization": f"Bearer {emulator.oidc_token()}"},
        project_id=emulator.project_id,
        environment=emulator.environment,
        jwks_url=emulator.jwks_url,
    )
    names = [s.name for s in recorded.spans.get_finished_spans()]
    assert names == [
        "connect_auth.revoke_token",
        "connect_auth.start_authorization",
        "connect_auth.get_connector_metadata",
        "connect_auth.start_installation",
        "connect_auth.fetch_jwks",
    ]
    by_name = {s.name: s for s in recorded.spans.get_finished_spans()}
    assert _attrs(by_name["connect_auth.revoke_token"]) == {
        "connect.connector": SLACK,
        "connect.subject.type": "user",
        "connect.attempts": 1,
    }
    install = by_name["connect_auth.start_installation"]
    assert install.status.status_code is StatusCode.ERROR
    assert _attrs(install)["connect.error.code"]
    assert _attrs(by_name["connect_auth.fetch_jwks"])["connect.attempts"] == 1
    assert recorded.value("connect_auth.token.fetches") == 0  # only token fetches count


# -- on and off ----------------------------------------------------------------------------


def test_nothing_is_recorded_before_instrument_or_after_uninstrument(
    client: ConnectClient,
) -> None:
    tracer_provider, spans, meter_provider, reader = _providers()
    recorded = Recorded(spans, reader, tracer_provider)
    try:
        client.get_token(SLACK, subject=APP)
        client.get_token(SLACK, subject=APP)  # a hit
        assert spans.get_finished_spans() == ()
        instrument(tracer_provider=tracer_provider, meter_provider=meter_provider)
        assert recorded.value("connect_auth.cache.hits") == 0
        client.get_token(SLACK, subject=APP)
        client.get_token(SLACK, subject=ALICE)
        assert recorded.value("connect_auth.cache.hits") == 1
        assert recorded.value("connect_auth.cache.misses") == 1
        uninstrument()
        client.get_token(SLACK, subject=APP)
        client.get_token(SLACK, subject=ALICE, force_refresh=True)
        assert len(recorded.finished()) == 1
        instrument(tracer_provider=tracer_provider, meter_provider=meter_provider)
        client.get_token(SLACK, subject=APP)
        assert recorded.value("connect_auth.cache.hits") == 2  # the hit while off is not
    finally:
        uninstrument()
        meter_provider.shutdown()
        tracer_provider.shutdown()


def test_hits_of_a_client_that_is_gone_stay_counted(
    emulator: ConnectEmulator, recorded: Recorded
) -> None:
    """A cumulative counter never goes back: a dropped client's hits stay in it."""
    c = ConnectClient(base_url=emulator.url, vercel_token=emulator.oidc_token())
    c.get_token(SLACK, subject=APP)
    c.get_token(SLACK, subject=APP)
    assert recorded.value("connect_auth.cache.hits") == 1
    c.close()
    del c
    assert recorded.value("connect_auth.cache.hits") == 1


# -- the shared cache -------------------------------------------------------------------------


def test_a_token_from_the_shared_cache_says_so(
    emulator: ConnectEmulator, redis_server: RedisServer, recorded: Recorded
) -> None:
    redis_server.flush()
    credential = emulator.oidc_token()  # one credential: one shared cache key
    clients = [
        ConnectClient(
            base_url=emulator.url,
            vercel_token=credential,
            retry=fast_retry(),
            shared_cache=RedisTokenCache(redis_server.url, encryption_key=KEY),
        )
        for _ in range(2)
    ]
    for c in clients:
        c.get_token(SLACK, subject=APP)
        c.close()
    first, second = recorded.finished()
    assert (_attrs(first)["connect.source"], _attrs(first)["connect.attempts"]) == ("connect", 1)
    assert (_attrs(second)["connect.source"], _attrs(second)["connect.attempts"]) == (
        "shared_cache",
        0,
    )
    assert recorded.value("connect_auth.token.fetches", source="shared_cache") == 1
    assert emulator.token_calls() == 1


def test_a_shared_cache_failure_is_counted(
    emulator: ConnectEmulator, recorded: Recorded, caplog: pytest.LogCaptureFixture
) -> None:
    dead = RedisServer(Path("."))  # never started: its port is free
    caplog.set_level(logging.WARNING, logger="connect_auth")
    with (
        RedisTokenCache(dead.url, encryption_key=KEY) as cache,
        ConnectClient(
            base_url=emulator.url,
            vercel_token=emulator.oidc_token(),
            retry=fast_retry(),
            shared_cache=cache,
        ) as c,
    ):
        assert c.get_token(SLACK, subject=APP)
    errors = recorded.points("connect_auth.shared_cache.errors")
    assert sum(p.value for p in errors) >= 1
    assert {dict(p.attributes)["error.type"] for p in errors} == {"ConnectionError"}
    (warning,) = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert warning.name == "connect_auth.redis"
    (span,) = recorded.finished()
    assert _attrs(span)["connect.source"] == "connect"


# -- secrets -------------------------------------------------------------------------------


def test_no_secret_in_any_span_metric_or_log(
    emulator: ConnectEmulator, recorded: Recorded, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    emulator.add_connector(ConnectorSpec(uid="demo/secretive", users={"u_secret_subject_id"}))
    credential = emulator.oidc_token()
    secret_user = {"type": "user", "id": "u_secret_subject_id"}
    secrets = {credential, "u_secret_subject_id", "u_waiting_subject_id"}
    with ConnectClient(base_url=emulator.url, vercel_token=credential, retry=fast_retry()) as c:
        secrets.add(c.get_token("demo/secretive", subject=secret_user))
        secrets.add(c.get_token("demo/secretive", subject=APP))
        request = c.start_authorization(
            "demo/secretive", subject={"type": "user", "id": "u_waiting_subject_id"}
        )
        secrets.add(request.verifier)
        c.revoke_token("demo/secretive", subject=secret_user)
        emulator.revoke_grant("demo/secretive", secret_user)
        emulator.fail_next(1, status=503)
        with pytest.raises(NoValidTokenError):
            c.get_token("demo/secretive", subject=secret_user)
    texts = [r.getMessage() for r in caplog.records]
    for span in recorded.spans.get_finished_spans():
        texts.append(span.to_json())
    data = recorded.reader.get_metrics_data()
    assert data is not None
    texts.append(data.to_json())
    assert len(recorded.spans.get_finished_spans()) == 5
    blob = "\n".join(texts)
    assert "u_secret_subject_id" not in blob
    for secret in secrets:
        assert secret not in blob


# -- logs ------------------------------------------------------------------------------------


def test_a_fetch_logs_one_line_and_a_quiet_day_logs_nothing_above_debug(
    emulator: ConnectEmulator, client: ConnectClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="connect_auth")
    client.get_token(SLACK, subject=APP)
    client.get_token(SLACK, subject=APP)  # a hit: no line
    emulator.fail_next(1, status=503)
    client.get_token(SLACK, subject=ALICE)
    ours = [r for r in caplog.records if r.name.startswith("connect_auth")]
    done = [r.getMessage() for r in ours if "fetch_token" in r.getMessage()]
    assert len(done) == 2
    assert all(m.startswith(f"fetch_token for {SLACK}: done (miss, from connect, ") for m in done)
    assert "2 attempt(s)" in done[1]
    assert all(r.levelno == logging.DEBUG for r in ours)
    assert not any(r.getMessage().startswith("connect_auth") for r in ours)


def test_every_logger_is_documented() -> None:
    root = Path(__file__).resolve().parent.parent
    names = set()
    for path in (root / "connect_auth").rglob("*.py"):
        names |= set(re.findall(r'getLogger\("([^"]+)"\)', path.read_text()))
    assert names >= {"connect_auth.tokens", "connect_auth.adapters", "connect_auth.redis"}
    page = (root / "docs" / "debugging.md").read_text()
    assert all(f"`{name}`" in page for name in names)
