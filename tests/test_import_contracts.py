"""The product runs without the devtools: serve and worker import neither b24notify.devtools nor
aiosmtpd (the product's image installs without the `devtools` extra), and the CLI's devtools
commands say which extra is missing. The import contracts themselves run in `make lint`."""

from __future__ import annotations

import os
import pkgutil
import subprocess
import sys
import tomllib
from pathlib import Path

import b24notify

ROOT = Path(__file__).resolve().parent.parent

# Imports of the blocked modules fail as they would without the extra installed.
BLOCKER = """
import importlib.abc, sys

class Blocked(importlib.abc.MetaPathFinder):
    def __init__(self, names):
        self.names = names

    def find_spec(self, fullname, path=None, target=None):
        if any(fullname == name or fullname.startswith(name + ".") for name in self.names):
            raise ModuleNotFoundError(f"No module named {fullname!r}", name=fullname)
        return None

sys.meta_path.insert(0, Blocked(BLOCKED))
"""

PRODUCT = """
from redis import Redis
from rq import Queue

from b24notify.cli import build_parser
from b24notify.service.app import create_app
from b24notify.settings import load_settings
from b24notify.workers.context import WorkerContexts
from b24notify.workers.worker import B24Worker, make_dispatcher

for argv in (["serve"], ["worker", "--burst"], ["simulate", "--port", "8001"], ["up", "--demo"]):
    build_parser().parse_args(argv)
settings = load_settings(overrides={
    "redis_url": REDIS_URL, "b24notify_key_prefix": "no-devtools", "b24notify_queue": "no-devtools-queue",
    "b24_webhook_url": "https://portal.example.com/rest/1/secret/", "b24_application_token": "token",
    "notify_chat": "chat42", "notify_email": "team@example.com", "smtp_url": "smtp://127.0.0.1:2525",
    "email_from": "b24notify@example.com",
})
create_app(settings)
contexts = WorkerContexts(settings, Redis.from_url(settings.redis_url), serving=True)
queue = Queue(settings.b24notify_queue, connection=Redis.from_url(settings.redis_url))
B24Worker([queue], connection=queue.connection)
make_dispatcher(contexts, queue)
contexts.close()
loaded = sorted(name for name in sys.modules if name.startswith(("aiosmtpd", "b24notify.devtools")))
assert not loaded, loaded
print("product built without devtools")
"""


def run_python(code: str, *, blocked: list[str], redis_url: str) -> subprocess.CompletedProcess[str]:
    env = {name: value for name, value in os.environ.items()
           if not name.startswith(("B24", "NOTIFY_", "SMTP_", "EMAIL_", "REDIS_URL"))}
    env["PYTHONPATH"] = str(ROOT)
    prelude = f"BLOCKED = {blocked!r}\nREDIS_URL = {redis_url!r}\n" + BLOCKER
    return subprocess.run([sys.executable, "-c", prelude + code], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=60)


def test_serve_and_worker_build_without_devtools_or_aiosmtpd(redis_url: str) -> None:
    proc = run_python(PRODUCT, blocked=["aiosmtpd", "b24notify.devtools"], redis_url=redis_url)
    assert proc.returncode == 0, proc.stderr
    assert "product built without devtools" in proc.stdout


def test_simulate_without_the_devtools_extra_names_the_extra(redis_url: str) -> None:
    code = "from b24notify.cli import main\nsys.exit(main(['simulate', '--port', '8001']))\n"
    proc = run_python(code, blocked=["aiosmtpd"], redis_url=redis_url)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "b24notify simulate" in lines[0] and "pip install 'b24notify[devtools]'" in lines[0], lines[0]
    assert "aiosmtpd" in lines[0]


def test_every_product_module_is_in_the_devtools_contract() -> None:
    """The contract lists its source modules one by one (import-linter has no 'all but'); a new
    top-level module of the product must be added there, or devtools imports from it go unseen."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    contract = next(c for c in config["contracts"] if c["id"] == "devtools-outside-product")
    top_level = {f"b24notify.{module.name}" for module in pkgutil.iter_modules(b24notify.__path__)}
    assert top_level - {"b24notify.devtools"} == set(contract["source_modules"])


def test_dev_installs_the_devtools_extra() -> None:
    """`make run` and `make test` install `.[dev]`; it lists the devtools extra's requirements again."""
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert set(extras["devtools"]) <= set(extras["dev"])
    runtime = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert not any(requirement.startswith("aiosmtpd") for requirement in runtime)
