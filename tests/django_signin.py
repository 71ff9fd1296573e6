"""A Django app that signs users in via Connect with authlib's Django client: the URL
conf of the test settings (tests/conftest.py), served by a real WSGI server in
tests/test_signin.py."""

from __future__ import annotations

import html
from typing import Any

from authlib.integrations.django_client import OAuth, OAuthError
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.urls import path

from connect_auth import ConnectError
from connect_auth.authlib import register_connect

oauth = OAuth()
tokens: dict[str, dict[str, Any]] = {}


def configure(*, oauth_base_url: str, vercel_token: str) -> None:
    """A fresh registry pointed at this test's emulator."""
    global oauth
    oauth = OAuth()
    register_connect(
        oauth,
        "connect",
        connector="slack/acme-slack",
        oauth_base_url=oauth_base_url,
        vercel_token=vercel_token,
    )


def home(request: HttpRequest) -> HttpResponse:
    user = request.session.get("user")
    if user is None:
        return HttpResponse("<a id='login' href='/login'>Sign in</a>")
    return HttpResponse(f"<h1 id='who'>Signed in as {html.escape(user['name'])}</h1>")


def login(request: HttpRequest) -> HttpResponse:
    redirect: HttpResponse = oauth.connect.authorize_redirect(
        request, request.build_absolute_uri("/auth/callback")
    )
    return redirect


def callback(request: HttpRequest) -> HttpResponse:
    try:
        token = oauth.connect.authorize_access_token(request)
    except (OAuthError, ConnectError) as exc:
        why = getattr(exc, "error", None) or type(exc).__name__
        return HttpResponse(f"Sign-in failed: {html.escape(str(why))}", status=400)
    user = dict(token["userinfo"])
    tokens[user["sub"]] = token
    request.session["user"] = {"sub": user["sub"], "name": user["name"]}
    return HttpResponseRedirect("/", status=303)


def refresh(request: HttpRequest) -> HttpResponse:
    user = request.session["user"]
    old = tokens[user["sub"]]
    new = oauth.connect.fetch_access_token(
        grant_type="refresh_token", refresh_token=old["refresh_token"]
    )
    return JsonResponse({"refreshed": new["access_token"] != old["access_token"]})


urlpatterns = [
    path("", home),
    path("login", login),
    path("auth/callback", callback),
    path("refresh", refresh),
]
