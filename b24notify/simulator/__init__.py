"""A Bitrix24 portal simulator: the REST methods, outbound events and limits b24notify depends on.

Tests of the product drive it over real HTTP (``RunningSimulator``); operators run it with
``b24notify simulate`` to try b24notify without a portal (``serve_forever``).
"""

from b24notify.simulator.activity import run_activity
from b24notify.simulator.app import create_app
from b24notify.simulator.config import SimulatorConfig
from b24notify.simulator.control_client import SimulatorControl
from b24notify.simulator.server import RunningSimulator, serve_forever

__all__ = [
    "RunningSimulator",
    "SimulatorConfig",
    "SimulatorControl",
    "create_app",
    "run_activity",
    "serve_forever",
]
