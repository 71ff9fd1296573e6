"""The ``connect-auth`` command: ``token`` (``vercel connect token`` parity),
``authorize``, ``emulator``, ``demo``. The exit codes are in `EXIT_TABLE` (and
``connect-auth --help``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import re
import signal
import sys
import threading
import time
import warnings
import webbrowser
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from ._client import ConnectClient
from ._config import is_secure_url
from ._errors import (
    AuthorizationDeniedError,
    AuthorizationExpiredError,
    ClientNotEnabledForEnvironmentError,
    ClientNotLinkedToProjectError,
    ConnectError,
    ConnectorInstallationRequiredError,
    ConnectorNotFoundError,
    ConnectResponseError,
    ConnectUnavailableError,
    InvalidGrantError,
    NoValidTokenError,
    OidcTokenError,
    UserAuthorizationRequiredError,
)
from ._models import AppSubject, Subject, TokenParamsOptions, TokenResponse, UserSubject
from ._oidc import jwt_claims
from ._retry import RetryPolicy
from ._version import __version__

# The command line is the interface; the helpers below are not API.
__all__ = ["EXIT_CODES", "EXIT_TABLE", "main"]

EXIT_TABLE = """exit codes:
    0  success                          8  user authorization required
    1  other Connect error              9  no valid token (grant revoked)
    2  bad usage or arguments          10  Connect unavailable (after retries)
    3  no usable Vercel credential     11  invalid response from Connect
    4  connector not found             12  authorization denied
    5  project not linked              13  authorization expired or timed out
    6  environment not enabled         130 interrupted
    7  connector installation required
"""

#: Error class -> (exit code, what to do). Most specific first.
EXIT_CODES: list[tuple[type[ConnectError], int, str]] = [
    (OidcTokenError, 3, "set VERCEL_OIDC_TOKEN or run `vercel link` and `vercel env pull`"),
    (ConnectorNotFoundError, 4, "check the connector uid (`vercel connect list`)"),
    (ClientNotLinkedToProjectError, 5, "link it: `vercel connect attach <connector>`"),
    (
        ClientNotEnabledForEnvironmentError,
        6,
        "enable this environment: `vercel connect attach <connector> -e <environment>`",
    ),
    (
        ConnectorInstallationRequiredError,
        7,
        "pass --installation-id, or install the connector in the provider",
    ),
    (
        UserAuthorizationRequiredError,
        8,
        "the user must authorize the connector first: run again with --yes, "
        "or `connect-auth authorize <connector> --subject user:ID`",
    ),
    (NoValidTokenError, 9, "the grant was revoked at the provider: authorize again"),
    (InvalidGrantError, 9, "the grant is no longer valid: authorize again"),
    (AuthorizationDeniedError, 12, "the user declined; start a new authorization to ask again"),
    (AuthorizationExpiredError, 13, "the authorization request expired: start a new one"),
    (ConnectUnavailableError, 10, "Connect is failing or unreachable: try again later"),
    (ConnectResponseError, 11, "Connect answered something unexpected: report it with the id"),
    (ConnectError, 1, "see the message above"),
]
EXIT_USAGE = 2
EXIT_TIMED_OUT = 13
EXIT_INTERRUPTED = 130

#: Python argument names in library messages, and the options that set them.
_OPTIONS = {
    "vercel_token": "--vercel-token",
    "installation_id": "--installation-id",
    "base_url": "--base-url",
    "region": "--region",
    "timeout": "--timeout",
    "scopes": "--scopes",
    "subject": "--subject",
}


def cli_words(message: str) -> str:
    """A library message in the command's words: ``vercel_token=`` becomes ``--vercel-token``."""
    for name, option in _OPTIONS.items():
        # Not inside a word or an option already (``--subject``), and ``name=`` whole.
        message = re.sub(rf"(?<![\w-]){name}=?(?![\w-])", option, message)
    return message


