"""Hostile and careless input, secrets in tracebacks, and races around revokes.

Each test names the item of the hardening review it covers.
"""

from __future__ import annotations

import copy
import json
import socket
import string
import threading
import time
import traceback
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import requests
from helpers import APP, SLACK, fast_retry, jwt_like, mock_client, token_json
from hypothesis import given, settings
from hypothesis import strategies as st

from connect_auth import (
    ConnectClient,
    ConnectError,
    ConnectUnavailableError,
    OidcTokenError,
)
from connect_auth.httpx import ConnectAuth as HttpxAuth
from connect_auth.requests import ConnectAuth as RequestsAuth
from connect_auth.testing import ConnectEmulator, ConnectorSpec

SECRET, FROM_ENV, HEADER = jwt_like("secret"), jwt_like("env"), jwt_like("header")
SCOPED, PULLED = jwt_like("scoped"), jwt_like("pulled")


def _everything_printed(exc: BaseException) -> str:
    """The whole chain as a traceback with the locals of every frame below the test's
    own, as Sentry or pytest ``--showlocals`` would show it, plus each exception's
    attributes."""
    shown: traceback.TracebackException | None = traceback.TracebackException.from_exception(
        exc, capture_locals=True
    )
    text = ""
    seen: set[int] = set()
    while shown is not None and id(shown) not in seen:
        seen.add(id(shown))
        for frame in shown.stack:
            if "/tests/" not in frame.filename:
                text += f"{frame.filename}:{frame.lineno} {frame.line} {frame.locals!r}"
        shown = shown.__cause__ or shown.__context__
    chain: list[BaseException] = [exc]
    while chain:  # every link, causes and contexts alike
        link = chain.pop()
        text += repr(link) + str(link) + repr(getattr(link, "__dict__", ""))
        chain += [e for e in (link.__cause__, link.__context__) if e is not None]
    return text


# -- item 2: a revoke overtakes a fetch in flight ---------------------------------------------


def test_token_minted_before_a_revoke_is_never_served_after_it() -> None:
    """A fetch mints t1, a revoke completes, then t1 arrives: neither the caller that led the
    fetch nor anyone later gets t1, and it is not cached."""
    minted: list[str] = []
    deliver = threading.Event()

    def connect_api(request: httpx.Request) -> httpx.Response:
        if request.method == "DELETE":
            return httpx.Response(204)
        token = f"t{len(minted) + 1}"
        minted.append(token)
        if token == "t1":
            assert deliver.wait(10)  # held until the revoke has returned
        return httpx.Response(200, json=token_json(token))

    with mock_client(connect_api) as client:
        got: list[str] = []
        leader = threading.Thread(target=lambda: got.append(client.get_token(SLACK, subject=APP)))
        leader.start()
        while not minted:
            time.sleep(0.001)
        client.revoke_token(SLACK, subject=APP)
        deliver.set()
        leader.join()
        assert got == ["t2"]  # the leader fetched again instead of handing out t1
        assert client.get_token(SLACK, subject=APP) == "t2"
    assert minted == ["t1", "t2"]


# -- item 4: credentials with stray whitespace or control characters --------------------------


