"""Shared fixtures: an emulator-backed client with fast retries, and a token scanner."""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator

import pytest
from helpers import fast_retry

from connect_auth import ConnectClient
from connect_auth.testing import ConnectEmulator
from connect_auth.testing._redis_servers import RedisServer

pytest_plugins = ["pytester"]  # the fixture's own tests run inner pytest sessions


def pytest_configure(config: pytest.Config) -> None:
    # Django's request objects, authlib's Django client and the Django sign-in app
    # (tests/django_signin.py) need settings: cookie sessions, no database.
    import django
    import django.conf

    if not django.conf.settings.configured:
        django.conf.settings.configure(
            SECRET_KEY="connect_auth tests only",
            ALLOWED_HOSTS=["127.0.0.1", "localhost"],
            ROOT_URLCONF="django_signin",
            INSTALLED_APPS=["django.contrib.sessions"],
            MIDDLEWARE=["django.contrib.sessions.middleware.SessionMiddleware"],
            SESSION_ENGINE="django.contrib.sessions.backends.signed_cookies",
            USE_TZ=True,
        )
        django.setup()


@pytest.fixture
def emulator(connect_emulator: ConnectEmulator) -> ConnectEmulator:
    """The plugin's emulator (also points the default client at it)."""
    return connect_emulator


@pytest.fixture
def client(emulator: ConnectEmulator) -> Iterator[ConnectClient]:
    """A client of its own against the emulator, with fast retries."""
    with ConnectClient(
        base_url=emulator.url, vercel_token=emulator.oidc_token(), retry=fast_retry()
    ) as c:
        yield c


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A real redis-server on loopback for the whole run (started by the suite itself)."""
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest.fixture
def debug_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """Capture every log record at DEBUG, for the leak scans."""
    caplog.set_level(logging.DEBUG)
    return caplog


@pytest.fixture
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(getattr(request, "param", "asyncio"))


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    # Every async test runs on asyncio and on trio.
    if "anyio_backend" in metafunc.fixturenames:
        metafunc.parametrize("anyio_backend", ["asyncio", "trio"], indirect=True)


@pytest.fixture(scope="session")
def chromium() -> str:
    """Debian's Chromium, installed by the suite itself on a machine without it (CI
    starts from a fresh machine; Debian's packages are reachable there). Two test runs
    started together take turns: dpkg's own lock would fail the second one."""
    path = shutil.which("chromium")
    if path is not None:
        return path
    with open(os.path.join(tempfile.gettempdir(), "connect_auth-apt.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        path = shutil.which("chromium")  # the other run may have installed it meanwhile
        if path is None:
            done = _apt_install("chromium")
            path = shutil.which("chromium")
            assert path is not None, f"could not install chromium: {done.stderr.decode()[-2000:]}"
    return path


def _apt_install(package: str) -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", package]
    done = subprocess.run(install, env=env, capture_output=True, timeout=1200, check=False)
    if done.returncode != 0:  # a fresh machine may have no package lists yet
        update = ["apt-get", "update", "-q"]
        subprocess.run(update, env=env, capture_output=True, timeout=600, check=False)
        done = subprocess.run(install, env=env, capture_output=True, timeout=1200, check=False)
    return done
