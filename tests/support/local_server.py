"""An ASGI app served for real by uvicorn on 127.0.0.1, for what ASGITransport cannot show.

httpx's ASGITransport hands the app the whole request; a real server shows
what a client on a socket sees: a body that arrives in chunks, a response
sent before the body has ended, a connection kept alive or closed.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI

from ops.embedded import free_port

__all__ = ["LocalServer", "serve_over_http"]


class LocalServer:
    """An ASGI app served for real on 127.0.0.1 (its lifespan, if any, is run elsewhere)."""

    def __init__(self, app: Any, port: int | None = None, *, keepalive_seconds: int = 5) -> None:
        self.port = port or free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=self.port,
            lifespan="off",
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=1,
            timeout_keep_alive=keepalive_seconds,
        )
        self._server = uvicorn.Server(config)
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._server.serve())
        while not self._server.started:
            if self._task.done():
                self._task.result()
            await asyncio.sleep(0.01)

    def open_connections(self) -> set[tuple[str, int]]:
        """The client address of each connection open now."""
        clients = (getattr(connection, "client", None) for connection in self._server.server_state.connections)
        return {client for client in clients if client is not None}

    async def stop(self) -> None:
        self._server.should_exit = True
        if self._task is not None:
            await asyncio.wait_for(self._task, 10)


@contextlib.asynccontextmanager
async def serve_over_http(app: FastAPI) -> AsyncIterator[tuple[LocalServer, httpx.AsyncClient]]:
    """Run `app`'s lifespan, serve it with uvicorn and talk to it over TCP."""
    async with app.router.lifespan_context(app):
        server = LocalServer(app)
        await server.start()
        try:
            async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as client:
                yield server, client
        finally:
            await server.stop()
