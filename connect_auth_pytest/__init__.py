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
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from connect_auth.testing import ConnectEmulator

__all__ = ["connect_emulator", "pytest_addoption", "pytest_configure"]

_INI = "connect_emulator_config"


def pytest_addoption(parser: pytest.Parser) -> None:
    """The ``connect_emulator_config`` ini option."""
    parser.addini(
        _INI,
        "a .toml or .json file (relative to the ini file) that configures every "
        "connect_emulator fixture",
        default="",
    )


def pytest_configure(config: pytest.Config) -> None:
    """Register the ``connect_emulator`` marker."""
    config.addinivalue_line(
        "markers",
        "connect_emulator(config=None, retry=None, **kwargs): configure this test's "
        "connect_emulator: a config file (relative to the test file) or ConnectEmulator "
        "arguments such as connectors= and project_id=; retry= replaces the fast retry "
        "policy of the default client",
    )


@pytest.fixture
def connect_emulator(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[ConnectEmulator]:
    """A running `connect_auth.testing.ConnectEmulator` that the library points at.

    Sets ``CONNECT_AUTH_BASE_URL`` and ``VERCEL_OIDC_TOKEN`` for the test, and
    gives the module functions and adapters a fresh default client (so no
    token cached by an earlier test leaks in) whose retries wait milliseconds
    (`connect_auth.testing.FAST_RETRY`). Everything is undone afterwards.

    Configure it with ``@pytest.mark.connect_emulator(config="connect.toml")``,
    ``@pytest.mark.connect_emulator(connectors=[...])``, or for every test with
    the ``connect_emulator_config`` ini option. Needs the ``testing`` extra:
    ``pip install 'connect-auth[testing]'``.
    """
    from connect_auth import ConnectClient, set_default_client
    from connect_auth.testing import FAST_RETRY

    marker = request.node.get_closest_marker("connect_emulator")
    options: dict[str, Any] = dict(marker.kwargs) if marker is not None else {}
    retry = options.pop("retry", None) or FAST_RETRY
    with _emulator(request, options) as emulator:
        monkeypatch.setenv("CONNECT_AUTH_BASE_URL", emulator.url)
        monkeypatch.setenv("VERCEL_OIDC_TOKEN", emulator.oidc_token())
        monkeypatch.delenv("VERCEL_REGION", raising=False)
        client = ConnectClient(base_url=emulator.url, retry=retry)
        client._follow_env = True  # as the process-wide client does
        _close(set_default_client(client))
        try:
            yield emulator
        finally:
            _close(set_default_client(None))


def _emulator(request: pytest.FixtureRequest, options: dict[str, Any]) -> ConnectEmulator:
    """The emulator the marker, the ini option or the defaults ask for (not started)."""
    from connect_auth.testing import ConnectEmulator

    config = options.pop("config", None)
    if config is not None:
        path = Path(request.node.path).parent / config
    elif request.config.getini(_INI):
        base = request.config.inipath.parent if request.config.inipath else Path.cwd()
        path = base / request.config.getini(_INI)
    else:
        return ConnectEmulator(**options)
    return ConnectEmulator.from_file(path, **options)


def _close(client: object) -> None:
    close = getattr(client, "close", None)
    if close is not None:
        close()
