"""Base URL resolution."""

from __future__ import annotations

import pytest

from connect_auth._config import is_loopback_host, resolve_base_url
from connect_auth.testing import ConnectEmulator


@pytest.mark.parametrize(
    ("base_url", "region", "env", "expected"),
    [
        (None, None, {}, "https://api.vercel.com"),
        (None, None, {"VERCEL_REGION": "iad1"}, "https://api-iad1.vercel.com"),
        (None, "sfo1", {"VERCEL_REGION": "iad1"}, "https://api-sfo1.vercel.com"),
        (None, "", {"VERCEL_REGION": "iad1"}, "https://api.vercel.com"),
        (None, "sfo1", {"CONNECT_AUTH_BASE_URL": "http://127.0.0.1:9/"}, "http://127.0.0.1:9"),
        (
            "https://x.example/",
            "sfo1",
            {"CONNECT_AUTH_BASE_URL": "http://localhost:1"},
            "https://x.example",
        ),
        ("http://[::1]:8080", None, {}, "http://[::1]:8080"),
    ],
)
def test_precedence(
    base_url: str | None, region: str | None, env: dict[str, str], expected: str
) -> None:
    """Explicit > env override > region > VERCEL_REGION > global."""
    assert resolve_base_url(base_url, region, env) == expected


@pytest.mark.parametrize(
    "bad", ["http://api.vercel.com", "ftp://x", "not a url", "https://x/?q=1", "http://10.0.0.1"]
)
def test_bad_urls_are_refused(bad: str) -> None:
    """Cleartext only to loopback; only absolute http(s) URLs."""
    with pytest.raises(ValueError):
        resolve_base_url(bad, None, {})


def test_bad_region() -> None:
    """A region with odd characters cannot build a host name."""
    with pytest.raises(ValueError, match="region"):
        resolve_base_url(None, "iad1.evil.com/", {})


def test_loopback_hosts() -> None:
    """localhost, 127/8 and ::1 are loopback; others are not."""
    assert all(map(is_loopback_host, ["localhost", "127.0.0.1", "127.9.9.9", "::1", "[::1]"]))
    assert not any(map(is_loopback_host, ["10.0.0.1", "example.com", "0.0.0.0"]))


def test_default_client_follows_a_base_url_changed_later(
    connect_emulator: ConnectEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A test that sets CONNECT_AUTH_BASE_URL after the default client exists is heard
    on the next cache miss."""
    import connect_auth

    connect_auth.get_token("slack/acme-slack", subject={"type": "app"})
    with ConnectEmulator() as other:
        monkeypatch.setenv("CONNECT_AUTH_BASE_URL", other.url)
        monkeypatch.setenv("VERCEL_OIDC_TOKEN", other.oidc_token())
        connect_auth.get_token("slack/acme-slack", subject={"type": "app"})
        assert other.token_calls() == 1
        assert connect_auth.default_client().base_url == other.url
    assert connect_emulator.token_calls() == 1
