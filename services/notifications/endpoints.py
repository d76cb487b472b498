"""HTTP/1.1 POSTs to webhook endpoints over kept-alive connections: the request written as bytes, the
answer read by httptools (llhttp, the parser uvicorn uses) as it arrives.

httpx spent three times the CPU per request here (its pool matches requests to
connections in O(N²), encode/httpcore#1035, and every read and write goes
through anyio cancel scopes), and h11, pure Python, still took about half of
a delivery's CPU (building and validating every header, its state machine on
every event). A webhook request is always the same shape, so it is written
directly, and each connection is an asyncio protocol that feeds what arrives
to the parser and hands the answer over once it is complete. A subscription's
lane already bounds how many requests are in flight, so each request takes an
idle connection of its endpoint or opens one.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from dataclasses import dataclass
from typing import cast
from urllib.parse import urlsplit

import httptools


class EndpointError(Exception):
    """The request could not be completed (connection, TLS or protocol failure)."""


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]


class _ClosedBeforeAnswer(Exception):
    pass


class _Connection(asyncio.Protocol):
    """One connection to an endpoint: writes a request, parses its answer."""

    def __init__(self, max_answer_bytes: int) -> None:
        self._max_answer_bytes = max_answer_bytes
        self._parser = httptools.HttpResponseParser(self)
        self._transport: asyncio.Transport | None = None
        self._waiter: asyncio.Future[Answer] | None = None
        self._status = 0
        self._headers: dict[str, str] = {}
        self._body_bytes = 0
        self._answered = False
        self.keep_alive = False
        self.idle_since = time.monotonic()

    def reusable(self, keepalive: float) -> bool:
        return (
            self.keep_alive
            and self._transport is not None
            and not self._transport.is_closing()
            and time.monotonic() - self.idle_since < keepalive
        )

    async def exchange(self, request: bytes) -> Answer:
        """Send `request` and wait for the answer's status and headers (and its body, to keep the connection)."""
        assert self._transport is not None
        self.keep_alive = False
        self._status, self._headers, self._body_bytes, self._answered = 0, {}, 0, False
        self._waiter = asyncio.get_running_loop().create_future()
        self._transport.write(request)
        try:
            return await self._waiter
        finally:
            self._waiter = None

    def close(self) -> None:
        self.keep_alive = False
        if self._transport is not None:
            self._transport.close()

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport (uvloop's does not subclass asyncio.Transport).
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if self._waiter is None:
            self.close()  # bytes nobody asked for: the connection is out of step
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._settle(error=EndpointError(f"malformed answer: {exc}"))
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:  # noqa: ARG002
        self.keep_alive = False
        if self._answered:
            # An answer without a length ends with the connection; the status and headers are all we need.
            self._settle(answer=Answer(self._status, self._headers))
        else:
            self._settle(error=_ClosedBeforeAnswer())

    # httptools callbacks

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        self._status = self._parser.get_status_code()
        self._answered = self._status >= 200

    def on_body(self, body: bytes) -> None:
        self._body_bytes += len(body)
        if self._body_bytes > self._max_answer_bytes:
            # A long answer is not worth reading; the connection is dropped.
            self._settle(answer=Answer(self._status, self._headers))
            self.close()

    def on_message_complete(self) -> None:
        if not self._answered:
            self._headers = {}  # an informational (1xx) answer; the real one follows
            return
        self.keep_alive = self._parser.should_keep_alive()
        self.idle_since = time.monotonic()
        self._settle(answer=Answer(self._status, self._headers))

    def _settle(self, *, answer: Answer | None = None, error: Exception | None = None) -> None:
        waiter = self._waiter
        if waiter is None or waiter.done():
            return
        if error is not None:
            waiter.set_exception(error)
        else:
            waiter.set_result(answer)  # type: ignore[arg-type]


class Endpoint:
    """One webhook URL and its idle connections."""

    def __init__(self, url: str, *, keepalive_seconds: float = 30.0, max_answer_bytes: int = 65_536) -> None:
        parts = urlsplit(url)
        self.host = parts.hostname or ""
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        host_header = parts.netloc.rpartition("@")[2]
        self._request_line = f"POST {target} HTTP/1.1\r\nhost: {host_header}\r\n"
        self._unsafe_url = _unsafe(target + host_header) or " " in target
        self._ssl = ssl.create_default_context() if parts.scheme == "https" else None
        self._keepalive = keepalive_seconds
        self._max_answer_bytes = max_answer_bytes
        self._idle: list[_Connection] = []
        self.last_used = time.monotonic()

    async def post(self, headers: list[tuple[str, str]], body: bytes) -> Answer:
        """POST `body`; the caller bounds the time with a timeout around this call."""
        self.last_used = time.monotonic()
        request = self._request(headers, body)
        connection = self._take_idle()
        if connection is not None:
            try:
                return await self._exchange(connection, request)
            except _ClosedBeforeAnswer:
                pass  # the server dropped the kept-alive connection: once more on a new one
        connection = await self._connect()
        try:
            return await self._exchange(connection, request)
        except _ClosedBeforeAnswer as exc:
            raise EndpointError("the server closed the connection without answering") from exc

    def close(self) -> None:
        idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()

    def _request(self, headers: list[tuple[str, str]], body: bytes) -> bytes:
        fields = "".join(f"{name}: {value}\r\n" for name, value in headers)
        # Exactly one line break per header: none inside a name or a value.
        if self._unsafe_url or fields.count("\n") != len(headers) or fields.count("\r") != len(headers):
            raise EndpointError("a header or the URL holds a line break; not sent")
        if "\0" in fields:
            raise EndpointError("a header holds a NUL; not sent")
        return f"{self._request_line}content-length: {len(body)}\r\n{fields}\r\n".encode("latin-1") + body

    async def _connect(self) -> _Connection:
        max_answer_bytes = self._max_answer_bytes
        try:
            _, connection = await asyncio.get_running_loop().create_connection(
                lambda: _Connection(max_answer_bytes),
                self.host,
                self.port,
                ssl=self._ssl,
                server_hostname=self.host if self._ssl else None,
            )
        except (OSError, ssl.SSLError) as exc:
            raise EndpointError(f"cannot connect: {type(exc).__name__}: {exc}") from exc
        return connection

    def _take_idle(self) -> _Connection | None:
        while self._idle:
            connection = self._idle.pop()
            if connection.reusable(self._keepalive):
                return connection
            connection.close()
        return None

    async def _exchange(self, connection: _Connection, request: bytes) -> Answer:
        kept = False
        try:
            answer = await connection.exchange(request)
            kept = connection.keep_alive
            return answer
        finally:
            # Anything else (a timeout, a failure, an answer that ends the connection) leaves it unusable.
            if kept:
                self._idle.append(connection)
            else:
                with contextlib.suppress(Exception):
                    connection.close()


def _unsafe(text: str) -> bool:
    return "\r" in text or "\n" in text or "\0" in text
