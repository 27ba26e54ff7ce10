"""The bare baseline for bench/ingest.py: a Starlette endpoint that reads the body and answers
200 JSON, nothing else. Served by the same uvicorn settings as b24notify."""

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


async def endpoint(request: Request) -> JSONResponse:
    await request.body()
    return JSONResponse({"status": "accepted"})


app = Starlette(routes=[Route("/webhooks/bitrix24", endpoint, methods=["POST"])])
