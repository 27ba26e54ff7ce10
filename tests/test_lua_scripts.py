"""Every Lua script names its KEYS and ARGV at its top (b24notify/scripts.py); these tests hold the
names to the script's body and to every call site, so that an argument can no longer land in the
wrong position unnoticed (issue 8)."""

from __future__ import annotations

import ast
import re
from importlib import resources
from pathlib import Path

import pytest

import b24notify
from b24notify import scripts
from b24notify.scripts import ALL, VARIADIC, LuaScript

PACKAGE = Path(b24notify.__file__).parent
USED = re.compile(r"\b(KEYS|ARGV)\[(\d+)\]")
LOOP_START = re.compile(r"\bfor\s+\w+\s*=\s*(\d+)\s*,\s*#(KEYS|ARGV)\b")


def code_of(script: LuaScript) -> str:
    """The body without its comments (whose prose mentions KEYS[n] too)."""
    return "\n".join(line.split("--", 1)[0] for line in script.source.splitlines())


def declared(script: LuaScript, kind: str) -> tuple[str, ...]:
    return script.key_names if kind == "KEYS" else script.arg_names


def test_every_lua_file_has_its_script_object():
    files = {p.name.removesuffix(".lua") for p in resources.files("b24notify.lua").iterdir() if p.name.endswith(".lua")}
    assert files == {s.name for s in ALL}


@pytest.mark.parametrize("script", ALL, ids=lambda s: s.name)
def test_the_body_uses_exactly_the_declared_positions(script):
    code = code_of(script)
    for kind in ("KEYS", "ARGV"):
        names = declared(script, kind)
        variadic = bool(names) and names[-1].endswith(VARIADIC)
        fixed = len(names) - variadic
        used = {int(n) for k, n in USED.findall(code) if k == kind}
        if variadic:
            # The rest is walked in a loop that starts at the variadic name's position.
            starts = {int(n) for n, k in LOOP_START.findall(code) if k == kind}
            assert starts == {fixed + 1}, f"{script.name}.lua walks {kind} from {starts}, declared {names}"
            used -= {n for n in used if n > fixed}  # extend.lua: ARGV[i], ARGV[i + 1] in the loop are not literal
        else:
            assert f"#{kind}" not in code, f"{script.name}.lua counts {kind} but declares no {VARIADIC} name"
        assert used == set(range(1, fixed + 1)), (
            f"{script.name}.lua uses {kind} {sorted(used)}, declares {fixed}: {names}")


@pytest.mark.parametrize("script", ALL, ids=lambda s: s.name)
def test_the_builder_puts_each_name_at_its_position(script):
    named = {}
    for name in (*script.key_names, *script.arg_names):
        base = name.removesuffix(VARIADIC)
        named[base] = [f"{base}#1", f"{base}#2"] if name.endswith(VARIADIC) else base
    keys, args = script.keys_args(**named)
    for built, names in ((keys, script.key_names), (args, script.arg_names)):
        expected: list[str] = []
        for name in names:
            base = name.removesuffix(VARIADIC)
            expected += [f"{base}#1", f"{base}#2"] if name.endswith(VARIADIC) else [base]
        assert built == expected


@pytest.mark.parametrize("script", [s for s in ALL if s.key_names or s.arg_names], ids=lambda s: s.name)
def test_a_missing_or_unknown_name_is_refused_with_the_scripts_name(script):
    named = {n.removesuffix(VARIADIC): ["x"] if n.endswith(VARIADIC) else "x"
             for n in (*script.key_names, *script.arg_names)}
    missing = dict(named)
    missing.pop(next(iter(missing)))
    with pytest.raises(TypeError, match=re.escape(f"{script.name}.lua needs")):
        script.keys_args(**missing)
    with pytest.raises(TypeError, match=re.escape(f"{script.name}.lua takes no unheard_of")):
        script.keys_args(**named, unheard_of="x")


def test_a_variadic_name_takes_a_sequence():
    named = {n.removesuffix(VARIADIC): "x" for n in (*scripts.EXTEND.key_names, *scripts.EXTEND.arg_names)}
    with pytest.raises(TypeError, match=re.escape("extend.lua: held is a sequence")):
        scripts.EXTEND.keys_args(**named)


def test_a_wrong_name_fails_before_redis_is_asked(redis, keys):
    reap = scripts.REAP.on(redis)
    with pytest.raises(TypeError, match=re.escape("reap.lua")):
        reap(due=keys.due("tasks"), lease=keys.lease("tasks"), token="t", pending="p", strikes="s", now=0,
             limt=10)
    assert not redis.keys(f"{keys.prefix}:*")


def _call_sites() -> list[tuple[str, int, LuaScript, set[str], bool]]:
    """Every call of a script in the package: ``SCRIPT.keys_args(...)`` and the calls of an
    attribute set from ``SCRIPT.on(...)``, and ``SCRIPT.on(redis)(...)`` / ``SCRIPT.on_async(redis)(...)``;
    with the keyword names given and whether ``**`` is used."""
    sites = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        bound: dict[str, LuaScript] = {}
        for node in ast.walk(tree):
            if (isinstance(node, ast.Assign) and isinstance(node.value, ast.Call)
                    and isinstance(node.value.func, ast.Attribute) and node.value.func.attr == "on"
                    and isinstance(node.value.func.value, ast.Name)
                    and isinstance(getattr(scripts, node.value.func.value.id, None), LuaScript)):
                for target in node.targets:
                    if isinstance(target, ast.Attribute):
                        bound[target.attr] = getattr(scripts, node.value.func.value.id)
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            if isinstance(func, ast.Call):  # SCRIPT.on(redis)(name=…) and SCRIPT.on_async(redis)(name=…)
                inner = func.func
                if (isinstance(inner, ast.Attribute) and inner.attr in ("on", "on_async")
                        and isinstance(inner.value, ast.Name)
                        and isinstance(script := getattr(scripts, inner.value.id, None), LuaScript)):
                    names = {k.arg for k in node.keywords if k.arg is not None}
                    spread = any(k.arg is None for k in node.keywords) or bool(node.args)
                    sites.append((str(path.relative_to(PACKAGE)), node.lineno, script, names, spread))
                continue
            if not isinstance(func, ast.Attribute):
                continue
            script = None
            if func.attr == "keys_args" and isinstance(func.value, ast.Name):
                script = getattr(scripts, func.value.id, None)

            elif func.attr in bound and isinstance(func.value, ast.Name) and func.value.id == "self":
                script = bound[func.attr]
            if isinstance(script, LuaScript):
                names = {k.arg for k in node.keywords if k.arg is not None}
                spread = any(k.arg is None for k in node.keywords) or bool(node.args)
                sites.append((str(path.relative_to(PACKAGE)), node.lineno, script, names, spread))
    return sites


def test_every_call_site_gives_exactly_the_declared_names():
    sites = _call_sites()
    assert {s.name for _, _, s, _, _ in sites} == {s.name for s in ALL}, "a script without a call site"
    for path, line, script, names, spread in sites:
        wanted = {n.removesuffix(VARIADIC) for n in (*script.key_names, *script.arg_names)}
        assert not spread, f"{path}:{line} calls {script.name}.lua with positional or ** arguments"
        assert names == wanted, f"{path}:{line} {script.name}.lua: missing {wanted - names}, unknown {names - wanted}"
