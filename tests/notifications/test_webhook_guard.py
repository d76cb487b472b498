"""The webhook guard and answer policy, unit by unit: every address form, one lookup per question, Retry-After."""

from __future__ import annotations

import socket
from datetime import UTC, datetime
from ipaddress import ip_address

import pytest

from services.notifications.webhooks.guard import AddressGuard, PrivateAddress, is_public
from services.notifications.webhooks.policy import judge_attempt, parse_retry_after

REFUSED = [
    "10.1.2.3",  # private
    "172.16.0.1",
    "192.168.1.1",
    "127.0.0.1",  # loopback
    "169.254.169.254",  # link-local (cloud metadata)
    "224.0.0.1",  # multicast
    "239.255.255.250",
    "240.0.0.1",  # reserved
    "255.255.255.255",
    "0.0.0.0",  # unspecified
    "100.64.0.1",  # carrier-grade NAT
    "192.0.0.8",  # IETF protocol assignments
    "198.18.0.1",  # benchmarking
    "192.0.2.1",  # documentation
    "::1",
    "::",
    "fe80::1",
    "fc00::1",
    "fd12:3456::1",
    "fec0::1",  # site-local
    "ff02::1",  # multicast
    "2001:db8::1",  # documentation
    "2001::1",  # Teredo
    "::ffff:127.0.0.1",  # IPv4-mapped
    "::ffff:10.0.0.1",
    "::7f00:1",  # IPv4-compatible
    "::808:808",  # IPv4-compatible, even of a public address (deprecated)
    "64:ff9b::7f00:1",  # NAT64 of 127.0.0.1
    "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254
    "64:ff9b:1::8.8.8.8",  # local-use NAT64
    "2002:7f00:1::",  # 6to4 of 127.0.0.1
    "2002:a00:1::1",  # 6to4 of 10.0.0.1
    # Contract §6 refuses every embedding form, whatever IPv4 address it carries.
    "64:ff9b::808:808",  # NAT64 of 8.8.8.8
    "::ffff:8.8.8.8",  # IPv4-mapped 8.8.8.8
    "2002:808:808::1",  # 6to4 of 8.8.8.8
]
ALLOWED = ["8.8.8.8", "93.184.216.34", "2001:4860:4860::8888", "2606:4700:4700::1111"]


@pytest.mark.parametrize("address", REFUSED)
def test_non_public_address_in_every_form_is_refused(address: str) -> None:
    assert not is_public(ip_address(address))


@pytest.mark.parametrize("address", ALLOWED)
def test_public_address_is_allowed(address: str) -> None:
    assert is_public(ip_address(address))


class ChangingLookup:
    """A resolver the test controls: each call gives the next answer (the last one repeats)."""

    def __init__(self, *answers: list[str]) -> None:
        self.answers = list(answers)
        self.calls: list[str] = []

    async def __call__(self, host: str, port: int, family: int) -> list[str]:  # noqa: ARG002
        self.calls.append(host)
        return self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]


@pytest.mark.parametrize("host", ["127.0.0.1", "::ffff:7f00:1", "[::1]", "64:ff9b::a9fe:a9fe", "2002:7f00:1::"])
async def test_address_written_in_the_url_is_refused_without_a_lookup(host: str) -> None:
    lookup = ChangingLookup(["8.8.8.8"])
    with pytest.raises(PrivateAddress, match="refused: private address"):
        await AddressGuard(allow_private=False, lookup=lookup).approve(host, 80)
    assert lookup.calls == []


async def test_every_resolved_address_is_checked() -> None:
    guard = AddressGuard(allow_private=False, lookup=ChangingLookup(["8.8.8.8", "10.0.0.7"]))
    with pytest.raises(PrivateAddress):
        await guard.approve("hooks.example.com", 443)


async def test_no_verdict_is_kept_between_lookups() -> None:
    lookup = ChangingLookup(["8.8.8.8"], ["127.0.0.1"])
    guard = AddressGuard(allow_private=False, lookup=lookup)
    assert await guard.approve("rebinding.example", 443, socket.AF_UNSPEC) == [ip_address("8.8.8.8")]
    with pytest.raises(PrivateAddress):
        await guard.approve("rebinding.example", 443)
    assert lookup.calls == ["rebinding.example", "rebinding.example"]


async def test_refusal_of_a_subscription_url_does_not_say_what_the_name_resolved_to() -> None:
    guard = AddressGuard(allow_private=False, lookup=ChangingLookup(["10.20.30.40"]))
    refusal = await guard.refusal("https://internal.example/hook")
    assert refusal is not None
    assert "10.20" not in refusal
    assert await AddressGuard(allow_private=True, lookup=ChangingLookup(["10.20.30.40"])).refusal("http://x/") is None


NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("120", 120.0),
        (" 7 ", 7.0),
        ("Tue, 01 Dec 2026 12:01:00 GMT", 60.0),  # IMF-fixdate
        ("Tuesday, 01-Dec-26 12:02:00 GMT", 120.0),  # RFC 850
        ("Tue Dec  1 12:00:30 2026", 30.0),  # asctime
        ("Mon, 30 Nov 2026 12:00:00 GMT", 0.0),  # in the past: now
        ("²", None),
        ("-1", None),
        ("1.5", None),
        ("1e3", None),
        ("٣", None),  # a digit, but not an ASCII one
        ("", None),
        ("soon", None),
        ("12 Dec 2026", None),
        (None, None),
    ],
)
def test_retry_after_is_read_only_as_rfc_9110_allows(value: str | None, seconds: float | None) -> None:
    assert parse_retry_after(value, now=NOW) == seconds


def test_any_2xx_is_delivered_whatever_its_retry_after() -> None:
    verdict = judge_attempt(
        status_code=200, retry_after=3600.0, schedule_step=0, schedule=[5.0], retry_after_max=36000.0, now=NOW
    )
    assert (verdict.status, verdict.next_attempt_at) == ("delivered", None)
