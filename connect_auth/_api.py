"""Module-level functions, served by one process-wide default `ConnectClient`."""

from __future__ import annotations

import os
import threading
from typing import Unpack

from ._authorize import (
    AuthorizationRequest,
    ConnectorMetadata,
    StartAuthorizationOptions,
    StartInstallationOptions,
)
from ._client import ConnectClient
from ._engine import SharedCache
from ._models import SubjectLike, TokenOptions, TokenParamsOptions, TokenResponse, VercelToken

__all__ = [
    "aexperimental_start_installation",
    "aget_connector_metadata",
    "aget_token",
    "aget_token_response",
    "arevoke_token",
    "astart_authorization",
    "await_for_authorization",
    "clear_token_cache",
    "default_client",
    "delete_token_cache_entry",
    "experimental_start_installation",
    "get_connector_metadata",
    "get_token",
    "get_token_response",
    "revoke_token",
    "set_default_client",
    "start_authorization",
    "wait_for_authorization",
]

_default: ConnectClient | None = None
_default_lock = threading.Lock()


def _new_lock_in_child() -> None:
    global _default_lock
    _default_lock = threading.Lock()  # another thread may have held it at fork time


os.register_at_fork(after_in_child=_new_lock_in_child)


def default_client() -> ConnectClient:
    """The process-wide client behind the module functions and the auth adapters.

    Created on first use from the environment (``CONNECT_AUTH_BASE_URL``,
    ``VERCEL_REGION``, and ``CONNECT_AUTH_REDIS_URL`` with
    ``CONNECT_AUTH_CACHE_KEY`` for a shared cache), so it sees settings made
    before the first call; a later change of ``CONNECT_AUTH_BASE_URL`` or
    ``VERCEL_REGION`` is picked up by the next call that misses the cache.
    """
    global _default
    client = _default
    if client is None:
        with _default_lock:
            if _default is None:
                _default = ConnectClient(shared_cache=_shared_cache_from_env())
                _default._follow_env = True
            client = _default
    return client


def _shared_cache_from_env() -> SharedCache | None:
    """``CONNECT_AUTH_REDIS_URL`` (with ``CONNECT_AUTH_CACHE_KEY``) makes the default
    client share tokens through Redis."""
    if not os.environ.get("CONNECT_AUTH_REDIS_URL", "").strip():
        return None  # no import of redis-py unless asked for
    from .redis import from_env

    return from_env(os.environ)


def set_default_client(client: ConnectClient | None) -> ConnectClient | None:
    """Replace the process-wide client (``None``: make a new one on next use).

    Returns the previous one, which the caller may close. Used by the pytest
    fixture to point the library at an emulator.
    """
    global _default
    if client is not None and not isinstance(client, ConnectClient):
        raise TypeError("set_default_client takes a ConnectClient or None")
    with _default_lock:
        previous, _default = _default, client
    return previous


def get_token(connector: str, *, subject: SubjectLike, **options: Unpack[TokenOptions]) -> str:
    """Return a provider access token (see `ConnectClient.get_token`)."""
    return (_default or default_client())._serve(connector, subject, options).token  # type: ignore[arg-type]


def get_token_response(
    connector: str, *, subject: SubjectLike, **options: Unpack[TokenOptions]
) -> TokenResponse:
    """Return the full token response (see `ConnectClient.get_token_response`)."""
    return default_client()._serve(connector, subject, options)  # type: ignore[arg-type]


async def aget_token(
    connector: str, *, subject: SubjectLike, **options: Unpack[TokenOptions]
) -> str:
    """Async `get_token`."""
    return await default_client().aget_token(connector, subject=subject, **options)


async def aget_token_response(
    connector: str, *, subject: SubjectLike, **options: Unpack[TokenOptions]
) -> TokenResponse:
    """Async `get_token_response`."""
    return await default_client().aget_token_response(connector, subject=subject, **options)


def revoke_token(
    connector: str,
    *,
    subject: SubjectLike,
    installation_id: str | None = None,
    vercel_token: VercelToken | None = None,
) -> None:
    """Revoke a subject's tokens and evict them (see `ConnectClient.revoke_token`)."""
    default_client().revoke_token(
        connector, subject=subject, installation_id=installation_id, vercel_token=vercel_token
    )


async def arevoke_token(
    connector: str,
    *,
    subject: SubjectLike,
    installation_id: str | None = None,
    vercel_token: VercelToken | None = None,
) -> None:
    """Async `revoke_token`."""
    await default_client().arevoke_token(
        connector, subject=subject, installation_id=installation_id, vercel_token=vercel_token
    )


def delete_token_cache_entry(
    connector: str, *, subject: SubjectLike, **options: Unpack[TokenParamsOptions]
) -> None:
    """Remove exactly the cache entry `get_token` would use for these arguments."""
    default_client().delete_token_cache_entry(connector, subject=subject, **options)


def clear_token_cache() -> None:
    """Drop every token cached by the default client."""
    default_client().clear_token_cache()


def start_authorization(
    connector: str, *, subject: SubjectLike, **options: Unpack[StartAuthorizationOptions]
) -> AuthorizationRequest:
    """Start user consent (see `ConnectClient.start_authorization`)."""
    return default_client().start_authorization(connector, subject=subject, **options)


async def astart_authorization(
    connector: str, *, subject: SubjectLike, **options: Unpack[StartAuthorizationOptions]
) -> AuthorizationRequest:
    """Async `start_authorization`."""
    return await default_client().astart_authorization(connector, subject=subject, **options)


def experimental_start_installation(
    connector: str, **options: Unpack[StartInstallationOptions]
) -> AuthorizationRequest:
    """Start an installation (see `ConnectClient.experimental_start_installation`)."""
    return default_client().experimental_start_installation(connector, **options)


async def aexperimental_start_installation(
    connector: str, **options: Unpack[StartInstallationOptions]
) -> AuthorizationRequest:
    """Async `experimental_start_installation`."""
    return await default_client().aexperimental_start_installation(connector, **options)


def get_connector_metadata(
    connector: str, *, vercel_token: VercelToken | None = None, region: str | None = None
) -> ConnectorMetadata:
    """A connector's public description (see `ConnectClient.get_connector_metadata`)."""
    return default_client().get_connector_metadata(
        connector, vercel_token=vercel_token, region=region
    )


async def aget_connector_metadata(
    connector: str, *, vercel_token: VercelToken | None = None, region: str | None = None
) -> ConnectorMetadata:
    """Async `get_connector_metadata`."""
    return await default_client().aget_connector_metadata(
        connector, vercel_token=vercel_token, region=region
    )


def wait_for_authorization(
    connector: str,
    *,
    subject: SubjectLike,
    timeout: float = 300.0,
    interval: float = 2.0,
    **options: Unpack[TokenParamsOptions],
) -> TokenResponse:
    """Wait for consent, then return the token (see `ConnectClient.wait_for_authorization`)."""
    return default_client().wait_for_authorization(
        connector, subject=subject, timeout=timeout, interval=interval, **options
    )


async def await_for_authorization(
    connector: str,
    *,
    subject: SubjectLike,
    timeout: float = 300.0,
    interval: float = 2.0,
    **options: Unpack[TokenParamsOptions],
) -> TokenResponse:
    """Async `wait_for_authorization`."""
    return await default_client().await_for_authorization(
        connector, subject=subject, timeout=timeout, interval=interval, **options
    )
