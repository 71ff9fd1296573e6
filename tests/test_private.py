"""Other libraries' private attributes: read in one module, and when a release lacks
one, a warning once and a closed door (simulated here by renaming what is read)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from helpers import SLACK, fast_retry

from connect_auth import ConnectClient, _private
from connect_auth.testing import ConnectEmulator

APP = {"type": "app"}
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def fresh_warnings() -> Iterator[None]:
    """Each test sees the first warning of its own."""
    saved = set(_private._warned)
    _private._warned.clear()
    yield
    _private._warned.clear()
    _private._warned.update(saved)


def test_only_one_module_reads_other_libraries_private_attributes() -> None:
    """The attribute names live in `_private`; no other module spells them."""
    names = [
        _private.AIOHTTP_TIMER,
        _private.HTTPX_TRANSPORT,
        _private.HTTPX_MOUNTS,
        _private.HTTPX_POOL,
        _private.HTTPCORE_BACKEND,
        _private.HTTPX_ITERATOR,
        "_data",
        "encodekey",
    ]
    for path in (ROOT / "connect_auth").rglob("*.py"):
        if path.name == "_private.py":
            continue
        text = path.read_text()
        for name in names:
            # Attribute access on something other than self/cls, or a getattr by name.
            found = re.search(rf"(?<!self)(?<!cls)\.{name}\b|getattr\([^)]*\"{name}\"", text)
            assert found is None, (path.name, name)


def test_aiohttp_without_its_timer_sends_tokens_only_to_listed_hosts(
    client: ConnectClient,
    emulator: ConnectEmulator,
    fresh_warnings: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A hop cannot be told from a new request: without hosts= no token goes anywhere;
    with hosts= only those hosts get one, so a redirect elsewhere gets none."""
    import aiohttp

    from connect_auth.aiohttp import ConnectAuth as AiohttpAuth

    monkeypatch.setattr(_private, "AIOHTTP_TIMER", "_no_such_timer")
    here = emulator.provider_url(SLACK, host="127.0.0.1") + "?style=http"
    there = emulator.provider_url(SLACK, host="localhost") + "?style=http"
    redirect = here + "&redirect=" + quote(there, safe="")

    async def run(auth: AiohttpAuth) -> list[int]:
        async with aiohttp.ClientSession(middlewares=(auth,)) as session:
            statuses = []
            for url in (here, redirect):
                async with session.get(url) as r:
                    statuses.append(r.status)
            return statuses

    with pytest.warns(RuntimeWarning, match="ClientRequest._no_such_timer.*hosts=") as said:
        assert asyncio.run(run(AiohttpAuth(SLACK, subject=APP, client=client))) == [401, 401]
    assert len(said) == 1  # once per process, not per request
    # here, then the redirect's two hops: none carried a token
    assert [c.had_authorization for c in emulator.provider_calls] == [False, False, False]

    listed = AiohttpAuth(SLACK, subject=APP, client=client, hosts=[f"127.0.0.1:{emulator.port}"])
    assert asyncio.run(run(listed)) == [200, 401]
    # here and the redirect's first hop (listed) got one; its hop to localhost did not
    assert [c.had_authorization for c in emulator.provider_calls[3:]] == [True, True, False]


def test_aiohttp_with_its_timer_says_nothing(
    client: ConnectClient, emulator: ConnectEmulator, fresh_warnings: None
) -> None:
    import aiohttp

    from connect_auth.aiohttp import ConnectAuth as AiohttpAuth

    async def run() -> int:
        auth = AiohttpAuth(SLACK, subject=APP, client=client)
        async with (
            aiohttp.ClientSession(middlewares=(auth,)) as session,
            session.get(emulator.provider_url(SLACK)) as r,
        ):
            return r.status

    assert asyncio.run(run()) == 200  # filterwarnings = error: any warning fails this
    assert _private._warned == set()


@pytest.mark.parametrize("attribute", ["HTTPCORE_BACKEND", "HTTPX_POOL", "HTTPX_MOUNTS"])
def test_sync_deadline_without_httpcore_internals_says_so_and_still_works(
    emulator: ConnectEmulator,
    fresh_warnings: None,
    monkeypatch: pytest.MonkeyPatch,
    attribute: str,
) -> None:
    """Tokens still come; the warning says attempts are bounded by socket timeouts only."""
    monkeypatch.setattr(_private, attribute, "_no_such_attribute")
    with (
        ConnectClient(
            base_url=emulator.url, vercel_token=emulator.oidc_token(), retry=fast_retry()
        ) as client,
        pytest.warns(RuntimeWarning, match="socket timeouts only"),
    ):
        assert client.get_token(SLACK, subject=APP)


# -- one loopback rule ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("localhost", True),
        ("LOCALHOST", True),
        ("app.localhost", True),
        ("127.0.0.1", True),
        ("127.0.0.2", True),
        ("::1", True),
        ("[::1]", True),
        ("example.com", False),
        ("localhost.example.com", False),
        ("notlocalhost", False),
        ("10.0.0.1", False),
        ("0.0.0.0", False),
    ],
)
def test_one_loopback_rule_everywhere(host: str, loopback: bool) -> None:
    """The adapters' plain-http rule, the Connect URL rule and the consent callback rule
    agree on every host."""
    from connect_auth._authorize import check_callback_url
    from connect_auth._config import is_loopback_host, is_secure_url

    assert is_loopback_host(host) is loopback
    netloc = f"[{host.strip('[]')}]" if ":" in host else host
    assert is_secure_url(f"http://{netloc}/") is loopback
    if loopback:
        assert check_callback_url(f"http://{netloc}/cb") == f"http://{netloc}/cb"
    else:
        with pytest.raises(ValueError, match="loopback"):
            check_callback_url(f"http://{netloc}/cb")


@pytest.mark.parametrize("environb", [True, False], ids=["os.environb", "os.environ"])
def test_a_changed_credential_in_the_environment_is_seen_at_once(
    emulator: ConnectEmulator, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, environb: bool
) -> None:
    """Through os.environb (POSIX) or os.environ (Windows has no bytes environment),
    the next call sees a new VERCEL_OIDC_TOKEN, and the variable file still wins."""
    from connect_auth import _oidc

    if not environb:
        monkeypatch.setattr(_oidc, "_environb", None)
    with ConnectClient(base_url=emulator.url, retry=fast_retry()) as client:
        monkeypatch.setenv("VERCEL_OIDC_TOKEN", emulator.oidc_token())
        client.get_token(SLACK, subject=APP)
        monkeypatch.setenv("VERCEL_OIDC_TOKEN", emulator.oidc_token(ttl=1800))
        client.get_token(SLACK, subject=APP)
        assert emulator.token_calls() == 2  # a new credential is a new cache key
        (tmp_path / "token").write_text(emulator.oidc_token(ttl=900))
        monkeypatch.setenv("VERCEL_OIDC_TOKEN_FILE", str(tmp_path / "token"))
        client.get_token(SLACK, subject=APP)
        assert emulator.token_calls() == 3
