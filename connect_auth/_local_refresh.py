"""Local development: the Vercel OIDC token refreshes itself through the Vercel CLI's
login, as ``@vercel/oidc`` 3.x does.

When the credential from the environment, the token file or ``.env.local`` is
missing or expired, off Vercel, in a checkout that ``vercel link`` linked:

1. the token ``@vercel/oidc`` saved, ``<data>/com.vercel.token/<projectId>.json``,
   if it is still valid (both tools share the file);
2. else the CLI login, ``<data>/com.vercel.cli/auth.json``, refreshed first with
   its refresh token if it expired (and written back), asks the Vercel API for a
   new project token, which is saved for the next process.

One process refreshes a project at a time (a lock file beside the token file);
the others wait and read what it saved. ``<data>`` is ``XDG_DATA_HOME``, else the
platform's user data folder.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from ._config import is_secure_url
from ._errors import OidcTokenError
from ._oidc import SecretStr, jwt_exp
from ._wire import Bearer

__all__ = [
    "CLI_CLIENT_ID",
    "LocalRefresh",
    "Project",
    "data_dir",
    "find_project",
    "refresh_applies",
]

#: The Vercel CLI's public OAuth client id (its logins are refreshed under it).
CLI_CLIENT_ID = "cl_HYyOPBNtFMfHhaUn9L4QPfTZz6TP47bp"
DEFAULT_ISSUER = "https://vercel.com"
ISSUER_ENV = "CONNECT_AUTH_VERCEL_ISSUER"
#: ``0``, ``false``, ``no`` or ``off`` turns the local refresh off.
SWITCH_ENV = "CONNECT_AUTH_LOCAL_REFRESH"
#: A saved token or CLI login with less than this many seconds left is renewed.
MARGIN = 60.0
#: Seconds to wait for another process's refresh of the same project.
LOCK_WAIT = 60.0
#: Seconds each call to Vercel may take.
TIMEOUT = 10.0
_PROJECT_ID = re.compile(r"^[A-Za-z0-9_-]{1,128}$")


@dataclass(frozen=True)
class Project:
    """A linked checkout: ``.vercel/project.json``'s ``projectId`` and ``orgId``."""

    id: str
    org_id: str | None
    file: Path


def refresh_applies(environ: Mapping[str, str]) -> bool:
    """Whether the local refresh may run: not on Vercel, and not turned off."""
    if environ.get("VERCEL", "").strip():
        return False
    return environ.get(SWITCH_ENV, "").strip().lower() not in ("0", "false", "no", "off")


def data_dir(environ: Mapping[str, str], platform: str, home: Path) -> Path:
    """Where the Vercel CLI and ``@vercel/oidc`` keep their files."""
    xdg = environ.get("XDG_DATA_HOME", "").strip()
    if xdg:
        return Path(xdg)
    if platform == "darwin":
        return home / "Library" / "Application Support"
    if platform == "win32":
        local = environ.get("LOCALAPPDATA", "").strip()
        return Path(local) if local else home / "AppData" / "Local"
    return home / ".local" / "share"


def find_project(start: Path, home: Path) -> Project | None:
    """The nearest ``.vercel/project.json`` from ``start`` up (not above ``home`` when
    ``start`` is inside it), or None: the checkout is not linked."""
    for folder in (start, *start.parents):
        file = folder / ".vercel" / "project.json"
        if file.is_file():
            return _read_project(file)
        if folder == home:
            return None
    return None


def _read_project(file: Path) -> Project:
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise _failure(
            f"{file} cannot be read ({type(exc).__name__})", "run `vercel link`"
        ) from None
    project = data.get("projectId") if isinstance(data, dict) else None
    org = data.get("orgId") if isinstance(data, dict) else None
    if not isinstance(project, str) or not _PROJECT_ID.match(project):
        raise _failure(f"{file} has no valid projectId", "run `vercel link` again")
    if org is not None and (not isinstance(org, str) or not _PROJECT_ID.match(org)):
        raise _failure(f"{file} has an invalid orgId", "run `vercel link` again")
    return Project(project, org, file)


