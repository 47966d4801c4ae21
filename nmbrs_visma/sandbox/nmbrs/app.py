"""`create_app(world)`: the Nmbrs emulator as one FastAPI app (identity server under /connect, API under /api)."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from nmbrs_visma.sandbox.echo import EchoSecrets
from nmbrs_visma.sandbox.nmbrs.api import api_router
from nmbrs_visma.sandbox.nmbrs.errors import (
    NmbrsApiError,
    fault,
    handle_api_error,
    handle_validation_error,
)
from nmbrs_visma.sandbox.nmbrs.identity import identity_router
from nmbrs_visma.sandbox.nmbrs.world import Exchange, NmbrsWorld


class _FaultsAndRecording:
    """ASGI middleware: latency, forced 429/5xx on /api calls, and a record of every exchange."""

    def __init__(self, app: ASGIApp, world: NmbrsWorld) -> None:
        self.app, self.world = app, world

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        captured: dict[str, Any] = {"status": 0, "content_type": "", "body": bytearray()}

        async def recording_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                captured["status"] = message["status"]
                headers = dict(message.get("headers", []))
                captured["content_type"] = headers.get(b"content-type", b"").decode("latin-1")
            elif message["type"] == "http.response.body":
                captured["body"].extend(message.get("body", b""))
                if not message.get("more_body", False):  # record before the client can see the answer
                    self._record(scope, path, captured)
            await send(message)

        if path.startswith("/api/"):
            if self.world.latency > 0:
                await asyncio.sleep(self.world.latency)
            status = self.world.forced_status()
            if status is not None:
                await fault(status, self.world.retry_after).response()(scope, receive, recording_send)
            else:
                await self.app(scope, receive, recording_send)
        else:
            await self.app(scope, receive, recording_send)

    def _record(self, scope: Scope, path: str, captured: dict[str, Any]) -> None:
        self.world.record(
            Exchange(
                method=scope["method"],
                path=path,
                query=scope.get("query_string", b"").decode("latin-1"),
                header_names=frozenset(name.decode("latin-1").lower() for name, _ in scope.get("headers", [])),
                status=captured["status"],
                content_type=captured["content_type"],
                body=bytes(captured["body"]),
            )
        )


async def _handle_http_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 405:
        error = NmbrsApiError(405, 40501, "Method_Not_Allowed", "The method is not allowed for this resource.")
    else:
        error = NmbrsApiError(exc.status_code, 40401, "Not_Found", "The requested resource could not be found.")
    return error.response()


def create_app(world: NmbrsWorld | None = None) -> FastAPI:
    """The emulator over `world` (the seeded demo world when none is given)."""
    world = world if world is not None else NmbrsWorld().seed_demo()
    app = FastAPI(title="Nmbrs emulator", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.world = world
    app.include_router(identity_router(world))
    app.include_router(api_router(world))
    app.add_exception_handler(NmbrsApiError, handle_api_error)
    app.add_exception_handler(RequestValidationError, handle_validation_error)
    app.add_exception_handler(StarletteHTTPException, _handle_http_error)
    app.add_middleware(_FaultsAndRecording, world=world)
    # outermost, so forced faults echo too; the record keeps the spec's bodies
    app.add_middleware(EchoSecrets, enabled=lambda: world.echo_secrets, fields=("detail", "error_description"))
    return app
