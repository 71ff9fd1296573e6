"""Sign in with Slack via Vercel Connect: a FastAPI app, with authlib.

Run it (against a local Connect emulator, no Vercel account needed)::

    python examples/fastapi_signin.py

then open http://127.0.0.1:8000 and click "Sign in". With ``CONNECT_AUTH_OAUTH_URL``
and ``VERCEL_OIDC_TOKEN`` (or ``vercel env pull``) set, it signs in through them
instead. Needs ``pip install 'connect-auth[authlib]' fastapi uvicorn itsdangerous``.
"""

from __future__ import annotations

import html
import os
import secrets
from typing import Any

from authlib.integrations.starlette_client import OAuth, OAuthError
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from starlette.middleware.sessions import SessionMiddleware

from connect_auth import ConnectError
from connect_auth.authlib import register_connect

CONNECTOR = os.environ.get("SIGNIN_CONNECTOR", "slack/acme-slack")


def create_app(*, oauth_base_url: str | None = None, vercel_token: str | None = None) -> FastAPI:
    """The app: ``/`` shows who is signed in, ``/login`` starts the sign-in,
    ``/auth/callback`` ends it, ``/refresh`` renews the access token."""
    app = FastAPI()
    app.add_middleware(SessionMiddleware, secret_key=secrets.token_urlsafe(32))
    oauth = OAuth()
    register_connect(
        oauth,
        "connect",
        connector=CONNECTOR,
        oauth_base_url=oauth_base_url,
        vercel_token=vercel_token,
    )
    # Tokens stay on the server; the session cookie holds only the user's profile.
    tokens: dict[str, dict[str, Any]] = {}

    @app.get("/", response_class=HTMLResponse)
    async def home(request: Request) -> str:
        user = request.session.get("user")
        if user is None:
            return "<h1>Welcome</h1><a id='login' href='/login'>Sign in</a>"
        return f"<h1 id='who'>Signed in as {html.escape(user['name'])}</h1>"

    @app.get("/login")
    async def login(request: Request) -> Any:
        return await oauth.connect.authorize_redirect(request, str(request.url_for("callback")))

    @app.get("/auth/callback", name="callback")
    async def callback(request: Request) -> Any:
        try:
            token = await oauth.connect.authorize_access_token(request)
        except (OAuthError, ConnectError) as exc:
            why = getattr(exc, "error", None) or type(exc).__name__
            return HTMLResponse(f"<p id='error'>Sign-in failed: {html.escape(str(why))}: "
                                f"{html.escape(getattr(exc, 'description', '') or str(exc))}</p>",
                                status_code=400)  # fmt: skip
        user = dict(token["userinfo"])
        tokens[user["sub"]] = token
        request.session["user"] = {"sub": user["sub"], "name": user["name"]}
        return RedirectResponse("/", status_code=303)

    @app.get("/refresh")
    async def refresh(request: Request) -> Any:
        user = request.session.get("user")
        if user is None:
            return RedirectResponse("/login", status_code=303)
        old = tokens[user["sub"]]
        new = await oauth.connect.fetch_access_token(
            grant_type="refresh_token", refresh_token=old["refresh_token"]
        )
        tokens[user["sub"]] = {**old, **new}
        return {"refreshed": new["access_token"] != old["access_token"]}

    return app


def main() -> None:
    """Serve on 127.0.0.1:8000, with an embedded emulator unless configured."""
    import uvicorn

    emulator = None
    if not os.environ.get("CONNECT_AUTH_OAUTH_URL"):
        from connect_auth.testing import ConnectEmulator

        emulator = ConnectEmulator().start()
        os.environ["CONNECT_AUTH_OAUTH_URL"] = emulator.oauth_url
        os.environ["VERCEL_OIDC_TOKEN"] = emulator.oidc_token(ttl=12 * 3600)
        print(f"Connect emulator on {emulator.url}")
    port = int(os.environ.get("PORT", "8000"))
    print(f"Open http://127.0.0.1:{port}")
    try:
        uvicorn.run(create_app(), host="127.0.0.1", port=port, log_level="warning")
    finally:
        if emulator is not None:
            emulator.stop()


if __name__ == "__main__":
    main()
