"""Every parameter of every public function, method and constructor is listed in its
docstring (Google style, as `help()` and the API reference show it)."""

from __future__ import annotations

import enum
import importlib
import inspect
import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest

PUBLIC_MODULES = [
    "connect_auth",
    "connect_auth.httpx",
    "connect_auth.httpx2",
    "connect_auth.requests",
    "connect_auth.niquests",
    "connect_auth.aiohttp",
    "connect_auth.authlib",
    "connect_auth.redis",
    "connect_auth.otel",
    "connect_auth.mcp",
    "connect_auth.testing",
    "connect_auth.cli",
]
SECTION = re.compile(r"^(\s*)(Args|Arguments|Parameters|Attributes|Keyword Args):\s*$")
ENTRY = re.compile(r"^\s*\**(\w+)(?:\s*\([^)]*\))?:")


def documented_names(doc: str | None) -> set[str]:
    """The names a Google-style docstring lists under Args/Attributes sections."""
    names: set[str] = set()
    indent: int | None = None
    entry_indent: int | None = None
    for line in (doc or "").expandtabs().splitlines():
        header = SECTION.match(line)
        if header:
            indent, entry_indent = len(header.group(1)), None
            continue
        if indent is None or not line.strip():
            continue
        width = len(line) - len(line.lstrip())
        if width <= indent:
            indent = None  # the section ended
            continue
        if entry_indent is None:
            entry_indent = width
        if width == entry_indent and (entry := ENTRY.match(line)):
            names.add(entry.group(1))
    return names


def _own(cls: type, name: str) -> bool:
    """Defined by connect_auth (not inherited from httpx, Exception, object...)."""
    for klass in cls.__mro__:
        if name in vars(klass):
            return klass.__module__.startswith("connect_auth")
    return False


def public_callables() -> Iterator[tuple[str, Callable[..., Any], str | None]]:
    """(qualified name, callable, the docstring that must list its parameters)."""
    seen: set[int] = set()
    for module_name in PUBLIC_MODULES:
        module = importlib.import_module(module_name)
        for name in module.__all__:
            obj = getattr(module, name)
            if id(obj) in seen:
                continue
            seen.add(id(obj))
            where = f"{module_name}.{name}"
            if inspect.isclass(obj):
                if issubclass(obj, enum.Enum | dict):  # TypedDicts: their keys are their docs
                    continue
                if _own(obj, "__init__") or _own(obj, "__new__"):
                    init = obj.__init__ if _own(obj, "__init__") else obj.__new__
                    yield f"{where}()", init, f"{obj.__doc__ or ''}\n{init.__doc__ or ''}"
                for attr, value in vars(obj).items():
                    if attr.startswith("_"):
                        continue
                    fn = value.__func__ if isinstance(value, classmethod | staticmethod) else value
                    if inspect.isfunction(fn):
                        yield f"{where}.{attr}", fn, fn.__doc__
            elif callable(obj):
                yield where, obj, obj.__doc__


def gaps() -> list[str]:
    """Every (callable, parameter) whose docstring does not list the parameter."""
    found = []
    for where, fn, doc in public_callables():
        listed = documented_names(doc)
        for param in list(inspect.signature(fn).parameters.values()):
            if param.name in ("self", "cls") or param.name.startswith("_"):
                continue
            if param.name not in listed:
                found.append(f"{where}: {param.name}")
    return found


def test_every_public_parameter_is_documented() -> None:
    """Zero gaps: each one is named here so the fix is obvious."""
    missing = gaps()
    assert not missing, f"{len(missing)} undocumented parameters:\n" + "\n".join(missing)


def test_the_gap_finder_sees_a_gap() -> None:
    """The parser finds listed names and only those."""

    def f(a: int, *, b: str, **rest: Any) -> None:
        """Do.

        Args:
            a: the first,
                continued.
            b (str): the second.

        Returns:
            c: not a parameter.
        """

    assert documented_names(f.__doc__) == {"a", "b"}


@pytest.mark.parametrize(
    "name", ["get_token", "get_token_response", "aget_token", "aget_token_response"]
)
def test_token_options_are_explicit_keywords(name: str) -> None:
    """Signatures show the options (IDEs and `help()`), not ``**options``."""
    import connect_auth

    for fn in (getattr(connect_auth, name), getattr(connect_auth.ConnectClient, name)):
        params = inspect.signature(fn).parameters
        assert not any(p.kind is p.VAR_KEYWORD for p in params.values())
        assert {"scopes", "installation_id", "force_refresh", "vercel_token", "no_cache"} <= set(
            params
        )