def parse_subject(text: str) -> Subject:
    """``app``, ``user:ID`` (``user`` alone needs an id here: there is no logged-in user)."""
    kind, _, ident = text.partition(":")
    if kind == "app" and not ident:
        return AppSubject()
    if kind == "user":
        if not ident:
            raise ValueError("--subject user needs an id: write --subject user:USER_ID")
        return UserSubject(ident)
    raise ValueError(f"--subject must be 'app' or 'user:ID', not {text!r}")


def parse_scopes(text: str | None) -> list[str] | None:
    """Comma- or space-separated scopes, as the Vercel CLI accepts them; an empty
    ``--scopes ""`` is the same as leaving it out, as in ``vercel connect token``."""
    if text is None or not text.strip():
        return None
    scopes = [s for s in re.split(r"[\s,]+", text) if s]
    if not scopes:
        raise ValueError(
            "scopes= holds only commas and spaces; write e.g. 'chat:write,channels:read'"
        )
    return scopes


#: Characters a terminal acts on rather than shows: C0 and C1 controls (escape
#: sequences, carriage returns that overwrite a line) and bidirectional overrides.
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def printable(text: str) -> str:
    """``text`` safe to print on a terminal: every control character is shown escaped
    (``\\x1b``), never sent raw."""
    return _UNPRINTABLE.sub(lambda m: ascii(m.group())[1:-1], text)


