"""``uvicorn --factory bench.ingest_factory:app``: b24notify's web app built from the environment,
exactly as ``b24notify serve`` builds it."""

from starlette.applications import Starlette

from b24notify.service.app import create_app
from b24notify.settings import load_settings


def app() -> Starlette:
    return create_app(load_settings())
