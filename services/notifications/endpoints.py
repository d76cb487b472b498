"""HTTP/1.1 POSTs to webhook endpoints over kept-alive connections, with h11 speaking the protocol.

httpx and httpcore spent three times the CPU per request here (their pool
matches requests to connections in O(N²), encode/httpcore#1035, and every
read and write goes through anyio cancel scopes), which capped a process at a
few hundred deliveries a second. A subscription's lane already bounds how
many requests are in flight, so each request takes an idle connection of its
endpoint or opens one; h11 handles framing, keep-alive and the response.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import h11

_READ_CHUNK = 65_536


class EndpointError(Exception):
    """The request could not be completed (connection, TLS or protocol failure)."""


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]


class _Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.protocol = h11.Connection(h11.CLIENT)
        self.idle_since = time.monotonic()

    def reusable(self, keepalive: float) -> bool:
        return (
            not self.reader.at_eof() and not self.writer.is_closing() and time.monotonic() - self.idle_since < keepalive
        )

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.close()


class Endpoint:
    """One webhook URL and its idle connections."""

    def __init__(self, url: str, *, keepalive_seconds: float = 30.0, max_answer_bytes: int = 65_536) -> None:
        parts = urlsplit(url)
        self.host = parts.hostname or ""
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self.host_header = parts.netloc.rpartition("@")[2]
        self._ssl = ssl.create_default_context() if parts.scheme == "https" else None
        self._keepalive = keepalive_seconds
        self._max_answer_bytes = max_answer_bytes
        self._idle: list[_Connection] = []
        self.last_used = time.monotonic()

    async def post(self, headers: list[tuple[str, str]], body: bytes) -> Answer:
        """POST `body`; the caller bounds the time with a timeout around this call."""
        self.last_used = time.monotonic()
        connection = self._take_idle()
        if connection is not None:
            try:
                return await self._exchange(connection, headers, body)
            except _ClosedBeforeAnswer:
                pass  # the server dropped the kept-alive connection: once more on a new one
        try:
            reader, writer = await asyncio.open_connection(
                self.host, self.port, ssl=self._ssl, server_hostname=self.host if self._ssl else None
            )
        except (OSError, ssl.SSLError) as exc:
            raise EndpointError(f"cannot connect: {type(exc).__name__}: {exc}") from exc
        try:
            return await self._exchange(_Connection(reader, writer), headers, body)
        except _ClosedBeforeAnswer as exc:
            raise EndpointError("the server closed the connection without answering") from exc

    def close(self) -> None:
        idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()

    def _take_idle(self) -> _Connection | None:
        while self._idle:
            connection = self._idle.pop()
            if connection.reusable(self._keepalive):
                return connection
            connection.close()
        return None

    async def _exchange(self, connection: _Connection, headers: list[tuple[str, str]], body: bytes) -> Answer:
        protocol = connection.protocol
        answered = False
        finished = False
        try:
            request = h11.Request(
                method="POST",
                target=self.target,
                headers=[("host", self.host_header), ("content-length", str(len(body))), *headers],
            )
            connection.writer.write(
                protocol.send(request) + (protocol.send(h11.Data(data=body)) or b"") + protocol.send(h11.EndOfMessage())
            )
            await connection.writer.drain()
            answer: Answer | None = None
            read = 0
            while True:
                event = protocol.next_event()
                if event is h11.NEED_DATA:
                    chunk = await connection.reader.read(_READ_CHUNK)
                    protocol.receive_data(chunk)
                    if not chunk and not answered:
                        raise _ClosedBeforeAnswer
                    continue
                if isinstance(event, h11.Response):
                    answered = True
                    answer = Answer(event.status_code, {k.decode(): v.decode("latin-1") for k, v in event.headers})
                elif isinstance(event, h11.Data):
                    read += len(event.data)
                    if read > self._max_answer_bytes:
                        assert answer is not None
                        return answer  # a long answer is not worth reading; the connection is dropped
                elif isinstance(event, h11.EndOfMessage):
                    assert answer is not None
                    finished = True
                    return answer
                elif isinstance(event, h11.ConnectionClosed):
                    raise _ClosedBeforeAnswer
        except (ConnectionError, OSError, ssl.SSLError, h11.ProtocolError) as exc:
            if not answered and isinstance(exc, ConnectionError | h11.RemoteProtocolError):
                raise _ClosedBeforeAnswer from exc
            raise EndpointError(f"{type(exc).__name__}: {exc}") from exc
        finally:
            if finished and protocol.our_state is h11.DONE and protocol.their_state is h11.DONE:
                protocol.start_next_cycle()
                connection.idle_since = time.monotonic()
                self._idle.append(connection)
            else:
                connection.close()


class _ClosedBeforeAnswer(Exception):
    pass
