"""The network between the browser and a service, as a TCP relay that a test can break.

The page is opened through the relay, so its same-origin calls (the live
stream, the inbox) cross it; `drop` closes every connection and refuses new
ones, as a lost network does; `stall` keeps connections open but silent, as
a half-open connection is.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from urllib.parse import urlsplit


class Link:
    def __init__(self, target_url: str) -> None:
        target = urlsplit(target_url)
        self._target = (target.hostname or "127.0.0.1", target.port or 80)
        self._server: asyncio.Server | None = None
        self._up = True
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.sockets[0].getsockname()[:2]
        return f"http://{host}:{port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", 0)

    async def close(self) -> None:
        self.drop()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def drop(self) -> None:
        """Close every connection; refuse new ones until `restore`."""
        self._up = False
        for writer in list(self._writers):
            writer.close()

    def stall(self) -> None:
        """Keep connections open but pass no more bytes until `restore`."""
        self._flowing.clear()

    def restore(self) -> None:
        self._up = True
        self._flowing.set()

    async def _relay(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        if not self._up:
            client_writer.close()
            return
        service_reader, service_writer = await asyncio.open_connection(*self._target)
        self._writers |= {client_writer, service_writer}
        try:
            await asyncio.gather(self._pipe(client_reader, service_writer), self._pipe(service_reader, client_writer))
        finally:
            self._writers -= {client_writer, service_writer}

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while chunk := await reader.read(65536):
                await self._flowing.wait()
                writer.write(chunk)
                await writer.drain()
        writer.close()


@contextlib.asynccontextmanager
async def link_to(target_url: str) -> AsyncIterator[Link]:
    link = Link(target_url)
    await link.start()
    try:
        yield link
    finally:
        await link.close()
