"""The emulator's pages, as a person (or a browser test) sees them: the consent and
installation pages, the device-code page, and the sign-in face of Connect's OAuth
server. Pure functions from a request to a `Reply`; `connect_auth.testing` sends it.
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from ._oauth import OAuthServer
from ._state import EmulatorState

__all__ = ["Reply", "consent_page", "sign_in_page"]


@dataclass(frozen=True)
class Reply:
    """What the server answers: status, headers and body."""

    status: int
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""


def _page(status: int, title: str, content: str) -> Reply:
    body = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title></head>"
        f"<body><h1>{title}</h1>{content}</body></html>"
    ).encode()
    return Reply(status, (("Content-Type", "text/html; charset=utf-8"),), body)


def _redirect(location: str, query: Mapping[str, str] | None = None) -> Reply:
    if query:
        location += ("&" if "?" in location else "?") + urlencode(query)
    return Reply(303, (("Location", location),))


def _json(status: int, payload: Mapping[str, Any]) -> Reply:
    return Reply(status, (("Content-Type", "application/json"),), json.dumps(payload).encode())


_DEVICE_FORM = (
    "<form method='post' action='/connect/device'><label>Code "
    "<input name='user_code' id='user_code' autocomplete='off'></label> "
    "<button id='continue'>Continue</button></form>"
)
_DECIDE = (
    "<form method='post'><button name='decision' value='approve' id='approve'>Approve</button> "
    "<button name='decision' value='deny' id='deny'>Deny</button></form>"
)


def consent_page(state: EmulatorState, method: str, path: str, form: Mapping[str, str]) -> Reply:
    """``/connect/{authorize,install}/<id>`` (approve or deny) and ``/connect/device``
    (enter a device code)."""
    if path == "/connect/device":
        if method != "POST":
            return _page(200, "Connect a device", _DEVICE_FORM)
        flow = state.flow_for_device_code(form.get("user_code", ""))
        if flow is None:
            return _page(400, "Unknown code", "<p>That code is not valid.</p>" + _DEVICE_FORM)
        return _redirect(f"/connect/{flow.kind}/{flow.id}")
    kind, _, flow_id = path[len("/connect/") :].partition("/")
    flow = state.flow(flow_id)
    if flow is None or flow.kind != kind:
        return _page(404, "Not found", "<p>No such authorization request.</p>")
    if method == "POST":
        try:
            flow = state.decide(flow_id, approve=form.get("decision") == "approve")
        except ValueError as exc:
            return _page(409, "Already decided", f"<p>{html.escape(str(exc))}</p>")
        approved = flow.status == "approved"
        if flow.return_url:
            outcome = {"status": "success"} if approved else {
                "status": "error", "error": "access_denied"
            }  # fmt: skip
            return _redirect(flow.return_url, {**outcome, "request": flow.id})
        done = "approved" if approved else "denied"
        return _page(
            200,
            f"Request {done}",
            f"<p id='outcome'>You {done} the request. You can close this window.</p>",
        )
    spec = state.connectors.get(flow.connector)
    subject = flow.subject or {}
    who = html.escape(str(subject.get("id") or subject.get("type") or "your organization"))
    action = "install" if kind == "install" else "connect"
    return _page(
        200,
        f"Authorize {html.escape(spec.name if spec and spec.name else flow.connector)}",
        f"<p>Allow this app to {action} <b>{html.escape(flow.connector)}</b> for "
        f"<b>{who}</b>?</p>{_DECIDE}",
    )


def sign_in_page(
    oauth: OAuthServer,
    state: EmulatorState,
    method: str,
    path: str,
    params: Mapping[str, str],
    authorization: str,
) -> Reply:
    """``/oauth/authorize`` (the sign-in consent page and its decision),
    ``/oauth/userinfo`` and ``/oauth/revoke``."""
    if path == "/oauth/userinfo":
        bearer = authorization[7:] if authorization.startswith("Bearer ") else None
        return _json(*oauth.userinfo(bearer))
    if path == "/oauth/revoke":
        return _json(*oauth.revoke(params.get("token", "")))
    problem = oauth.check_authorize(
        params, lambda c: state.connectors[c].redirect_uris if c in state.connectors else None
    )
    if problem is not None:
        return _page(400, "Invalid sign-in request", f"<p>{html.escape(problem)}</p>")
    if method == "POST":
        back = {"state": params["state"]} if "state" in params else {}
        if params.get("decision") == "approve":
            grant = oauth.approve(params, params.get("user", "").strip() or "u_alice")
            return _redirect(params["redirect_uri"], {"code": grant.code, **back})
        return _redirect(params["redirect_uri"], {"error": "access_denied", **back})
    hidden = "".join(
        f"<input type='hidden' name='{html.escape(k)}' value='{html.escape(v)}'>"
        for k, v in params.items()
    )
    return _page(
        200,
        f"Sign in to the app with {html.escape(params['client_id'])}",
        f"<form method='post' action='/oauth/authorize'>{hidden}"
        "<label>Signed in as <input name='user' id='user' value='u_alice'></label>"
        f"<p>The app asks for: {html.escape(params.get('scope', ''))}</p>"
        "<button name='decision' value='approve' id='approve'>Allow</button> "
        "<button name='decision' value='deny' id='deny'>Deny</button></form>",
    )
