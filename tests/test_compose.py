"""The deployment files agree with the code: docker-compose.yml (Docker is not run here, so it is
parsed), the Dockerfile, the Makefile's install step and the dependency pins."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from b24notify.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))


def healthcheck(compose: dict, service: str) -> list[str]:
    test = compose["services"][service]["healthcheck"]["test"]
    assert test[0] == "CMD", test
    return test[1:]


def test_every_command_in_compose_is_a_real_b24notify_command(compose):
    commands = [s["command"] for s in compose["services"].values() if s.get("command", [""])[0] == "b24notify"]
    commands += [healthcheck(compose, name) for name in ("web", "worker")]
    commands = [c for c in commands if c[0] == "b24notify"]
    assert len(commands) >= 3
    for command in commands:
        build_parser().parse_args(command[1:])  # exits (SystemExit) on an unknown command or option


def test_web_healthcheck_is_liveness_not_readiness(compose):
    # /readyz is 503 while a portal's calls are paused: an unhealthy mark would restart a web
    # process that has nothing wrong with it.
    check = " ".join(healthcheck(compose, "web"))
    assert "/healthz" in check and "/readyz" not in check


def test_worker_healthcheck_looks_at_the_worker_not_only_redis(compose):
    assert healthcheck(compose, "worker") == ["b24notify", "worker-alive"]


def test_ports_are_published_on_loopback_only(compose):
    ports = [(name, str(p)) for name, s in compose["services"].items() for p in s.get("ports", [])]
    assert ports, "the web must be reachable by the proxy on this host"
    for name, port in ports:
        assert port.startswith("127.0.0.1:"), f"{name} publishes {port} on every interface (/metrics has no auth)"


def _requirements() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    names = list(project["dependencies"])
    for extra in project.get("optional-dependencies", {}).values():
        names += extra
    return [Requirement(name) for name in names]


def _constraints() -> dict[str, str]:
    pinned: dict[str, str] = {}
    for line in (ROOT / "constraints.txt").read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            match = re.fullmatch(r"([A-Za-z0-9_.\-]+)==([^\s;]+)", line)
            assert match, f"constraints.txt: {line!r} is not NAME==VERSION"
            pinned[canonicalize_name(match[1])] = match[2]
    return pinned


def test_dependencies_have_a_major_bound_and_an_exact_pin_that_fits_it():
    pinned = _constraints()
    for requirement in _requirements():
        bounded = any(spec.operator in ("<", "<=", "==", "~=", "===") for spec in requirement.specifier)
        assert bounded, f"{requirement}: no upper bound (pin the major: NAME>=X,<X+1)"
        version = pinned.get(canonicalize_name(requirement.name))
        assert version is not None, f"{requirement.name} is not in constraints.txt (make constraints)"
        assert requirement.specifier.contains(version), f"constraints.txt pins {requirement.name}=={version}, " \
                                                        f"outside {requirement.specifier}"


def test_make_and_docker_install_with_the_constraints():
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    dockerfile = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    assert re.search(r"pip install .*-c constraints\.txt -e '\.\[dev\]'", makefile)
    assert "constraints.txt" in re.search(r"^COPY .*$", dockerfile, re.M)[0]
    assert re.search(r"^RUN pip install -c constraints\.txt \.", dockerfile, re.M)


# -- the optional Sentinel profile (`docker compose --profile ha up`) -----------------------------

HA_SERVICES = {"redis-primary", "redis-replica", "sentinel-1", "sentinel-2", "sentinel-3", "web-ha", "worker-ha"}


def test_default_set_is_unchanged_by_the_ha_profile(compose):
    default = {name for name, s in compose["services"].items() if "profiles" not in s}
    assert default == {"redis", "web", "worker"}
    for name in default:
        assert compose["services"][name].get("environment", {}).get("REDIS_URL", "redis://redis:6379/0") \
            == "redis://redis:6379/0"
    assert {name for name, s in compose["services"].items() if s.get("profiles") == ["ha"]} == HA_SERVICES


def test_ha_profile_is_the_failover_topology(compose):
    services = compose["services"]
    assert services["redis-replica"]["command"][services["redis-replica"]["command"].index("--replicaof") + 1] \
        == "redis-primary"
    for name in ("sentinel-1", "sentinel-2", "sentinel-3"):
        script = services[name]["command"][-1]
        assert "--sentinel" in script and "sentinel monitor b24notify redis-primary 6379 2" in script
        assert services[name]["hostname"] == name
    url = "redis+sentinel://sentinel-1:26379,sentinel-2:26379,sentinel-3:26379/b24notify/0"
    for name in ("web-ha", "worker-ha"):
        assert services[name]["environment"]["REDIS_URL"] == url
        assert {"sentinel-1", "sentinel-2", "sentinel-3"} <= set(services[name]["depends_on"])
        assert "redis" not in services[name]["depends_on"], "the ha fleet must not wait on the default Redis"
    assert services["web-ha"]["command"] == services["web"]["command"]
    assert services["worker-ha"]["command"] == services["worker"]["command"]
    assert services["worker-ha"]["healthcheck"]["test"] == ["CMD", "b24notify", "worker-alive"]
    assert services["worker-ha"]["stop_grace_period"] == services["worker"]["stop_grace_period"]
