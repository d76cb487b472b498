"""Which addresses a webhook may be sent to.

A webhook URL is chosen by whoever holds a `notifications:admin` token, so
unless `CF_WEBHOOK_ALLOW_PRIVATE` is set only public addresses may be
called. The guard resolves a host itself and checks every address the
lookup answered; the client then connects only to those addresses (its
resolver is this guard), so a name that answers differently a second time
(DNS rebinding) never reaches an address that was not checked. Nothing is
remembered between lookups.

`ipaddress`' `is_global` alone lets multicast and several special ranges
through (as of Python 3.11). IPv6 can carry an IPv4 address inside it
(IPv4-mapped, IPv4-compatible, NAT64 `64:ff9b::/96` and `64:ff9b:1::/48`,
6to4 `2002::/16`): contract §6 refuses every such form, whatever IPv4 address
it holds, since a translator on the way decides where it really leads.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address
from urllib.parse import urlsplit

Address = IPv4Address | IPv6Address
# (host, port, family) -> the addresses the name has now, as text.
Lookup = Callable[[str, int, int], Awaitable[list[str]]]

_NAT64 = IPv6Network("64:ff9b::/96")
_NAT64_LOCAL = IPv6Network("64:ff9b:1::/48")
_IPV4_COMPATIBLE = IPv6Network("::/96")
# Special-purpose ranges that Python 3.11's flags do not call private.
_NOT_PUBLIC: tuple[IPv4Network | IPv6Network, ...] = (
    IPv4Network("192.0.0.0/24"),  # IETF protocol assignments
    IPv4Network("192.88.99.0/24"),  # 6to4 relay anycast (deprecated)
    IPv4Network("100.64.0.0/10"),  # carrier-grade NAT
    IPv6Network("100::/64"),  # discard-only
    IPv6Network("2001::/23"),  # IETF protocol assignments (Teredo, ORCHIDs, …)
    IPv6Network("2001:db8::/32"),  # documentation
    IPv6Network("fc00::/7"),  # unique local
)

REFUSED = "refused: private address"


class PrivateAddress(Exception):
    """The host is, or resolves to, an address that may not be called."""

    def __init__(self) -> None:
        super().__init__(REFUSED)


def is_public(address: Address) -> bool:
    """Whether `address` may be called when private addresses are not allowed."""
    if isinstance(address, IPv6Address) and (
        address.ipv4_mapped is not None
        or address.sixtofour is not None
        or address in _NAT64
        or address in _NAT64_LOCAL
        or address in _IPV4_COMPATIBLE
        or address.is_site_local
    ):
        return False
    if not address.is_global:
        return False
    if (
        address.is_multicast
        or address.is_reserved
        or address.is_loopback
        or address.is_link_local
        or address.is_unspecified
        or address.is_private
    ):
        return False
    return not any(address.version == network.version and address in network for network in _NOT_PUBLIC)


def literal_address(host: str) -> Address | None:
    """The address a URL's host names directly (`127.0.0.1`, `::1`, `[::1]`), or None for a name."""
    try:
        return ip_address(host.strip("[]"))
    except ValueError:
        return None


async def system_lookup(host: str, port: int, family: int) -> list[str]:
    """The addresses the system resolver gives `host` now."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, family=family, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


class AddressGuard:
    """Resolves a webhook's host and refuses it unless every address is public (or private ones are allowed)."""

    def __init__(self, *, allow_private: bool, lookup: Lookup = system_lookup) -> None:
        self.allow_private = allow_private
        self._lookup = lookup

    async def approve(self, host: str, port: int, family: int = socket.AF_UNSPEC) -> list[Address]:
        """The addresses `host` may be reached at, from one fresh lookup; `PrivateAddress` if any is refused.

        Raises OSError when a name does not resolve.
        """
        literal = literal_address(host)
        if literal is not None:
            addresses = [literal]
        else:
            answered = await self._lookup(host, port, family)
            addresses = [ip_address(a) for a in dict.fromkeys(answered)]
            if not addresses:
                raise OSError(f"no address for {host}")
        if not self.allow_private and not all(is_public(a) for a in addresses):
            raise PrivateAddress()
        return addresses

    async def allows(self, host: str, port: int = 0) -> bool:
        """Whether `host` may be called now (one fresh lookup for a name)."""
        try:
            await self.approve(host, port)
        except PrivateAddress:
            return False
        return True

    async def refusal(self, url: str) -> str | None:
        """Why a subscription to `url` is refused (without saying what the name resolved to), or None."""
        if self.allow_private:
            return None
        try:
            parts = urlsplit(url)
            await self.approve(parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80))
        except PrivateAddress:
            return "the URL's host is or resolves to a private, loopback or otherwise non-public address"
        except (OSError, ValueError):
            return "the URL's host does not resolve"
        return None
