"""The Lua scripts, each called through one object that knows its KEYS and ARGV by name.

Every script in ``b24notify/lua/`` names its keys and arguments in its first lines::

    -- KEYS: due lease token counter since strikes
    -- ARGV: now limit lease_seconds only gather solo_from

and its :class:`LuaScript` builds a call from exactly those names: ``CLAIM.keys_args(due=…,
lease=…, …, solo_from=2)``. A missing or unknown name raises ``TypeError`` naming the script, so
a call can no longer put an argument in the wrong position without anyone noticing (issue 8).
A last name ending in ``...`` takes a sequence, spliced in at the end (``KEYS[4..]``).
tests/test_lua_scripts.py checks every header against the script's body.

The workers call through :meth:`LuaScript.on` (redis-py's registered script: EVALSHA, the text
loaded on NOSCRIPT), the web through :meth:`LuaScript.on_async` (the same, on its asyncio client)
or, on the webhook's hot path, builds the same ``keys_args`` and pipelines them its own way
(``service/batching.py``). Nothing is read before the first use: the text is read once, lazily.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from importlib import resources
from typing import Any

from redis import Redis
from redis.asyncio import Redis as AsyncRedis
from redis.commands.core import AsyncScript, Script

_HEADER = re.compile(r"^-- (KEYS|ARGV):(.*)$", re.MULTILINE)
VARIADIC = "..."


@functools.cache
def _source(name: str) -> str:
    return resources.files("b24notify.lua").joinpath(f"{name}.lua").read_text(encoding="utf-8")


@functools.cache
def _header(name: str) -> dict[str, tuple[str, ...]]:
    """The names in the script's ``-- KEYS:`` and ``-- ARGV:`` lines (each exactly once)."""
    lines = _HEADER.findall(_source(name))
    if sorted(kind for kind, _ in lines) != ["ARGV", "KEYS"]:
        raise ValueError(f"{name}.lua: needs one '-- KEYS:' and one '-- ARGV:' line")
    declared = {kind: tuple(names.split()) for kind, names in lines}
    every = [n.removesuffix(VARIADIC) for names in declared.values() for n in names]
    if len(set(every)) != len(every):
        raise ValueError(f"{name}.lua: a name is declared twice (keys and arguments share one namespace)")
    for names in declared.values():
        if any(n.endswith(VARIADIC) for n in names[:-1]):
            raise ValueError(f"{name}.lua: only the last name may end in {VARIADIC}")
    return declared


class LuaScript:
    """One script of ``b24notify/lua/``: its text and its declared KEYS and ARGV names."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"LuaScript({self.name!r})"

    @property
    def source(self) -> str:
        return _source(self.name)

    @functools.cached_property
    def key_names(self) -> tuple[str, ...]:
        return _header(self.name)["KEYS"]

    @functools.cached_property
    def arg_names(self) -> tuple[str, ...]:
        return _header(self.name)["ARGV"]

    def keys_args(self, **named: Any) -> tuple[list[Any], list[Any]]:
        """KEYS and ARGV in the script's order, from every declared name given once."""
        keys, args = self.key_names, self.arg_names
        if self._fixed and len(named) == len(keys) + len(args):
            try:  # the common case, on the webhook's path: every name given, none variadic
                return [named[n] for n in keys], [named[n] for n in args]
            except KeyError:
                pass  # a name missing (and an unknown one in its place): say which below
        named = dict(named)
        built = self._take(keys, named), self._take(args, named)
        if named:
            raise TypeError(f"{self.name}.lua takes no {', '.join(sorted(named))}")
        return built

    @functools.cached_property
    def _fixed(self) -> bool:
        return not any(n.endswith(VARIADIC) for n in (*self.key_names, *self.arg_names))

    def on(self, redis: Redis) -> BoundScript:
        """The script registered on one client (per client, as redis-py's ``register_script``)."""
        return BoundScript(self, redis.register_script(self.source))

    def on_async(self, redis: AsyncRedis) -> AsyncBoundScript:
        """The same on an asyncio client: ``await SCRIPT.on_async(redis)(name=…)``."""
        return AsyncBoundScript(self, redis.register_script(self.source))

    def _take(self, names: tuple[str, ...], named: dict[str, Any]) -> list[Any]:
        values: list[Any] = []
        for name in names:
            variadic = name.endswith(VARIADIC)
            key = name.removesuffix(VARIADIC)
            if key not in named:
                raise TypeError(f"{self.name}.lua needs {key}")
            value = named.pop(key)
            if variadic:
                if isinstance(value, str | bytes) or not isinstance(value, Sequence):
                    raise TypeError(f"{self.name}.lua: {key} is a sequence of values")
                values.extend(value)
            else:
                values.append(value)
        return values


class BoundScript:
    """A :class:`LuaScript` registered on a sync client: call it with the script's names."""

    def __init__(self, script: LuaScript, registered: Script) -> None:
        self.script = script
        self._registered = registered

    def __call__(self, **named: Any) -> Any:
        return self.run(self.script.keys_args(**named))

    def run(self, built: tuple[list[Any], list[Any]]) -> Any:
        """Run a call built by ``keys_args`` (a builder shared by the sync and async sides)."""
        keys, args = built
        return self._registered(keys=keys, args=args)


class AsyncBoundScript:
    """A :class:`LuaScript` registered on an asyncio client."""

    def __init__(self, script: LuaScript, registered: AsyncScript) -> None:
        self.script = script
        self._registered = registered

    async def __call__(self, **named: Any) -> Any:
        return await self.run(self.script.keys_args(**named))

    async def run(self, built: tuple[list[Any], list[Any]]) -> Any:
        keys, args = built
        return await self._registered(keys=keys, args=args)


SCHEDULE = LuaScript("schedule")
CLAIM = LuaScript("claim")
RELEASE = LuaScript("release")
REAP = LuaScript("reap")
EXTEND = LuaScript("extend")
COMMIT_SYNC = LuaScript("commit_sync")
GCRA = LuaScript("gcra")
POLL_WATCH = LuaScript("poll_watch")
STATE_EPOCH = LuaScript("state_epoch")
LEFTOVERS = LuaScript("leftovers")
DEADLETTER_EXPIRE = LuaScript("deadletter_expire")
APP_INSTALL = LuaScript("app_install")
APP_UNINSTALL = LuaScript("app_uninstall")
REPLACE_TOKENS = LuaScript("replace_tokens")
LOCK_RELEASE = LuaScript("lock_release")
ALL = (SCHEDULE, CLAIM, RELEASE, REAP, EXTEND, COMMIT_SYNC, GCRA, POLL_WATCH, STATE_EPOCH, LEFTOVERS,
       DEADLETTER_EXPIRE, APP_INSTALL, APP_UNINSTALL, REPLACE_TOKENS, LOCK_RELEASE)
