"""Module-level functions, served by one process-wide default `ConnectClient`."""

from __future__ import annotations

import inspect
import os
import threading
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from typing import Any, Concatenate, ParamSpec, TypeVar

from ._client import ConnectClient, token_options
from ._engine import SharedCache
from ._models import SubjectLike, TokenResponse, VercelToken

_P = ParamSpec("_P")
_R = TypeVar("_R")
_F = TypeVar("_F", bound=Callable[..., Any])

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
    """Replace the process-wide client.

    Used by the pytest fixture to point the library at an emulator.

    Args:
        client: the new process-wide client; ``None`` makes a new one on next use.

    Returns:
        The previous one, which the caller may close.
    """
    global _default
    if client is not None and not isinstance(client, ConnectClient):
        raise TypeError("set_default_client takes a ConnectClient or None")
    with _default_lock:
        previous, _default = _default, client
    return previous


def get_token(
    connector: str,
    *,
    subject: SubjectLike,
    installation_id: str | None = None,
    audience: Sequence[str] | None = None,
    scopes: Sequence[str] | None = None,
    resources: Sequence[str] | None = None,
    authorization_details: Sequence[Mapping[str, Any]] | None = None,
    validity_buffer_ms: float | None = None,
    vercel_token: VercelToken | None = None,
    force_refresh: bool = False,
    no_cache: bool = False,
) -> str:
    if (  # no option given: the cache-hit path (`is` tests are the cheapest check)
        installation_id is None
        and audience is None
        and scopes is None
        and resources is None
        and authorization_details is None
        and validity_buffer_ms is None
        and vercel_token is None
        and force_refresh is False
        and no_cache is False
    ):
        return (_default or default_client())._serve(connector, subject).token
    options = token_options(locals())
    return default_client()._serve_with_options(connector, subject, options).token


def get_token_response(
    connector: str,
    *,
    subject: SubjectLike,
    installation_id: str | None = None,
    audience: Sequence[str] | None = None,
    scopes: Sequence[str] | None = None,
    resources: Sequence[str] | None = None,
    authorization_details: Sequence[Mapping[str, Any]] | None = None,
    validity_buffer_ms: float | None = None,
    vercel_token: VercelToken | None = None,
    force_refresh: bool = False,
    no_cache: bool = False,
) -> TokenResponse:
    if (  # no option given: the cache-hit path (`is` tests are the cheapest check)
        installation_id is None
        and audience is None
        and scopes is None
        and resources is None
        and authorization_details is None
        and validity_buffer_ms is None
        and vercel_token is None
        and force_refresh is False
        and no_cache is False
    ):
        return (_default or default_client())._serve(connector, subject)
    options = token_options(locals())
    return default_client()._serve_with_options(connector, subject, options)


# The module functions are the default client's methods: same parameters, same docs.
get_token.__doc__ = ConnectClient.get_token.__doc__
get_token_response.__doc__ = ConnectClient.get_token_response.__doc__


def _on_default(method: Callable[Concatenate[ConnectClient, _P], _R]) -> Callable[_P, _R]:
    """``method`` of the process-wide client, as a module function."""

    def call(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        return method(default_client(), *args, **kwargs)

    return _like(call, method)


def _aon_default(
    method: Callable[Concatenate[ConnectClient, _P], Awaitable[_R]],
) -> Callable[_P, Coroutine[Any, Any, _R]]:
    """``_on_default`` for an async method."""

    async def call(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        return await method(default_client(), *args, **kwargs)

    return _like(call, method)


def _like(call: _F, method: Callable[..., Any]) -> _F:
    """``call`` named, documented and signed as ``method`` without its ``self``."""
    signature = inspect.signature(method)
    call.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=list(signature.parameters.values())[1:]
    )
    call.__name__ = call.__qualname__ = method.__name__
    call.__doc__ = method.__doc__
    return call


aget_token = _aon_default(ConnectClient.aget_token)
aget_token_response = _aon_default(ConnectClient.aget_token_response)
revoke_token = _on_default(ConnectClient.revoke_token)
arevoke_token = _aon_default(ConnectClient.arevoke_token)
delete_token_cache_entry = _on_default(ConnectClient.delete_token_cache_entry)
clear_token_cache = _on_default(ConnectClient.clear_token_cache)
start_authorization = _on_default(ConnectClient.start_authorization)
astart_authorization = _aon_default(ConnectClient.astart_authorization)
experimental_start_installation = _on_default(ConnectClient.experimental_start_installation)
aexperimental_start_installation = _aon_default(ConnectClient.aexperimental_start_installation)
get_connector_metadata = _on_default(ConnectClient.get_connector_metadata)
aget_connector_metadata = _aon_default(ConnectClient.aget_connector_metadata)
wait_for_authorization = _on_default(ConnectClient.wait_for_authorization)
await_for_authorization = _aon_default(ConnectClient.await_for_authorization)