class LocalRefresh:
    """Renews the credential of a linked checkout (see the module docstring).

    Args:
        api_base: the Vercel API that mints project tokens (the client's base URL).
        environ: the environment to read (``XDG_DATA_HOME``, the switches).
        cwd: where the lookup for ``.vercel/project.json`` starts.
        transport: an httpx transport, for tests.
    """

    def __init__(
        self,
        api_base: str,
        *,
        environ: Mapping[str, str] = os.environ,
        cwd: Callable[[], Path] = Path.cwd,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.api_base = api_base
        self._environ = environ
        self._cwd = cwd
        self._transport = transport

    def token(self, now: float, why: OidcTokenError) -> str:
        """A valid credential, or an `OidcTokenError` saying what to run. ``why`` is
        the lookup's own error, raised as it is when the refresh does not apply (on
        Vercel, turned off, or a checkout that is not linked)."""
        if not refresh_applies(self._environ):
            raise why
        home = Path.home()
        project = find_project(self._cwd(), home)
        if project is None:
            raise why
        data = data_dir(self._environ, sys.platform, home)
        file = data / "com.vercel.token" / f"{project.id}.json"
        remembered = _remembered.get(file)
        if remembered is not None and remembered[1] > now + MARGIN:
            return remembered[0]
        with _process_lock, _exclusive(file.with_name(file.name + ".lock")):
            value = _saved_token(file, now)  # another process may have refreshed it
            if value is None:
                value = self._mint(project, data, now)
                _write_private(file, {"token": value})
        _remembered[file] = (value, jwt_exp(value) or 0.0)
        return value

    # -- the Vercel API -----------------------------------------------------------------

    def _mint(self, project: Project, data: Path, now: float) -> SecretStr:
        login = data / "com.vercel.cli" / "auth.json"
        cli_token = self._cli_token(login, now)
        if cli_token is None:
            return _from_cli_command(project, now)
        query: dict[str, str] = {"source": "vercel-oidc-refresh"}
        if project.org_id:
            query["teamId"] = project.org_id
        url = f"{self.api_base}/v1/projects/{project.id}/token"
        with self._http() as http:
            try:
                answer = http.post(url, params=query, auth=Bearer(cli_token))
            except httpx.HTTPError as exc:
                raise _unreachable(url, exc) from None
        if answer.status_code in (401, 403):
            raise _failure(
                f"Vercel refused the CLI login for project {project.id} "
                f"(HTTP {answer.status_code})",
                "run `vercel login`, or `vercel link` if the project moved",
            )
        if answer.status_code == 404:
            raise _failure(
                f"Vercel knows no project {project.id} (from {project.file})",
                "run `vercel link`",
            )
        return _minted(answer, "the project token answer", now)

    def _cli_token(self, login: Path, now: float) -> SecretStr | None:
        """The CLI login's token, refreshed and written back if it expired; None when
        the CLI keeps its login elsewhere (the OS keyring) and its command is at hand."""
        try:
            saved = json.loads(login.read_text(encoding="utf-8"))
        except FileNotFoundError:
            saved = None
        except (OSError, ValueError) as exc:
            raise _failure(
                f"{login} cannot be read ({type(exc).__name__})", "run `vercel login`"
            ) from None
        if not isinstance(saved, dict) or not isinstance(saved.get("token"), str):
            if shutil.which("vercel") is not None:
                return None
            raise _failure(f"no Vercel CLI login at {login}", "run `vercel login`")
        token = SecretStr(saved.pop("token"))
        refresh = saved.pop("refreshToken", None)
        expires_at = saved.get("expiresAt")
        if not isinstance(expires_at, int | float) or expires_at > now + MARGIN:
            return token
        if not isinstance(refresh, str) or not refresh:
            raise _failure("the Vercel CLI login expired", "run `vercel login`")
        token, refresh, saved["expiresAt"] = self._refreshed_login(SecretStr(refresh), now)
        _write_private(login, {**saved, "token": token, "refreshToken": refresh})
        return token

    def _refreshed_login(self, refresh: SecretStr, now: float) -> tuple[SecretStr, str, int]:
        """The OAuth ``refresh_token`` grant at the issuer's token endpoint."""
        issuer = self._environ.get(ISSUER_ENV, "").strip().rstrip("/") or DEFAULT_ISSUER
        if not is_secure_url(issuer):
            raise ValueError(f"{ISSUER_ENV} {issuer!r} must be https (or http on loopback)")
        discovery = issuer + "/.well-known/openid-configuration"
        with self._http() as http:
            try:
                found = http.get(discovery)
                endpoint = found.json().get("token_endpoint") if found.is_success else None
                if not isinstance(endpoint, str) or not is_secure_url(endpoint):
                    raise _failure(f"{discovery} names no usable token endpoint", "try again later")
                answer = http.post(
                    endpoint,
                    data={
                        "grant_type": "refresh_token",
                        "refresh_token": refresh,
                        "client_id": CLI_CLIENT_ID,
                    },
                )
            except (httpx.HTTPError, ValueError, AttributeError) as exc:
                raise _unreachable(discovery, exc) from None
        if answer.status_code in (400, 401):
            raise _failure("the Vercel CLI login could not be refreshed", "run `vercel login`")
        try:
            body = answer.json()
            access, lifetime = body["access_token"], body.get("expires_in", 3600)
            rotated = body.get("refresh_token") or refresh
            if not answer.is_success or not isinstance(access, str) or not access:
                raise ValueError("no access token")
            return SecretStr(access), SecretStr(rotated), int(now + float(lifetime))
        except (ValueError, KeyError, TypeError) as exc:
            raise _failure(
                f"Vercel's answer to the CLI login refresh is unusable "
                f"(HTTP {answer.status_code}, {type(exc).__name__})",
                "run `vercel login`",
            ) from None

    def _http(self) -> httpx.Client:
        return httpx.Client(transport=self._transport, timeout=TIMEOUT, follow_redirects=False)


def _from_cli_command(project: Project, now: float) -> SecretStr:
    """``vercel project token``: the CLI mints the token itself (its login is in the
    OS keyring, out of our reach)."""
    command = ["vercel", "project", "token", project.id, "--format=json"]
    if project.org_id:
        command += ["--scope", project.org_id]
    try:
        done = subprocess.run(
            command, capture_output=True, timeout=60, check=False, cwd=project.file.parent.parent
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise _failure(
            f"`vercel project token` failed ({type(exc).__name__})", "run `vercel login`"
        ) from None
    if done.returncode != 0:
        raise _failure(
            f"`vercel project token` exited with {done.returncode}", "run `vercel login`"
        )
    return _minted(httpx.Response(200, content=done.stdout), "`vercel project token`", now)


def _minted(answer: httpx.Response, what: str, now: float) -> SecretStr:
    """The token of a ``{"token": ...}`` answer, checked to be a JWT with life left."""
    try:
        value = answer.json().get("token") if answer.is_success else None
    except (ValueError, AttributeError):
        value = None
    if not isinstance(value, str) or not value:
        raise _failure(f"{what} held no token (HTTP {answer.status_code})", "try again later")
    token = SecretStr(value.strip())
    if (jwt_exp(token) or 0.0) <= now:
        raise _failure(f"{what} gave a token that is not a JWT with time left", "try again later")
    return token


def _saved_token(file: Path, now: float) -> SecretStr | None:
    """The token ``@vercel/oidc`` (or we) saved for the project, if it has life left."""
    try:
        value = json.loads(file.read_text(encoding="utf-8")).get("token")
    except (OSError, ValueError, AttributeError):
        return None
    if not isinstance(value, str) or (jwt_exp(value) or 0.0) <= now + MARGIN:
        return None
    return SecretStr(value)


def _write_private(file: Path, content: Mapping[str, Any]) -> None:
    """Replace ``file`` at once (never half written), readable by this user only."""
    folder = file.parent
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(dir=folder, prefix=f".{file.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(content, out)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temp, 0o600)
        os.replace(temp, file)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise _failure(
            f"{file} cannot be written ({type(exc).__name__})", "check its folder's permissions"
        ) from None


@contextlib.contextmanager
def _exclusive(lock_file: Path) -> Iterator[None]:
    """Hold ``lock_file`` against other processes, waiting at most `LOCK_WAIT` seconds."""
    lock_file.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        deadline = time.monotonic() + LOCK_WAIT
        while not _try_lock(fd):
            if time.monotonic() > deadline:
                raise _failure(
                    f"another process has been refreshing the token for {LOCK_WAIT:.0f} s "
                    f"(it holds {lock_file})",
                    "try again, or delete that file if no such process runs",
                )
            time.sleep(0.05)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _try_lock(fd: int) -> bool:
    if sys.platform == "win32":  # pragma: no cover - not run on this machine
        import msvcrt

        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _failure(what: str, todo: str) -> OidcTokenError:
    return OidcTokenError(
        f"refreshing the local Vercel OIDC token failed: {what}; {todo} "
        "(or `vercel env pull` for a fresh token)",
        code="oidc_token_refresh_failed",
    )


def _unreachable(url: str, exc: Exception) -> OidcTokenError:
    host = httpx.URL(url).host
    return _failure(f"{host} could not be reached ({type(exc).__name__})", "try again when online")


# Tokens this process refreshed, by token file: later lookups skip the disk.
_remembered: dict[Path, tuple[SecretStr, float]] = {}
_process_lock = threading.Lock()
