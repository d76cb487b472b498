"""The webhook client (aiohttp) against real TCP servers: where it connects, what it reads, what it says."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from services.notifications.webhooks.client import DeliveryFailed, WebhookClient
from services.notifications.webhooks.guard import AddressGuard
from tests.notifications.test_webhook_guard import ChangingLookup

NO_CONTENT = b"HTTP/1.1 204 No Content\r\n\r\n"


class RawServer:
    """A TCP server that reads each request whole and writes the answer it is given (or holds the line)."""

    def __init__(self, answer: bytes, *, host: str = "127.0.0.1", port: int = 0, hold: bool = False) -> None:
        self.answer = answer
        self.host = host
        self.port = port
        self.hold = hold
        self.connections = 0
        self.requests: list[bytes] = []
        self.closed_by_client = asyncio.Event()
        self._server: asyncio.Server | None = None

    def url(self, host: str | None = None, scheme: str = "http") -> str:
        return f"{scheme}://{host or self.host}:{self.port}/hook"

    async def start(self, context: ssl.SSLContext | None = None) -> None:
        self._server = await asyncio.start_server(self._serve, self.host, self.port, ssl=context)
        self.port = self._server.sockets[0].getsockname()[1]

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
                    (
                        int(line.split(b":", 1)[1])
                        for line in head.split(b"\r\n")
                        if line.lower().startswith(b"content-length:")
                    ),
                    0,
                )
                self.requests.append(head + await reader.readexactly(length))
                writer.write(self.answer)
                await writer.drain()
                if self.hold:
                    await reader.read()  # the rest of the answer never comes; wait for the client to leave
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            # In hold mode: the client left (reading nothing more, or resetting the connection mid-answer).
            self.closed_by_client.set()
            writer.close()


@contextlib.asynccontextmanager
async def running(server: RawServer, context: ssl.SSLContext | None = None) -> AsyncIterator[RawServer]:
    await server.start(context)
    try:
        yield server
    finally:
        await server.stop()


@contextlib.asynccontextmanager
async def webhook_client(guard: AddressGuard | None = None, **options: object) -> AsyncIterator[WebhookClient]:
    client = WebhookClient(guard=guard or AddressGuard(allow_private=True), timeout_seconds=5, **options)  # type: ignore[arg-type]
    try:
        yield client
    finally:
        await client.close()


async def post(client: WebhookClient, url: str) -> int:
    return (await client.post(url, {"content-type": "application/json"}, b'{"n": 1}')).status


async def test_connection_goes_to_the_address_the_guard_approved_not_a_second_lookup() -> None:
    # `localhost` is 127.0.0.1 to the system; the guard's lookup says 127.0.0.2. Both listen on one port.
    lookup = ChangingLookup(["127.0.0.2"], ["127.0.0.1"])
    async with (
        running(RawServer(NO_CONTENT, host="127.0.0.2")) as approved,
        running(RawServer(NO_CONTENT, host="127.0.0.1", port=approved.port)) as system_answer,
    ):
        async with webhook_client(AddressGuard(allow_private=True, lookup=lookup)) as client:
            assert await post(client, approved.url("localhost")) == 204
            assert await post(client, approved.url("localhost")) == 204  # kept alive: no new lookup
        assert (len(approved.requests), approved.connections) == (2, 1)
        assert system_answer.requests == []
        assert lookup.calls == ["localhost"]


async def test_name_rebound_to_a_private_address_is_refused_at_connect_time() -> None:
    async with running(RawServer(NO_CONTENT)) as internal:
        # Public when the subscription was checked, loopback when the webhook connects.
        lookup = ChangingLookup(["8.8.8.8"], ["127.0.0.1"])
        guard = AddressGuard(allow_private=False, lookup=lookup)
        assert await guard.refusal(internal.url("rebinding.example")) is None
        async with webhook_client(guard) as client:
            with pytest.raises(DeliveryFailed, match=r"^refused: private address$"):
                await post(client, internal.url("rebinding.example"))
        assert internal.connections == 0
        assert lookup.calls == ["rebinding.example", "rebinding.example"]


@pytest.mark.parametrize("host", ["127.0.0.1", "[::ffff:7f00:1]", "[::7f00:1]", "[64:ff9b::7f00:1]", "[2002:7f00:1::]"])
async def test_address_in_the_url_is_refused_without_connecting(host: str) -> None:
    async with running(RawServer(NO_CONTENT)) as internal, webhook_client(AddressGuard(allow_private=False)) as client:
        with pytest.raises(DeliveryFailed, match=r"^refused: private address$"):
            await post(client, internal.url(host))
    assert internal.connections == 0


async def test_refused_connection_says_only_connection_failed() -> None:
    server = RawServer(NO_CONTENT)
    await server.start()
    url = server.url()
    await server.stop()
    async with webhook_client() as client:
        with pytest.raises(DeliveryFailed) as failed:
            await post(client, url)
    assert str(failed.value) == "connection failed"


async def test_redirect_is_not_followed() -> None:
    async with running(RawServer(NO_CONTENT)) as elsewhere:
        moved = f"HTTP/1.1 307 Temporary Redirect\r\nlocation: {elsewhere.url()}\r\ncontent-length: 0\r\n\r\n"
        async with running(RawServer(moved.encode())) as server, webhook_client() as client:
            assert await post(client, server.url()) == 307
    assert elsewhere.requests == []


async def test_answer_with_thousands_of_headers_is_an_invalid_answer() -> None:
    headers = b"".join(b"x-filler-%d: %s\r\n" % (n, b"y" * 50) for n in range(5000))
    answer = b"HTTP/1.1 200 OK\r\n" + headers + b"content-length: 0\r\n\r\n"
    async with running(RawServer(answer)) as server, webhook_client() as client:
        with pytest.raises(DeliveryFailed) as failed:
            await post(client, server.url())
    assert str(failed.value) == "invalid answer"


async def test_header_line_longer_than_the_cap_is_an_invalid_answer() -> None:
    answer = b"HTTP/1.1 200 OK\r\nx-long: " + b"y" * 100_000 + b"\r\ncontent-length: 0\r\n\r\n"
    async with running(RawServer(answer)) as server, webhook_client() as client:
        with pytest.raises(DeliveryFailed, match=r"^invalid answer$"):
            await post(client, server.url())


async def test_huge_body_is_not_read_whole() -> None:
    # A gigabyte announced, a megabyte sent, the rest never: reading it whole would wait for the timeout.
    answer = b"HTTP/1.1 200 OK\r\ncontent-length: 1000000000\r\n\r\n" + b"x" * 1_000_000
    async with running(RawServer(answer, hold=True)) as server, webhook_client() as client:
        async with asyncio.timeout(3):
            assert await post(client, server.url()) == 200
            await server.closed_by_client.wait()  # the connection was dropped, not drained


async def test_small_body_is_read_and_the_connection_kept() -> None:
    answer = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
    async with running(RawServer(answer)) as server, webhook_client() as client:
        assert [await post(client, server.url()) for _ in range(3)] == [200, 200, 200]
    assert server.connections == 1


async def test_retry_after_is_handed_over_as_the_receiver_wrote_it() -> None:
    answer = "HTTP/1.1 200 OK\r\nretry-after: ²\r\ncontent-length: 0\r\n\r\n".encode()
    async with running(RawServer(answer)) as server, webhook_client() as client:
        got = await client.post(server.url(), {}, b"{}")
    assert got.status == 200
    assert got.retry_after is not None


async def test_proxy_from_the_environment_is_used_only_when_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    async with running(RawServer(NO_CONTENT)) as proxy, running(RawServer(NO_CONTENT)) as receiver:
        monkeypatch.setenv("HTTP_PROXY", proxy.url().removesuffix("/hook"))
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        async with webhook_client() as client:
            assert await post(client, receiver.url("localhost")) == 204
        assert (len(receiver.requests), len(proxy.requests)) == (1, 0)
        async with webhook_client(trust_env=True) as client:
            assert await post(client, receiver.url("localhost")) == 204
        assert (len(receiver.requests), len(proxy.requests)) == (1, 1)
        assert proxy.requests[0].startswith(f"POST {receiver.url('localhost')} HTTP/1.1".encode())


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


def _server_context(certificate: Path, key: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certificate, key)
    return context


async def test_https_receiver_with_a_trusted_certificate_gets_the_request(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ca, certificate, key = await asyncio.to_thread(_certificates, tmp_path)
    monkeypatch.setenv("SSL_CERT_FILE", str(ca))  # the trust store a receiver's CA would be in
    async with running(RawServer(NO_CONTENT), _server_context(certificate, key)) as server, webhook_client() as client:
        assert [await post(client, server.url(scheme="https")) for _ in range(2)] == [204, 204]
    assert len(server.requests) == 2
    assert server.connections == 1, "kept alive over TLS"


async def test_https_receiver_whose_certificate_is_not_trusted_is_refused(tmp_path: Path) -> None:
    _, certificate, key = await asyncio.to_thread(_certificates, tmp_path)
    async with running(RawServer(NO_CONTENT), _server_context(certificate, key)) as server, webhook_client() as client:
        with pytest.raises(DeliveryFailed) as failed:
            await post(client, server.url(scheme="https"))
    assert str(failed.value) == "connection failed"
    assert server.requests == []