def test_credential_from_env_is_stripped(
    emulator: ConnectEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A trailing newline (a paste or file artefact) in VERCEL_OIDC_TOKEN is dropped."""
    monkeypatch.setenv("VERCEL_OIDC_TOKEN", emulator.oidc_token() + "\n")
    with ConnectClient(base_url=emulator.url) as client:
        assert client.get_token(SLACK, subject=APP)


@pytest.mark.parametrize("bad", ["abc\ndef", "abc def", "abc\x00", "ab\x7fc", "tökén"])
def test_credential_with_control_characters_is_refused_before_any_call(bad: str) -> None:
    """An explicit credential that cannot be a header value: OidcTokenError, no request
    sent, and the value is not in the error."""
    sent: list[httpx.Request] = []
    with (
        mock_client(
            lambda r: sent.append(r) or httpx.Response(500),
            vercel_token=jwt_like("x" * 20) + bad,
        ) as client,
        pytest.raises(OidcTokenError, match="the vercel_token argument") as caught,
    ):
        client.get_token(SLACK, subject=APP)
    assert sent == []
    assert caught.value.code == "oidc_token_invalid"
    assert "x" * 20 not in _everything_printed(caught.value)


def test_local_protocol_errors_are_not_retried() -> None:
    """A request httpx cannot send (here: an illegal header the transport refuses) fails at
    once with a ConnectError that quotes nothing, instead of four retries and an outage."""
    attempts: list[int] = []

    def refuse(request: httpx.Request) -> httpx.Response:
        attempts.append(1)
        raise httpx.LocalProtocolError(f"Illegal header value b'Bearer {SECRET}'")

    with (
        mock_client(refuse, vercel_token=SECRET, retry=fast_retry()) as client,
        pytest.raises(ConnectError, match="could not be sent") as caught,
    ):
        client.get_token(SLACK, subject=APP)
    assert not isinstance(caught.value, ConnectUnavailableError)
    assert attempts == [1]
    assert "secret-credential" not in _everything_printed(caught.value)


# -- item 6: secrets in tracebacks and chained causes -----------------------------------------


@pytest.mark.anyio
async def test_no_credential_in_captured_locals_or_causes(anyio_backend: str) -> None:
    """Connect unreachable: the error, its causes and every frame's locals hold no
    credential (sync and async)."""
    secret = SECRET
    with ConnectClient(
        base_url="http://127.0.0.1:9",  # nothing listens on the discard port
        vercel_token=secret,
        retry=fast_retry(max_attempts=2),
    ) as client:
        with pytest.raises(ConnectUnavailableError) as sync_error:
            client.get_token(SLACK, subject=APP)
        with pytest.raises(ConnectUnavailableError) as async_error:
            await client.aget_token(SLACK, subject=APP)
    for caught in (sync_error.value, async_error.value):
        assert caught.__cause__ is not None
        assert getattr(caught.__cause__, "_request", None) is None
        assert secret not in _everything_printed(caught)


# -- items 7 and 8: connector and base URL input ----------------------------------------------


@pytest.mark.parametrize("connector", [".", "..", "slack/acme\n", "slack\r/x", "a\tb"])
def test_connectors_that_would_bend_the_path_are_refused(connector: str) -> None:
    """'.' and '..' would collapse the API path; control characters are refused too: both
    before any request."""
    sent: list[httpx.Request] = []
    with ConnectClient(
        base_url="http://127.0.0.1:9",
        vercel_token=jwt_like("credential"),
        transport=httpx.MockTransport(lambda r: sent.append(r) or httpx.Response(500)),
    ) as client:
        with pytest.raises(ValueError, match="connector"):
            client.get_token(connector, subject=APP)
        with pytest.raises(ValueError, match="connector"):
            client.revoke_token(connector, subject=APP)
    assert sent == []


def test_base_url_whitespace_is_stripped_or_refused() -> None:
    """Surrounding whitespace (a pasted env value) is dropped; inner whitespace or control
    characters are a ValueError at construction."""
    with ConnectClient(base_url="  http://127.0.0.1:8787/\n") as client:
        assert client.base_url == "http://127.0.0.1:8787"
    for bad in ("http://127.0.0.1:8787/a b", "http://127.0.0.1\n:8787", "http://127.0.0.1/\x00"):
        with pytest.raises(ValueError, match="base_url"):
            ConnectClient(base_url=bad)


# -- item 11: a follower with a larger buffer --------------------------------------------------


def test_follower_with_a_larger_buffer_gets_a_token_that_meets_it(
    emulator: ConnectEmulator,
) -> None:
    """The leader accepts a 60 s token with its 30 s buffer; a caller that joined the same
    fetch asking for 61 s of life does not take it, and fetches again."""
    emulator.add_connector(
        ConnectorSpec(uid="short/sixty", token_ttl=60, links={"prj_emulator": ["development"]})
    )
    emulator.latency = 0.5
    with ConnectClient(
        base_url=emulator.url, vercel_token=emulator.oidc_token(), retry=fast_retry()
    ) as client:
        results: dict[str, str] = {}

        def call(name: str, **options: Any) -> None:
            results[name] = client.get_token("short/sixty", subject=APP, **options)

        leader = threading.Thread(target=call, args=("leader",))
        leader.start()
        while not client._engine._flights:
            time.sleep(0.001)
        follower = threading.Thread(
            target=call, args=("follower",), kwargs={"validity_buffer_ms": 61_000}
        )
        follower.start()
        leader.join()
        follower.join()
    assert results["leader"] != results["follower"]
    assert emulator.token_calls() == 2
    issued = {t.token: t.subject for t in emulator.issued_tokens()}
    assert json.dumps(issued[results["follower"]]) == json.dumps(issued[results["leader"]])


# -- item 1: arguments mutated after a call -----------------------------------------------

_leaf = st.one_of(st.integers(-1000, 1000), st.text(max_size=5), st.booleans(), st.none())
_json = st.recursive(
    _leaf,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=6,
)
_claims = st.dictionaries(st.text(min_size=1, max_size=5), _json, max_size=4)
_scopes = st.lists(st.text(string.ascii_letters, min_size=1, max_size=6), min_size=1, max_size=4)
_details = st.lists(_claims.map(lambda d: {**d, "type": "custom"}), min_size=1, max_size=3)


def _mutate(value: Any) -> None:
    """Change ``value`` in place, at every depth."""
    if isinstance(value, dict):
        for inner in list(value.values()):
            _mutate(inner)
        value["mutated"] = True
    elif isinstance(value, list):
        for inner in value:
            _mutate(inner)
        value.append("mutated")


@settings(max_examples=150, deadline=None)
@given(scopes=_scopes, details=_details, claims=_claims)
def test_mutating_arguments_after_a_call_changes_nothing(
    scopes: list[str], details: list[dict[str, Any]], claims: dict[str, Any]
) -> None:
    """Whatever the caller does to its lists and dicts after a call, the request that was
    sent, and the cache key of those arguments, stay what they were at the call."""
    sent: list[dict[str, Any]] = []

    def connect_api(request: httpx.Request) -> httpx.Response:
        sent.append(json.loads(request.content))
        return httpx.Response(200, json=token_json(f"t{len(sent)}"))

    def arguments() -> dict[str, Any]:
        return {
            "subject": {"type": "jwt-bearer", "sub": "s", "additionalClaims": claims},
            "scopes": scopes,
            "authorization_details": details,
        }

    original = copy.deepcopy(arguments())
    with mock_client(connect_api) as client:
        auth = HttpxAuth(SLACK, client=client, **arguments())  # built cold, fetches later
        for value in (scopes, *details, claims):
            _mutate(value)
        details.append({"type": "added"})
        first = auth.token()  # the adapter sends what it was given, not what it is now
        # The same arguments as given, freshly built: a cache hit.
        assert client.get_token(SLACK, **copy.deepcopy(original)) == first
        assert len(sent) == 1
        assert sent[0]["scopes"] == original["scopes"]
        assert sent[0]["authorizationDetails"] == original["authorization_details"]
        assert sent[0]["subject"]["additionalClaims"] == original["subject"]["additionalClaims"]
        # The mutated arguments are another request: fetched, and sent as they are now.
        assert client.get_token(SLACK, **arguments()) != first
        assert len(sent) == 2 and sent[1]["scopes"] == scopes


# -- item 3: a redirect of the resent request ---------------------------------------------


@pytest.mark.parametrize("library", ["requests", "httpx"])
def test_redirect_after_a_resend_carries_the_new_token(
    emulator: ConnectEmulator, library: str
) -> None:
    """The token is revoked behind the app's back; /start refuses it, the resend with a new
    token is redirected to /landing on the same origin, and /landing gets the new token."""
    client = ConnectClient(base_url=emulator.url, vercel_token=emulator.oidc_token())
    emulator.revoke(client.get_token(SLACK, subject=APP))
    landing = emulator.provider_url(SLACK, "landing")
    start = emulator.provider_url(SLACK, "start") + "?style=http&redirect_when_live="
    start += quote(landing, "")
    if library == "requests":
        with requests.Session() as session:
            session.auth = RequestsAuth(SLACK, subject=APP, client=client)
            status = session.get(start, timeout=10).status_code
    else:
        auth = HttpxAuth(SLACK, subject=APP, client=client)
        with httpx.Client(auth=auth, follow_redirects=True) as h:
            status = h.get(start).status_code
    client.close()
    seen = [(c.path.rsplit("/", 1)[-1], c.token_state, c.status) for c in emulator.provider_calls]
    assert seen == [("start", "revoked", 401), ("start", "ignored", 307), ("landing", "live", 200)]
    assert status == 200


# -- items 12 to 15: memo, executor scope, emulator bind, the OIDC header ------------------


def test_request_memo_never_holds_a_raw_subject_token() -> None:
    """A token-exchange subject's token does not stay in the arguments memo."""
    from connect_auth import _client

    raw = "raw-subject-token-" + "z" * 20
    sent: list[httpx.Request] = []

    def connect_api(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(200, json=token_json("t"))

    with mock_client(connect_api) as client:
        assert client.get_token(SLACK, subject={"type": "token", "token": raw}) == "t"
        assert client.get_token(SLACK, subject={"type": "token", "token": raw}) == "t"
    assert len(sent) == 1  # still one cache entry for both calls
    assert raw not in repr(_client._requests_seen)
    assert raw not in repr(_client._last_call)


def test_a_subject_dict_changed_after_the_call_gets_its_own_token() -> None:
    """The arguments memo keeps its own copy of a subject dict: changing the caller's
    dict in place, or alternating two subjects, never serves another subject's token."""
    asked: list[str] = []

    def connect_api(request: httpx.Request) -> httpx.Response:
        user = json.loads(request.content)["subject"]["id"]
        asked.append(user)
        return httpx.Response(200, json=token_json("t-" + user))

    subject = {"type": "user", "id": "alice"}
    with mock_client(connect_api) as client:
        assert client.get_token(SLACK, subject=subject) == "t-alice"
        subject["id"] = "bob"
        assert client.get_token(SLACK, subject=subject) == "t-bob"
        for _ in range(3):
            assert client.get_token(SLACK, subject={"type": "user", "id": "alice"}) == "t-alice"
            assert client.get_token(SLACK, subject={"type": "user", "id": "bob"}) == "t-bob"
    assert asked == ["alice", "bob"]


def test_emulator_bound_to_a_wildcard_prints_a_loopback_url() -> None:
    """A wildcard bind is reached on loopback: the URL the emulator gives is one the
    library accepts."""
    from connect_auth.testing import reachable_host

    assert reachable_host("0.0.0.0") == "127.0.0.1"
    assert reachable_host("::") == "::1"
    assert reachable_host("127.0.0.1") == "127.0.0.1"
    for host in ("0.0.0.0", "::"):
        shown = reachable_host(host)
        ConnectClient(base_url=f"http://{f'[{shown}]' if ':' in shown else shown}:8787").close()


@pytest.mark.parametrize(
    ("vercel", "trust", "honoured"),
    [
        (None, None, False),
        ("1", None, True),
        (None, True, True),
        ("1", False, False),
    ],
)
def test_oidc_header_is_honoured_only_on_vercel_or_when_trusted(
    monkeypatch: pytest.MonkeyPatch, vercel: str | None, trust: bool | None, honoured: bool
) -> None:
    """Off Vercel a client could choose the credential with x-vercel-oidc-token: the
    middlewares ignore it unless running on Vercel or told to trust it."""
    from connect_auth import OidcWSGIMiddleware
    from connect_auth._oidc import resolve_credential

    monkeypatch.setenv("VERCEL_OIDC_TOKEN", FROM_ENV)
    if vercel is None:
        monkeypatch.delenv("VERCEL", raising=False)
    else:
        monkeypatch.setenv("VERCEL", vercel)
    seen: list[str] = []

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        seen.append(resolve_credential(None, now=time.time()).value)
        return [b""]

    OidcWSGIMiddleware(app, trust_header=trust)({"HTTP_X_VERCEL_OIDC_TOKEN": HEADER}, print)
    assert seen == [HEADER if honoured else FROM_ENV]


# -- item 5: Connect's answers are checked before they are trusted -------------------------


def _answering(body: bytes) -> ConnectClient:
    return mock_client(lambda r: httpx.Response(200, content=body))


@pytest.mark.parametrize(
    ("token", "expires_at"),
    [
        ("tok\r\nX-Injected: 1", "NOW"),
        ("tok en", "NOW"),
        ("tökén", "NOW"),
        ("good", 10**400),
        ("good", -1),
        ("good", 10**20),
    ],
)
def test_implausible_token_answers_are_refused(token: str, expires_at: Any) -> None:
    """A token that cannot be a header value, or an absurd expiry, is a
    ConnectResponseError that quotes no token; nothing is cached."""
    from connect_auth import ConnectResponseError

    expires = int((time.time() + 3600) * 1000) if expires_at == "NOW" else expires_at
    connector = '{"id": "i", "uid": "u", "type": "t"}'
    body = f'{{"token": {json.dumps(token)}, "expiresAt": {expires}, "connector": {connector}}}'
    body_bytes = body.encode()
    with _answering(body_bytes) as client:
        with pytest.raises(ConnectResponseError) as caught:
            client.get_token(SLACK, subject=APP)
        assert len(client._engine) == 0
    assert token not in str(caught.value)


@pytest.fixture
def endless_server() -> Any:
    """A loopback server that answers 200 with a 300 MiB body, counting what it sent."""
    listener = socket.create_server(("127.0.0.1", 0))
    sent = [0]
    stop = threading.Event()

    def serve() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            with conn:
                conn.recv(65536)
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % (300 << 20))
                chunk = b"x" * 65536
                try:
                    while sent[0] < 300 << 20 and not stop.is_set():
                        conn.sendall(chunk)
                        sent[0] += len(chunk)
                except OSError:
                    pass  # the client hung up: what we wanted

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}", sent
    stop.set()
    thread.join()
    listener.close()


