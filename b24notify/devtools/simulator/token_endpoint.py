"""``/oauth/token/``: the OAuth server's token endpoint (docs/protocol.md §8), served by every simulator
from its authority, so a product under test can point its OAuth URL at any of them.

The real endpoint takes a GET with a query string; a POST with a form body works too. Errors are
400 ``{"error": ..., "error_description": ...}``.
"""

from __future__ import annotations

from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import JSONResponse

from b24notify.devtools.simulator.oauth import OAuthAuthority, OAuthError


class TokenEndpoint:
    def __init__(self, authority: OAuthAuthority) -> None:
        self.authority = authority

    async def token(self, request: Request) -> JSONResponse:
        fields = dict(parse_qsl(request.url.query, keep_blank_values=True))
        if request.method == "POST":
            try:
                fields.update(parse_qsl((await request.body()).decode(), keep_blank_values=True))
            except UnicodeDecodeError:
                fields = {"grant_type": fields.get("grant_type", "")}  # answered as a missing parameter
        try:
            answer = self.authority.token_request(fields)
        except OAuthError as error:
            return JSONResponse(error.body(), status_code=400)
        return JSONResponse(dict(answer))
