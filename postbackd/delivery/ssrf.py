"""The SSRF guard: postbacks may not reach loopback, private or cloud-metadata addresses.

Partners choose postback URLs, so without this guard anyone who can edit a postback can
make the server call its own admin ports or the cloud metadata service. The check runs
on the addresses a connection will actually use, which closes DNS rebinding:

* ``GuardedResolver`` filters every DNS answer aiohttp asks for;
* aiohttp never calls the resolver for IP-literal hosts, so ``check_literal`` refuses
  those up front, and ``guarded_socket_factory`` re-checks the address of every socket
  aiohttp opens (literals, and literals reached through redirects, included).

A refusal raises ``TargetRefused``, an OSError that aiohttp wraps in
``ClientConnectorError`` (``.os_error`` and ``__cause__``); ``find_refusal`` digs it out.
"""

from __future__ import annotations

import errno
import functools
import ipaddress
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import aiohttp
import yarl
from aiohttp.abc import AbstractResolver, ResolveResult

__all__ = [
    "METADATA_ADDRESSES",
    "GuardedResolver",
    "TargetPolicy",
    "TargetRefused",
    "allowed_networks",
    "check_literal",
    "find_refusal",
    "guarded_connector",
    "guarded_socket_factory",
    "refusal_reason",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
_net = ipaddress.ip_network

# Instance-metadata endpoints. Most are link-local or private anyway; listing them keeps
# the reason precise and refuses them even when private targets are allowed.
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",  # AWS, GCP, Azure, OpenStack, DigitalOcean, Oracle, Hetzner
        "169.254.170.2",  # AWS ECS task metadata
        "169.254.0.23",  # Tencent Cloud
        "100.100.100.200",  # Alibaba Cloud
        "168.63.129.16",  # Azure WireServer (a public address, reachable only inside Azure)
        "192.0.0.192",  # Oracle Cloud Classic
        "fd00:ec2::254",  # AWS IMDS over IPv6
        "fd20:ce::254",  # GCP metadata over IPv6
    )
)
_PRIVATE = tuple(_net(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7"))
_CGNAT = _net("100.64.0.0/10")
_NAT64 = _net("64:ff9b::/96")  # RFC 6052: the last 32 bits are an IPv4 address
# Reasons each TargetPolicy switch lifts; the rest are lifted only by allowed_networks.
_LIFTED_BY_LOOPBACK = frozenset({"loopback"})
_LIFTED_BY_PRIVATE = frozenset({"private", "cgnat"})


def refusal_reason(ip: IPAddress) -> str | None:
    """Why a connection to ``ip`` is refused by default, or None for a public address."""
    ip = _embedded_ipv4(ip) or ip
    if ip.is_unspecified:  # connecting to 0.0.0.0 or :: reaches this host
        return "unspecified"
    if ip in METADATA_ADDRESSES:
        return "metadata"
    checks: tuple[tuple[str, bool], ...] = (
        ("loopback", ip.is_loopback),
        ("link_local", ip.is_link_local),
        ("multicast", ip.is_multicast),
        ("cgnat", ip in _CGNAT),
        ("private", any(ip in n for n in _PRIVATE) or getattr(ip, "is_site_local", False)),
        ("reserved", ip.is_reserved or not ip.is_global),
    )
    return next((reason for reason, hit in checks if hit), None)


def _embedded_ipv4(ip: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address stands for (mapped, NAT64, 6to4), if any."""
    if isinstance(ip, ipaddress.IPv4Address):
        return None
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip.sixtofour


@dataclass(frozen=True)
class TargetPolicy:
    """What the operator allows; ``allowed_networks`` lifts any refusal inside them."""

    allow_loopback: bool = False
    allow_private: bool = False
    allowed_networks: tuple[IPNetwork, ...] = ()

    def refusal(self, ip: IPAddress) -> str | None:
        """The reason ``ip`` is refused under this policy, or None if it may be reached."""
        reason = refusal_reason(ip)
        if reason is None or self._allow_listed(ip):
            return None
        if self.allow_loopback and reason in _LIFTED_BY_LOOPBACK:
            return None
        if self.allow_private and reason in _LIFTED_BY_PRIVATE:
            return None
        return reason

    def _allow_listed(self, ip: IPAddress) -> bool:
        forms = {ip, _embedded_ipv4(ip) or ip}
        return any(form in net for form in forms for net in self.allowed_networks)


class TargetRefused(OSError):
    """A postback target the policy forbids; the attempt's error code is refused_target."""

    def __init__(self, reason: str, host: str, address: str) -> None:
        super().__init__(errno.EACCES, f"refused target {host} ({address}): {reason}")
        self.reason = reason
        self.host = host
        self.address = address

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), (self.reason, self.host, self.address)


def find_refusal(exc: BaseException | None) -> TargetRefused | None:
    """The TargetRefused behind an aiohttp error (via os_error, __cause__, __context__)."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, TargetRefused):
            return exc
        seen.add(id(exc))
        exc = getattr(exc, "os_error", None) or exc.__cause__ or exc.__context__
    return None


def _parse_address(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


class GuardedResolver(AbstractResolver):
    """Wraps a resolver, dropping refused addresses; refuses the host if none remain."""

    def __init__(self, policy: TargetPolicy, resolver: AbstractResolver | None = None) -> None:
        self.policy = policy
        self._resolver = resolver

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        if self._resolver is None:  # ThreadedResolver wants a running loop: build it late
            self._resolver = aiohttp.ThreadedResolver()
        answers = await self._resolver.resolve(host, port, family)
        kept: list[ResolveResult] = []
        refused: list[tuple[str, str]] = []  # (reason, address)
        for answer in answers:
            if reason := self._refusal(answer["host"]):
                refused.append((reason, answer["host"]))
            else:
                kept.append(answer)
        if refused and not kept:
            raise TargetRefused(refused[0][0], host, refused[0][1])
        return kept

    def _refusal(self, address: str) -> str | None:
        ip = _parse_address(address)
        return "invalid" if ip is None else self.policy.refusal(ip)

    async def close(self) -> None:
        if self._resolver is not None:
            await self._resolver.close()


def check_literal(url: str | yarl.URL, policy: TargetPolicy) -> None:
    """Refuse a URL whose host is an IP literal the policy forbids (hostnames pass).

    Legacy numeric IPv4 forms (``2130706433``, ``127.1``, ``0x7f.1``) are read the way
    ``inet_aton`` reads them, so they cannot smuggle a refused address past the check.
    """
    host = yarl.URL(url).raw_host
    if not host:
        raise ValueError(f"URL has no host: {url!s}")
    if refused := _literal_refusal(host, policy):
        raise TargetRefused(refused[0], host, refused[1])


@functools.lru_cache(maxsize=4096)
def _literal_refusal(host: str, policy: TargetPolicy) -> tuple[str, str] | None:
    """(reason, address) when `host` is a refused IP literal; asked once per host and
    policy, not once per delivery."""
    ip = _literal_address(host)
    if ip is not None and (reason := policy.refusal(ip)):
        return reason, str(ip)
    return None


def _literal_address(host: str) -> IPAddress | None:
    ip = _parse_address(host)
    if ip is not None or ":" in host:
        return ip
    try:
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except OSError:
        return None


SocketFactory = Callable[[tuple[Any, ...]], socket.socket]


def guarded_socket_factory(policy: TargetPolicy) -> SocketFactory:
    """A TCPConnector socket_factory that refuses to open a socket to a refused address."""

    def factory(addr_info: tuple[Any, ...]) -> socket.socket:
        family, type_, proto, _, address = addr_info
        ip = _parse_address(address[0])
        if reason := "invalid" if ip is None else policy.refusal(ip):
            raise TargetRefused(reason, address[0], address[0])
        return socket.socket(family=family, type=type_, proto=proto)

    return factory


def guarded_connector(
    policy: TargetPolicy, resolver: AbstractResolver | None = None, **kwargs: Any
) -> aiohttp.TCPConnector:
    """A TCPConnector with both guards; keyword arguments pass through to it."""
    return aiohttp.TCPConnector(
        resolver=GuardedResolver(policy, resolver),
        socket_factory=guarded_socket_factory(policy),
        **kwargs,
    )


def allowed_networks(cidrs: Iterable[str]) -> tuple[IPNetwork, ...]:
    """Parse operator-supplied CIDRs (``strict=False``: host bits are ignored)."""
    return tuple(ipaddress.ip_network(c.strip(), strict=False) for c in cidrs)