def read_vercel_token(value: str | None, path: str | None) -> str | None:
    """The credential given with ``--vercel-token`` or ``--vercel-token-file`` (``-``:
    standard input), or None to look it up as the library does."""
    if path is None:
        if value is not None and not value.strip():
            raise ValueError(
                "--vercel-token is empty: give the credential, or leave the option out "
                "to use VERCEL_OIDC_TOKEN or .env.local"
            )
        return value
    text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    text = text.strip()
    if not text:
        where = "standard input" if path == "-" else path
        raise ValueError(f"--vercel-token-file: {where} is empty; it must hold the credential")
    return text


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="connect-auth",
        description="Short-lived provider tokens from Vercel Connect.",
        epilog=EXIT_TABLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"connect-auth {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("connector", help="connector uid (e.g. slack/acme-slack) or id")
    common.add_argument(
        "-s",
        "--subject",
        help="who the token is for: 'app' (the default of `token`) or 'user:ID' "
        "(`authorize` needs one: a user consents)",
    )
    common.add_argument(
        "--installation-id", help="installation to use ('*' for all; empty: left out)"
    )
    common.add_argument(
        "--scopes", help="comma- or space-separated provider scopes (empty: left out)"
    )
    common.add_argument(
        "-F",
        "--format",
        choices=("text", "json"),
        default="text",
        help="'json': print the full response, and errors, as JSON on stdout",
    )
    common.add_argument("--json", action="store_true", help="the same as --format json")
    common.add_argument("--base-url", help="Connect API origin (default: env or api.vercel.com)")
    common.add_argument("--region", help="Vercel region id, giving api-<region>.vercel.com")
    credential = common.add_mutually_exclusive_group()
    credential.add_argument(
        "--vercel-token",
        help="Vercel credential (default: OIDC lookup). Visible to other users in `ps` "
        "and kept in shell history: prefer VERCEL_OIDC_TOKEN or --vercel-token-file",
    )
    credential.add_argument(
        "--vercel-token-file",
        metavar="PATH",
        help="read the Vercel credential from this file ('-': standard input)",
    )
    common.add_argument("--timeout", type=float, default=10.0, help="seconds per attempt")
    common.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="log each Connect call and retry on stderr",
    )
    flow = argparse.ArgumentParser(add_help=False)
    flow.add_argument(
        "--device-code", action="store_true", help="use the device-code flow (print a code)"
    )
    flow.add_argument("--open", action="store_true", help="open the authorization URL")
    flow.add_argument(
        "--wait", type=float, default=600.0, help="seconds to wait for the user (default 600)"
    )

    token = sub.add_parser(
        "token",
        parents=[common, flow],
        help="print a provider token for a connector",
        description="Print a provider access token (like `vercel connect token`). The Vercel "
        "credential comes from --vercel-token-file, --vercel-token, VERCEL_OIDC_TOKEN or "
        ".env.local; the environment or a file keeps it out of `ps` and shell history.",
        epilog=EXIT_TABLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    token.add_argument(
        "-y",
        "--yes",
        action="store_true",
        help="when the user has not authorized yet: start the authorization, open "
        "the browser and wait for it",
    )
    authorize = sub.add_parser(
        "authorize",
        parents=[common, flow],
        help="ask a user to authorize a connector, wait, and print the token",
        description="Start user consent for a connector, print the URL to open (or the "
        "device code to enter), wait until the user approves, then print the token.",
        epilog=EXIT_TABLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    authorize.add_argument(
        "--callback-url", help="where the browser returns after consent (https, or localhost)"
    )

    emulator = sub.add_parser(
        "emulator",
        help="run a local Connect emulator until Ctrl-C",
        description="Serve a local Vercel Connect emulator and print the export lines "
        "that point an app at it.",
    )
    emulator.add_argument("--host", default="127.0.0.1", help="loopback address to bind")
    emulator.add_argument(
        "--allow-remote",
        action="store_true",
        help="allow a --host beyond loopback: anyone who reaches it gets test tokens",
    )
    emulator.add_argument("--port", type=int, default=0, help="port (0: any free port)")
    emulator.add_argument("--config", help="connectors from a .json or .toml file")

    sub.add_parser(
        "demo",
        help="walk through the whole flow against an embedded emulator",
        description="Start an emulator in this process and walk through: tokens, the "
        "httpx and requests adapters, a revoked token refreshed, Connect 503s absorbed by "
        "backoff, the cost of a cached call, a user's consent, a stale local credential "
        "healing itself, and an agent calling an MCP tool for a user.",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``connect-auth`` and ``python -m connect_auth``.

    Args:
        argv: the arguments after the command name (default ``sys.argv[1:]``).

    Returns:
        The exit code (see ``EXIT_TABLE``).
    """
    args = _parser().parse_args(argv)
    try:
        if args.command in ("token", "authorize"):
            return _token(args)
        if args.command == "emulator":
            return _emulator(args)
        from ._demo import run_demo

        return run_demo()
    except ImportError as exc:  # an extra the command needs is not installed
        print(f"connect-auth {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def _token(args: argparse.Namespace) -> int:
    """``token`` and ``authorize``: one flow, where ``authorize`` starts consent first."""
    as_json = args.json or args.format == "json"
    say = _ResultPrinter(args.command, as_json)
    progress = _Progress(verbose=args.verbose)
    try:
        subject = parse_subject(_subject_arg(args))
        options: TokenParamsOptions = {
            "installation_id": args.installation_id or None,  # '' is left out, as in Vercel's
            "scopes": parse_scopes(args.scopes),
        }
        client = ConnectClient(
            base_url=args.base_url,
            region=args.region,
            vercel_token=read_vercel_token(args.vercel_token, args.vercel_token_file),
            timeout=args.timeout,
            retry=RetryPolicy(sleep=progress.retrying),
        )
    except (ValueError, TypeError, OSError) as exc:
        return say.usage(exc)
    with client:
        try:
            if args.command == "authorize":
                response = _authorize(client, args, subject, options, progress)
            else:
                try:
                    progress.start(f"waiting for Connect at {client.base_url}", args.connector)
                    response = client.get_token_response(args.connector, subject=subject, **options)
                except UserAuthorizationRequiredError:
                    if not args.yes:
                        raise
                    progress.stop()
                    args.open = True
                    response = _authorize(client, args, subject, options, progress)
        except (ValueError, TypeError) as exc:
            progress.stop()
            return say.usage(exc)
        except TimeoutError as exc:
            progress.stop()
            return say.failure(
                "TimeoutError", str(exc), EXIT_TIMED_OUT, "run it again, and approve sooner"
            )
        except ConnectError as exc:
            progress.stop()
            code, hint = next((c, h) for cls, c, h in EXIT_CODES if isinstance(exc, cls))
            hint = _filled(hint, args.connector, client)
            where = f" [request id {exc.request_id}]" if exc.request_id else ""
            if isinstance(exc, ConnectUnavailableError):
                where += f" (Connect at {client.base_url})"
            return say.failure(type(exc).__name__, cli_words(f"{exc}{where}"), code, hint, exc)
    progress.stop()
    say.token(response)
    return 0


def _subject_arg(args: argparse.Namespace) -> str:
    """``--subject``, which ``authorize`` needs: an app's token needs no consent."""
    if args.subject is not None:
        return str(args.subject)
    if args.command == "authorize":
        raise ValueError(
            "authorize needs --subject user:USER_ID: a user consents (an app token needs "
            "no consent: use `connect-auth token`)"
        )
    return "app"


def _filled(hint: str, connector: str, client: ConnectClient) -> str:
    """``hint`` with the values this run knows in place of its placeholders."""
    hint = hint.replace("<connector>", connector)
    if "<environment>" in hint:
        with contextlib.suppress(ConnectError, ValueError):
            value = client._engine.credential(None).value
            environment = jwt_claims(str(value)).get("environment")
            if isinstance(environment, str) and environment:
                hint = hint.replace("<environment>", environment)
    return hint


def _authorize(
    client: ConnectClient,
    args: argparse.Namespace,
    subject: Subject,
    options: TokenParamsOptions,
    progress: _Progress,
) -> TokenResponse:
    """Start consent, show where to approve it, and wait for the token."""
    request = client.start_authorization(
        args.connector,
        subject=subject,
        device_code=True if args.device_code else None,
        callback_url=getattr(args, "callback_url", None),
        installation_id=options.get("installation_id"),
        scopes=options.get("scopes"),
    )
    url = printable(request.url)  # Connect's words: no terminal escapes reach the screen
    if request.device_code:
        print(f"Open {url} and enter the code: {printable(request.device_code)}", file=sys.stderr)
    else:
        print(f"Open this URL to authorize {args.connector}:\n  {url}", file=sys.stderr)
    if args.open:
        if is_secure_url(request.url):
            webbrowser.open(request.url)  # honours $BROWSER
        else:
            print(
                "not opening it in a browser: Connect gave a URL that is not https:// "
                "(or http:// on loopback)",
                file=sys.stderr,
            )
    progress.start("waiting for the authorization", args.connector, attempts=False)
    return client.wait_for_authorization(
        args.connector,
        subject=subject,
        timeout=args.wait,
        **options,
    )


class _ResultPrinter:
    """What the command prints at the end: the token, or the error, as text or JSON."""

    def __init__(self, command: str, as_json: bool) -> None:
        self.command = command
        self.as_json = as_json

    def token(self, response: TokenResponse) -> None:
        print(json.dumps(response.to_dict(), indent=2) if self.as_json else response.token)

    def usage(self, exc: Exception) -> int:
        return self.failure("UsageError", cli_words(str(exc)), EXIT_USAGE, "see --help")

    def failure(
        self, kind: str, message: str, code: int, hint: str, exc: ConnectError | None = None
    ) -> int:
        if self.as_json:
            error: dict[str, object] = {
                "type": kind,
                "message": message,
                "exitCode": code,
                "hint": hint,
            }
            if exc is not None:
                error.update(code=exc.code, status=exc.status, requestId=exc.request_id)
            print(json.dumps({"error": error}, indent=2))
        elif kind == "UsageError":
            print(f"connect-auth {self.command}: error: {printable(message)}", file=sys.stderr)
        else:
            print(f"connect-auth {self.command}: {kind}: {printable(message)}", file=sys.stderr)
            print(f"  what to do: {hint}", file=sys.stderr)
        return code


class _PrintableFormatter(logging.Formatter):
    """Log lines with no terminal control characters (they may quote Connect)."""

    def format(self, record: logging.LogRecord) -> str:
        return printable(super().format(record))


class _Progress:
    """What the command says on stderr while it waits: a ticking line on a terminal,
    each retry, and with ``--verbose`` every Connect call."""

    def __init__(self, *, verbose: bool) -> None:
        self.verbose = verbose
        self.live = sys.stderr.isatty()
        self.attempt = 1
        self.max_attempts = RetryPolicy().max_attempts
        self._done = threading.Event()
        self._ticker: threading.Thread | None = None
        self._where = ""
        self._attempts = True
        if verbose:
            handler = logging.StreamHandler(sys.stderr)
            handler.setFormatter(_PrintableFormatter("%(message)s"))
            logger = logging.getLogger("connect_auth")
            logger.addHandler(handler)
            logger.setLevel(logging.DEBUG)

    def start(self, waiting_for: str, connector: str, *, attempts: bool = True) -> None:
        """Tick ``waiting_for`` with the elapsed time (and the attempt) on a terminal
        until `stop`."""
        self._where = waiting_for
        self._attempts = attempts
        self._done.clear()
        if self.verbose:
            print(f"{connector}: {waiting_for}", file=sys.stderr)
        if self.live:
            self._ticker = threading.Thread(target=self._tick, daemon=True)
            self._ticker.start()

    def retrying(self, seconds: float) -> None:
        """The retry policy's sleep: say so, then wait."""
        self._line(
            f"attempt {self.attempt} of {self.max_attempts} failed; retrying in {seconds:.1f} s",
            end="\n",
        )
        self.attempt += 1
        time.sleep(seconds)

    def stop(self) -> None:
        self._done.set()
        if self._ticker is not None:
            self._ticker.join()
            self._ticker = None
            print("\r\033[K", end="", file=sys.stderr, flush=True)

    def _tick(self) -> None:
        start = time.monotonic()
        spinner = "|/-\\"
        turn = 0
        while not self._done.wait(0.5 if time.monotonic() - start > 1 else 1.0):
            turn += 1
            attempt = f" (attempt {self.attempt} of {self.max_attempts})" if self._attempts else ""
            self._line(
                f"{spinner[turn % 4]} {self._where}: {time.monotonic() - start:.0f} s{attempt}"
            )

    def _line(self, text: str, end: str = "") -> None:
        if self.live:
            print(f"\r\033[K{text}", end=end, file=sys.stderr, flush=True)
        elif self.verbose or end:
            print(text, file=sys.stderr, flush=True)


def _emulator(args: argparse.Namespace) -> int:
    from ._config import is_loopback_host
    from .testing import ConnectEmulator

    where = {"host": args.host, "port": args.port, "allow_remote": args.allow_remote}
    try:
        with warnings.catch_warnings():  # said below, in the command's words
            warnings.simplefilter("ignore", RuntimeWarning)
            if args.config:
                emulator = ConnectEmulator.from_file(args.config, **where)
            else:
                emulator = ConnectEmulator(**where)
    except (OSError, ValueError) as exc:
        print(f"connect-auth emulator: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        emulator.start()
    except OSError as exc:
        print(f"connect-auth emulator: cannot listen: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if not is_loopback_host(args.host):
        print(
            f"# WARNING: listening on {args.host}, beyond this machine: anyone who can reach "
            "it gets test tokens and OIDC credentials it signs. Use --host 127.0.0.1 unless "
            "you mean it.",
            file=sys.stderr,
        )
    try:
        print(f"# Vercel Connect emulator on {emulator.url} (Ctrl-C to stop)")
        print(
            "# connectors: "
            + ", ".join(sorted({s.uid for s in emulator.state.connectors.values()}))
        )
        for line in emulator.export_lines():
            print(line)
        sys.stdout.flush()
        while not stop.wait(0.2):
            pass
    finally:
        emulator.stop()
    print("# emulator stopped", file=sys.stderr)
    return 0
