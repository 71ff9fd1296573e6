"""connect_auth's pytest plugin (entry point ``pytest11``): the ``connect_emulator`` fixture.

This module is loaded in every pytest run of every project that has
connect_auth installed, so it imports nothing but pytest: the emulator and the
library load when a test asks for the fixture.

    def test_posts_to_slack(connect_emulator):
        token = connect_auth.get_token("slack/acme-slack", subject={"type": "app"})
        assert connect_emulator.token_calls() == 1
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from connect_auth.testing import ConnectEmulator

__all__ = ["connect_emulator"]


@pytest.fixture
def connect_emulator(monkeypatch: pytest.MonkeyPatch) -> Iterator[ConnectEmulator]:
    """A running :class:`connect_auth.testing.ConnectEmulator` that the library points at.

    Sets ``CONNECT_AUTH_BASE_URL`` and ``VERCEL_OIDC_TOKEN`` for the test, and
    gives the module functions and adapters a fresh default client (so no
    token cached by an earlier test leaks in). Everything is undone afterwards.
    Needs the ``testing`` extra: ``pip install 'connect-auth[testing]'``.
    """
    from connect_auth import set_default_client
    from connect_auth.testing import ConnectEmulator

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
