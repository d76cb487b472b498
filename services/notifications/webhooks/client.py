"""The webhook HTTP client: aiohttp, connecting only where the guard said it may.

One `aiohttp.ClientSession` per dispatcher keeps connections alive per host
(the dispatcher's lanes bound how many requests each subscription has in
flight). Its resolver is the guard: every new connection starts with one
fresh lookup whose every address is checked, and aiohttp connects to those
addresses and no others (no DNS cache, no second lookup). A host written as
an address never reaches a resolver, so the client checks it itself.

An attempt follows no redirect, sends no cookies back, reads at most
`MAX_HEADERS` header lines of at most `MAX_FIELD_BYTES` each and at most
`MAX_BODY_BYTES` of the body (a longer answer's connection is dropped, not
drained). Proxies from the environment (`HTTPS_PROXY`, …) are used only with
`CF_WEBHOOK_TRUST_ENV=true`; the proxy then resolves the receiver, so the
guard checks the name before the request and the proxy's own address is
not judged (it is the operator's choice).

Whatever goes wrong, `DeliveryFailed` says only "refused: private address",
"connection failed" or "invalid answer": the delivery log is read by the
subscription's owner and must not tell them about our network.
"""

from __future__ import annotations

import asyncio
import functools
import socket
import ssl
import urllib.request
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

from services.notifications.webhooks.guard import REFUSED, AddressGuard, PrivateAddress, literal_address, system_lookup

MAX_HEADERS = 100
MAX_FIELD_BYTES = 8190
MAX_BODY_BYTES = 64 * 1024
# Below the 5 s after which common servers (uvicorn, Node) close an idle connection, so that a request
# seldom goes out on a connection the receiver is closing.
KEEPALIVE_SECONDS = 4.0

CONNECTION_FAILED = "connection failed"
INVALID_ANSWER = "invalid answer"


class DeliveryFailed(Exception):
    """An attempt that got no usable answer; its text is what the delivery log shows."""


@dataclass(frozen=True)
class Answer:
    status: int
    retry_after: str | None


class GuardedResolver(AbstractResolver):
    """aiohttp's resolver: the guard's lookup and verdict, for each new connection."""

    def __init__(self, guard: AddressGuard, *, proxy_hosts: frozenset[str] = frozenset()) -> None:
        self._guard = guard
        self._proxy_hosts = proxy_hosts

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        if host in self._proxy_hosts:
            addresses = await system_lookup(host, port, family)
        else:
            addresses = [str(a) for a in await self._guard.approve(host, port, family)]
        return [
            {
                "hostname": host,
                "host": address,
                "port": port,
                "family": socket.AF_INET6 if ":" in address else socket.AF_INET,
                "proto": 0,
                "flags": socket.AI_NUMERICHOST | socket.AI_NUMERICSERV,
            }
            for address in addresses
        ]

    async def close(self) -> None:
        return None


def _skips_resolver(host: str) -> bool:
    """aiohttp's own test for a host it connects to without resolving (an address, or something like one)."""
    return ":" in host or host.replace(".", "").isdigit()


@functools.lru_cache(maxsize=4096)
def _target(url: str) -> URL:
    """The parsed URL (a subscription's URL is sent to many times)."""
    return URL(url)


class WebhookClient:
    """POSTs webhook requests over kept-alive connections to guarded addresses."""

    def __init__(
        self,
        *,
        guard: AddressGuard,
        timeout_seconds: float,
        trust_env: bool = False,
        max_body_bytes: int = MAX_BODY_BYTES,
    ) -> None:
        self._guard = guard
        self._timeout = timeout_seconds
        self._trust_env = trust_env
        self._max_body_bytes = max_body_bytes
        # The trust store as it is when the client starts (aiohttp's own default is built at import).
        self._ssl = ssl.create_default_context()
        self._session: aiohttp.ClientSession | None = None
        # An address written in a URL is judged once: it names the same address every time (no lookup).
        self._literal_verdicts: dict[str, bool] = {}

    async def post(self, url: str, headers: dict[str, str], body: bytes) -> Answer:
        """POST `body` to `url` within the timeout (else TimeoutError); `DeliveryFailed` without an answer."""
        try:
            async with asyncio.timeout(self._timeout):
                target = _target(url)
                await self._check_before_connecting(target)
                try:
                    return await self._exchange(target, headers, body)
                except aiohttp.ServerDisconnectedError:
                    # The receiver closed a kept-alive connection as the request went out: once more, on a new one.
                    return await self._exchange(target, headers, body)
        except TimeoutError:
            raise  # an OSError too, but the dispatcher says how long it waited
        except PrivateAddress:
            raise DeliveryFailed(REFUSED) from None
        except (aiohttp.ClientResponseError, aiohttp.ClientPayloadError):
            raise DeliveryFailed(INVALID_ANSWER) from None
        except (aiohttp.ClientError, OSError, ssl.SSLError, ValueError):
            raise DeliveryFailed(CONNECTION_FAILED) from None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _check_before_connecting(self, target: URL) -> None:
        host = target.raw_host or ""
        if _skips_resolver(host):
            allowed = self._literal_verdicts.get(host)
            if allowed is None:
                # Something like an address that Python does not read as one (`127.1`) is never sent.
                allowed = literal_address(host) is not None and await self._guard.allows(host)
                self._literal_verdicts[host] = allowed
            if not allowed:
                raise PrivateAddress()
        elif self._trust_env:
            # A proxy, if the environment names one, resolves the host itself: check the name first.
            await self._guard.approve(host, target.port or 0)

    async def _exchange(self, target: URL, headers: dict[str, str], body: bytes) -> Answer:
        session = self._session or self._open()
        async with session.post(target, data=body, headers=headers, allow_redirects=False) as response:
            answer = Answer(response.status, response.headers.get("Retry-After"))
            read = 0
            while read <= self._max_body_bytes:
                chunk = await response.content.readany()
                if not chunk:
                    return answer  # read whole: the connection goes back to the pool
                read += len(chunk)
            response.close()  # longer than worth reading: the connection is dropped, not drained
            return answer

    def _open(self) -> aiohttp.ClientSession:
        proxy_hosts: frozenset[str] = frozenset()
        if self._trust_env:
            proxy_hosts = frozenset(
                host for value in urllib.request.getproxies().values() if (host := urlsplit(value).hostname)
            )
        connector = aiohttp.TCPConnector(
            resolver=GuardedResolver(self._guard, proxy_hosts=proxy_hosts),
            use_dns_cache=False,
            limit=0,  # the dispatcher bounds requests in flight, in all and per subscription
            keepalive_timeout=KEEPALIVE_SECONDS,
            ssl=self._ssl,
        )
        options: dict[str, Any] = {
            "max_headers": MAX_HEADERS,
            "max_field_size": MAX_FIELD_BYTES,
            "max_line_size": MAX_FIELD_BYTES,
        }
        self._session = aiohttp.ClientSession(
            connector=connector,
            trust_env=self._trust_env,
            cookie_jar=aiohttp.DummyCookieJar(),
            auto_decompress=False,
            skip_auto_headers=("Accept", "Accept-Encoding", "User-Agent"),
            timeout=aiohttp.ClientTimeout(total=None),
            read_bufsize=16 * 1024,
            **options,
        )
        return self._session
