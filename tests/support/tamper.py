"""The network between b24notify and the simulator, with a hand on the way back: every request goes
to the simulator for real, and a test may rewrite the JSON answer before our client reads it.

For answers the simulator would never give on its own but a portal might (a time without an offset,
a list that pages on for ever). Our code runs unchanged: only the transport is swapped, as httpx
intends (STYLE.md).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from typing import Any

import httpx

from b24notify.rest.client import RestClient
from b24notify.rest.credentials import WebhookCredentials
from b24notify.workers.context import WorkerContext

# (REST method, JSON answer) -> the answer our client gets instead
Edit = Callable[[str, dict[str, Any]], dict[str, Any]]


class TamperingTransport(httpx.BaseTransport):
    def __init__(self, edit: Edit) -> None:
        self.edit = edit
        self._inner = httpx.HTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self._inner.handle_request(request)
        body = response.read()
        response.close()
        method = request.url.path.rstrip("/").rsplit("/", 1)[-1]
        try:
            payload = json.loads(body)
        except ValueError:
            return httpx.Response(response.status_code, content=body)
        return httpx.Response(response.status_code, json=self.edit(method, payload))

    def close(self) -> None:
        self._inner.close()


def tampered(ctx: WorkerContext, edit: Edit) -> WorkerContext:
    """``ctx`` whose REST calls go through a TamperingTransport (same portal, same webhook)."""
    assert ctx.spec.webhook is not None
    client = RestClient(WebhookCredentials(ctx.spec.webhook), transport=TamperingTransport(edit))
    return dataclasses.replace(ctx, client=client)


def batch_answers(payload: dict[str, Any]) -> dict[str, Any]:
    """The per-call results of a ``batch`` answer (``result.result``), empty when there are none."""
    inner = payload.get("result")
    results = inner.get("result") if isinstance(inner, dict) else None
    return results if isinstance(results, dict) else {}
