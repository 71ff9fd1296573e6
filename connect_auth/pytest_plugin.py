"""pytest plugin (entry point ``pytest11``): the ``connect_emulator`` fixture.

Installing connect_auth makes the fixture available in any project::

    def test_posts_to_slack(connect_emulator):
        token = connect_auth.get_token("slack/acme-slack", subject={"type": "app"})
        assert connect_emulator.token_calls() == 1
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ._api import set_default_client
from .testing import ConnectEmulator


@pytest.fixture
def connect_emulator(monkeypatch: pytest.MonkeyPatch) -> Iterator[ConnectEmulator]:
    """A running :class:`ConnectEmulator` that the library points at.

    Sets ``CONNECT_AUTH_BASE_URL`` and ``VERCEL_OIDC_TOKEN`` for the test, and
    gives the module functions and adapters a fresh default client (so no
    token cached by an earlier test leaks in). Everything is undone afterwards.
    """
    with ConnectEmulator() as emulator:
        monkeypatch.setenv("CONNECT_AUTH_BASE_URL", emulator.url)
        monkeypatch.setenv("VERCEL_OIDC_TOKEN", emulator.oidc_token())
        monkeypatch.delenv("VERCEL_REGION", raising=False)
        _close(set_default_client(None))
        try:
            yield emulator
        finally:
            _close(set_default_client(None))


def _close(client: object) -> None:
    close = getattr(client, "close", None)
    if close is not None:
        close()