@pytest.mark.anyio
async def test_oversized_answers_are_cut_off(endless_server: Any, anyio_backend: str) -> None:
    """A 300 MiB answer is refused once it passes 1 MiB: the client stops reading (and the
    server sending) long before the end, sync and async."""
    from connect_auth import ConnectResponseError

    url, sent = endless_server
    credential = jwt_like("credential")
    with ConnectClient(base_url=url, vercel_token=credential, retry=fast_retry()) as client:
        with pytest.raises(ConnectResponseError, match="larger than"):
            client.get_token(SLACK, subject=APP)
        with pytest.raises(ConnectResponseError, match="larger than"):
            await client.aget_token(SLACK, subject=APP)
    assert sent[0] < 64 << 20  # of 300 MiB: cut off after the cap and the socket buffers


# -- item 10: hosts= and plain http --------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "hosts", "attached"),
    [
        ("https://api.slack.com/x", None, True),
        ("http://api.slack.com/x", None, False),  # plain http off loopback: never
        ("http://127.0.0.1:8080/x", None, True),
        ("http://localhost/x", None, True),
        ("http://[::1]:8080/x", None, True),
        ("https://api.slack.com/x", ["api.slack.com"], True),
        ("https://API.Slack.com./x", ["api.slack.com"], True),
        ("https://api.slack.com:8443/x", ["api.slack.com"], False),  # not the default port
        ("https://api.slack.com:8443/x", ["api.slack.com:8443"], True),
        ("https://api.slack.com/x", ["api.slack.com:8443"], False),
        ("http://api.slack.com/x", ["api.slack.com"], False),
        ("https://evil.com/x", ["api.slack.com"], False),
        ("http://[::1]:8080/x", ["[::1]:8080"], True),
    ],
)
def test_hosts_and_schemes_decide_where_a_token_goes(
    url: str, hosts: list[str] | None, attached: bool
) -> None:
    """Through a real httpx and requests client: who gets the Authorization header."""
    seen: list[bool] = []

    def provider(request: httpx.Request) -> httpx.Response:
        seen.append("authorization" in request.headers)
        return httpx.Response(200)

    client = mock_client(lambda r: httpx.Response(200, json=token_json("t")))
    auth = HttpxAuth(SLACK, subject=APP, client=client, hosts=hosts)
    with httpx.Client(auth=auth, transport=httpx.MockTransport(provider)) as h:
        h.get(url)
    req_auth = RequestsAuth(SLACK, subject=APP, client=client, hosts=hosts)
    prepared = req_auth(requests.Request("GET", url).prepare())
    seen.append("Authorization" in prepared.headers)
    client.close()
    assert seen == [attached, attached]


