"""The webhook HTTP client against real TCP servers that answer in each way HTTP/1.1 allows."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import uvloop

from services.notifications.endpoints import Endpoint, EndpointError


class RawServer:
    """A TCP server that reads each request whole and writes the answer it is given."""

    def __init__(self, answer: bytes, *, close_after: bool = False) -> None:
        self.answer = answer
        self.close_after = close_after
        self.connections = 0
        self.bodies: list[bytes] = []
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}/hook?source=test"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    int(line.split(b":", 1)[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                )
                self.bodies.append(await reader.readexactly(length))
                writer.write(self.answer)
                await writer.drain()
                if self.close_after:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@contextlib.asynccontextmanager
async def running(server: RawServer) -> AsyncIterator[RawServer]:
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


async def post_twice(server: RawServer) -> list[int]:
    endpoint = Endpoint(server.url)
    try:
        return [(await endpoint.post([("content-type", "application/json")], b'{"n": %d}' % n)).status for n in (1, 2)]
    finally:
        endpoint.close()


async def test_chunked_answer_is_read_whole_and_the_connection_kept() -> None:
    answer = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
    async with running(RawServer(answer)) as server:
        assert await post_twice(server) == [200, 200]
        assert server.connections == 1
        assert server.bodies == [b'{"n": 1}', b'{"n": 2}']


def test_connections_are_kept_on_uvloop_as_the_service_runs() -> None:
    async def post_on_uvloop() -> tuple[list[int], int]:
        async with asyncio.timeout(5), running(RawServer(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")) as server:
            return await post_twice(server), server.connections

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        assert runner.run(post_on_uvloop()) == ([200, 200], 1)


async def test_answer_ended_by_closing_the_connection_gives_its_status_and_a_new_connection() -> None:
    answer = b"HTTP/1.1 503 Service Unavailable\r\nretry-after: 7\r\nconnection: close\r\n\r\nbusy"
    async with running(RawServer(answer, close_after=True)) as server:
        endpoint = Endpoint(server.url)
        try:
            first = await endpoint.post([], b"{}")
            second = await endpoint.post([], b"{}")
        finally:
            endpoint.close()
        assert (first.status, first.headers["retry-after"]) == (503, "7")
        assert second.status == 503
        assert server.connections == 2


async def test_informational_answer_is_skipped_for_the_final_one() -> None:
    answer = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\nx-seen: yes\r\n\r\n"
    async with running(RawServer(answer)) as server:
        endpoint = Endpoint(server.url)
        try:
            got = await endpoint.post([], b"{}")
        finally:
            endpoint.close()
        assert (got.status, got.headers) == (204, {"x-seen": "yes"})


async def test_long_answer_is_cut_short_and_its_connection_dropped() -> None:
    body = b"x" * 200_000
    answer = b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body)
    async with running(RawServer(answer)) as server:
        assert await post_twice(server) == [200, 200]
        assert server.connections == 2


async def test_malformed_answer_is_an_endpoint_error() -> None:
    async with running(RawServer(b"SMTP ready\r\n\r\n")) as server:
        endpoint = Endpoint(server.url)
        try:
            with pytest.raises(EndpointError, match="malformed answer"):
                await endpoint.post([], b"{}")
        finally:
            endpoint.close()


@pytest.mark.parametrize(("name", "value"), [("x-evil", "a\r\nx-injected: 1"), ("x-evil", "a\nb"), ("x\r\ny", "v")])
async def test_header_with_a_line_break_is_never_sent(name: str, value: str) -> None:
    async with running(RawServer(b"HTTP/1.1 204 No Content\r\n\r\n")) as server:
        endpoint = Endpoint(server.url)
        try:
            with pytest.raises(EndpointError, match="line break"):
                await endpoint.post([(name, value)], b"{}")
        finally:
            endpoint.close()
        assert server.bodies == []


async def test_refused_connection_is_an_endpoint_error() -> None:
    server = RawServer(b"")
    await server.start()
    url = server.url
    await server.stop()
    with pytest.raises(EndpointError, match="cannot connect"):
        await Endpoint(url).post([], b"{}")


def _certificates(folder: Path) -> tuple[Path, Path, Path]:
    """A CA and a certificate it signed for 127.0.0.1 and localhost (openssl, as a receiver's admin would)."""
    ca_key, ca, key, request, cert = (folder / n for n in ("ca.key", "ca.pem", "r.key", "r.csr", "r.pem"))
    extensions = folder / "san.cnf"
    extensions.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=test receiver CA",
            "-keyout", str(ca_key), "-out", str(ca))  # fmt: skip
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(request))
    openssl("x509", "-req", "-in", str(request), "-CA", str(ca), "-CAkey", str(ca_key), "-CAcreateserial",
            "-days", "2", "-extfile", str(extensions), "-out", str(cert))  # fmt: skip
    return ca, cert, key


class TlsServer(RawServer):
    def __init__(self, answer: bytes, certificate: Path, key: Path) -> None:
        super().__init__(answer)
        self._context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._context.load_cert_chain(certificate, key)

    @property
    def url(self) -> str:
        return super().url.replace("http://", "https://")

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self._context)


async def test_https_receiver_with_a_trusted_certificate_gets_the_request(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ca, certificate, key = await asyncio.to_thread(_certificates, tmp_path)
    monkeypatch.setenv("SSL_CERT_FILE", str(ca))  # the trust store a receiver's CA would be in
    async with running(TlsServer(b"HTTP/1.1 204 No Content\r\n\r\n", certificate, key)) as server:
        assert await post_twice(server) == [204, 204]
    assert server.bodies == [b'{"n": 1}', b'{"n": 2}']
    assert server.connections == 1, "kept alive over TLS"


async def test_https_receiver_whose_certificate_is_not_trusted_is_refused(tmp_path: Path) -> None:
    _, certificate, key = await asyncio.to_thread(_certificates, tmp_path)
    async with running(TlsServer(b"HTTP/1.1 204 No Content\r\n\r\n", certificate, key)) as server:
        endpoint = Endpoint(server.url)
        with pytest.raises(EndpointError, match=r"cannot connect.*CERTIFICATE_VERIFY_FAILED"):
            await endpoint.post([], b"{}")
    assert server.bodies == []
