"""A Bitrix24 portal simulator: the REST methods, outbound events and limits b24notify depends on.

Tests of the product drive it over real HTTP (``RunningSimulator``); operators run it with
``b24notify simulate`` to try b24notify without a portal (``serve_forever``). It speaks both
incoming-webhook and OAuth-application auth; an ``OAuthAuthority`` shared by several simulators
makes them portals of one app.
"""

from b24notify.devtools.simulator.activity import run_activity
from b24notify.devtools.simulator.app import create_app
from b24notify.devtools.simulator.config import SimulatorConfig
from b24notify.devtools.simulator.control_client import SimulatorControl
from b24notify.devtools.simulator.oauth import Grant, OAuthAuthority, OAuthError, TokenRejected
from b24notify.devtools.simulator.server import RunningSimulator, serve_forever

__all__ = [
    "Grant",
    "OAuthAuthority",
    "OAuthError",
    "RunningSimulator",
    "SimulatorConfig",
    "SimulatorControl",
    "TokenRejected",
    "create_app",
    "run_activity",
    "serve_forever",
]