@pytest.mark.parametrize(
    "entry", ["https://api.slack.com", "api.slack.com/", "user@api.slack.com", "a.com:0", ""]
)
def test_a_url_where_a_host_belongs_is_refused_with_a_hint(entry: str) -> None:
    """hosts= takes host names (and ports), not URLs: a ValueError says what to write."""
    with pytest.raises(ValueError, match="hosts entries are host names"):
        HttpxAuth(SLACK, subject=APP, hosts=[entry])


# -- item 9: .env.local is read from the project only ----------------------------------------


@pytest.fixture
def no_env_token(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.delenv("VERCEL_OIDC_TOKEN", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return tmp_path


def _resolve_from(folder: Path, monkeypatch: pytest.MonkeyPatch) -> str | None:
    from connect_auth._oidc import resolve_credential

    folder.mkdir(parents=True, exist_ok=True)
    monkeypatch.chdir(folder)
    try:
        return resolve_credential(None, now=time.time()).value
    except OidcTokenError:
        return None


def test_dotenv_in_a_shared_parent_is_never_read(
    no_env_token: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A .env.local planted in a parent such as /tmp is not the credential of a folder
    below it that belongs to no project."""
    (no_env_token / ".env.local").write_text(f"VERCEL_OIDC_TOKEN={jwt_like('planted')}\n")
    assert _resolve_from(no_env_token / "work" / "job", monkeypatch) is None


def test_dotenv_walk_stops_at_the_project_root(
    no_env_token: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Inside a project (.vercel/, .git/ or pyproject.toml) the walk goes up to its root
    and no further."""
    (no_env_token / ".env.local").write_text(f"VERCEL_OIDC_TOKEN={jwt_like('planted')}\n")
    project = no_env_token / "project"
    (project / ".git").mkdir(parents=True)
    assert _resolve_from(project / "src" / "app", monkeypatch) is None
    (project / ".env.local").write_text(f"VERCEL_OIDC_TOKEN={jwt_like('mine')}\n")
    assert _resolve_from(project / "src" / "app", monkeypatch) == jwt_like("mine")


def test_dotenv_walk_never_goes_above_home(
    no_env_token: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A project marker above the home folder does not pull the walk out of it."""
    (no_env_token / "pyproject.toml").write_text("")
    (no_env_token / ".env.local").write_text(f"VERCEL_OIDC_TOKEN={jwt_like('above')}\n")
    assert _resolve_from(no_env_token / "home" / "code", monkeypatch) is None


@pytest.mark.parametrize(
    "text",
    [
        f"VERCEL_OIDC_TOKEN={PULLED} # pulled today\n",
        f"\ufeffVERCEL_OIDC_TOKEN={PULLED}\n",
        f"export\tVERCEL_OIDC_TOKEN={PULLED}\n",
        f'VERCEL_OIDC_TOKEN="{PULLED}"\n',
    ],
)
def test_dotenv_lines_as_editors_and_shells_write_them(
    text: str, no_env_token: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Inline comments, a byte-order mark and `export` with a tab are read right."""
    project = no_env_token / "project"
    (project / ".vercel").mkdir(parents=True)
    (project / ".env.local").write_text(text, encoding="utf-8")
    assert _resolve_from(project, monkeypatch) == PULLED


# -- item 13: the request scope and executor threads ---------------------------------------


@pytest.mark.anyio
async def test_scope_reaches_executor_threads_only_with_the_context(
    monkeypatch: pytest.MonkeyPatch, anyio_backend: str
) -> None:
    """As documented: a bare executor thread does not see oidc_token_scope (it falls back to
    VERCEL_OIDC_TOKEN); copy_context().run and anyio.to_thread carry it over."""
    import contextvars
    from concurrent.futures import ThreadPoolExecutor

    import anyio

    from connect_auth import oidc_token_scope
    from connect_auth._oidc import resolve_credential

    monkeypatch.setenv("VERCEL_OIDC_TOKEN", FROM_ENV)

    def seen() -> str:
        return resolve_credential(None, now=time.time()).value

    with oidc_token_scope(SCOPED), ThreadPoolExecutor(1) as pool:
        assert pool.submit(seen).result() == FROM_ENV
        assert pool.submit(contextvars.copy_context().run, seen).result() == SCOPED
        assert await anyio.to_thread.run_sync(seen) == SCOPED
