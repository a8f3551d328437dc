"""The SSRF guard, against real aiohttp sessions and a real receiver on 127.0.0.1:0.

Safety of the suite itself: every session here opens sockets through ``SafetyNet``, which
records each address and refuses (before any connect) anything but 127.0.0.1 and ::1,
so even a broken guard cannot send a packet off this host.
"""

from __future__ import annotations

import asyncio
import ipaddress
import pickle
import socket
from collections.abc import Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult

from postbackd.delivery import ssrf
from postbackd.delivery.ssrf import (
    GuardedResolver,
    TargetPolicy,
    TargetRefused,
    allowed_networks,
    check_literal,
    find_refusal,
    guarded_socket_factory,
    refusal_reason,
)

LOOPBACK_ONLY = {"127.0.0.1", "::1"}
ip = ipaddress.ip_address


def run(coro: Awaitable[Any]) -> Any:
    return asyncio.run(coro)  # type: ignore[arg-type]


class FakeResolver(AbstractResolver):
    """A DNS seam: answers from a table, and remembers what it was asked."""

    def __init__(self, table: dict[str, list[str]]) -> None:
        self.table = table
        self.asked: list[str] = []

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        self.asked.append(host)
        return [_answer(host, address, port) for address in self.table[host]]

    async def close(self) -> None:
        pass


def _answer(host: str, address: str, port: int) -> ResolveResult:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    return {
        "hostname": host,
        "host": address,
        "port": port,
        "family": family,
        "proto": 0,
        "flags": 0,
    }


class SafetyNet:
    """A socket_factory that records every address and only ever opens loopback sockets."""

    def __init__(self, inner: Callable[[tuple[Any, ...]], socket.socket] | None = None) -> None:
        self.inner = inner
        self.addresses: list[str] = []

    def __call__(self, addr_info: tuple[Any, ...]) -> socket.socket:
        family, type_, proto, _, address = addr_info
        self.addresses.append(address[0])
        if address[0] not in LOOPBACK_ONLY:
            raise AssertionError(f"test tried to open a socket to {address[0]}")
        if self.inner is not None:
            return self.inner(addr_info)
        return socket.socket(family=family, type=type_, proto=proto)


@asynccontextmanager
async def receiver():
    """A real HTTP receiver on 127.0.0.1:0; yields (port, list of paths it served)."""
    hits: list[str] = []

    async def handle(request: web.Request) -> web.StreamResponse:
        hits.append(request.path)
        if request.path == "/hop":
            raise web.HTTPFound(request.query["to"])
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield port, hits
    finally:
        await runner.cleanup()


def session(resolver: AbstractResolver, net: SafetyNet) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(resolver=resolver, socket_factory=net, use_dns_cache=False)
    return aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=10))


async def fetch(client: aiohttp.ClientSession, url: str) -> int:
    async with client.get(url) as response:
        await response.read()
        return response.status


def test_all_is_exported():
    assert set(ssrf.__all__) == {
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
    }


# -- refusal_reason ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("127.0.0.1", "loopback"),
        ("127.255.255.254", "loopback"),
        ("::1", "loopback"),
        ("10.0.0.1", "private"),
        ("172.16.0.1", "private"),
        ("172.31.255.255", "private"),
        ("192.168.1.1", "private"),
        ("fc00::1", "private"),
        ("fd12:3456::1", "private"),
        ("fec0::1", "private"),  # deprecated site-local
        ("100.64.0.1", "cgnat"),
        ("100.127.255.255", "cgnat"),
        ("169.254.1.1", "link_local"),
        ("fe80::1", "link_local"),
        ("fe80::1%eth0", "link_local"),
        ("169.254.169.254", "metadata"),
        ("169.254.170.2", "metadata"),
        ("169.254.0.23", "metadata"),
        ("100.100.100.200", "metadata"),
        ("168.63.129.16", "metadata"),
        ("192.0.0.192", "metadata"),
        ("fd00:ec2::254", "metadata"),
        ("fd20:ce::254", "metadata"),
        ("224.0.0.1", "multicast"),
        ("239.255.255.250", "multicast"),
        ("ff02::1", "multicast"),
        ("240.0.0.1", "reserved"),
        ("255.255.255.255", "reserved"),
        ("0.0.0.1", "reserved"),
        ("192.0.2.1", "reserved"),  # documentation
        ("198.51.100.7", "reserved"),
        ("203.0.113.9", "reserved"),
        ("198.18.0.1", "reserved"),  # benchmarking
        ("2001:db8::1", "reserved"),
        ("100::1", "reserved"),  # discard-only
        ("2001::1", "reserved"),  # Teredo
        ("::10.0.0.1", "reserved"),  # deprecated IPv4-compatible
        ("::ffff:127.0.0.1", "loopback"),  # IPv4-mapped forms are judged as IPv4
        ("::ffff:10.0.0.1", "private"),
        ("::ffff:169.254.169.254", "metadata"),
        ("::ffff:0.0.0.0", "unspecified"),
        ("64:ff9b::a00:1", "private"),  # NAT64 of 10.0.0.1
        ("64:ff9b::7f00:1", "loopback"),
        ("2002:a9fe:a9fe::", "metadata"),  # 6to4 of 169.254.169.254
        ("2002:c0a8:101::1", "private"),
        ("8.8.8.8", None),
        ("1.1.1.1", None),
        ("93.184.216.34", None),
        ("100.63.255.255", None),  # just below CGNAT
        ("100.128.0.0", None),  # just above
        ("172.32.0.1", None),  # just past 172.16/12
        ("2606:4700::1111", None),
        ("::ffff:8.8.8.8", None),
        ("64:ff9b::808:808", None),
        ("2002:808:808::1", None),
    ],
)
def test_refusal_reason(address, reason):
    assert refusal_reason(ip(address)) == reason


# -- TargetPolicy ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("policy", "address", "reason"),
    [
        (TargetPolicy(), "127.0.0.1", "loopback"),
        (TargetPolicy(allow_loopback=True), "127.0.0.1", None),
        (TargetPolicy(allow_loopback=True), "::1", None),
        (TargetPolicy(allow_loopback=True), "::ffff:127.0.0.1", None),
        (TargetPolicy(allow_loopback=True), "10.0.0.1", "private"),
        (TargetPolicy(allow_loopback=True), "0.0.0.0", "unspecified"),
        (TargetPolicy(allow_private=True), "10.0.0.1", None),
        (TargetPolicy(allow_private=True), "fd12::1", None),
        (TargetPolicy(allow_private=True), "100.64.0.1", None),
        (TargetPolicy(allow_private=True), "127.0.0.1", "loopback"),
        (TargetPolicy(allow_private=True), "fd00:ec2::254", "metadata"),
        (TargetPolicy(allow_private=True), "100.100.100.200", "metadata"),
        (TargetPolicy(allow_private=True), "169.254.1.1", "link_local"),
        (TargetPolicy(True, True), "169.254.169.254", "metadata"),
        (TargetPolicy(allowed_networks=allowed_networks(["10.1.0.0/16"])), "10.1.2.3", None),
        (TargetPolicy(allowed_networks=allowed_networks(["10.1.0.0/16"])), "10.2.0.1", "private"),
        (
            TargetPolicy(allowed_networks=allowed_networks(["10.1.0.0/16"])),
            "::ffff:10.1.2.3",
            None,
        ),
        (
            TargetPolicy(allowed_networks=allowed_networks(["169.254.169.254/32"])),
            "169.254.169.254",
            None,
        ),
        (TargetPolicy(allowed_networks=allowed_networks(["::1/128"])), "::1", None),
        (TargetPolicy(allowed_networks=allowed_networks(["::1/128"])), "127.0.0.1", "loopback"),
        (TargetPolicy(), "8.8.8.8", None),
        (TargetPolicy(allowed_networks=allowed_networks(["10.0.0.0/8"])), "8.8.8.8", None),
    ],
)
def test_policy_refusal(policy, address, reason):
    assert policy.refusal(ip(address)) == reason


def test_allowed_networks_parses_and_tolerates_host_bits():
    assert allowed_networks([" 10.1.2.3/16", "::1/128"]) == (
        ipaddress.ip_network("10.1.0.0/16"),
        ipaddress.ip_network("::1/128"),
    )
    with pytest.raises(ValueError):
        allowed_networks(["not-a-network"])


# -- TargetRefused and find_refusal ------------------------------------------------------


def test_target_refused_is_a_recognizable_oserror():
    exc = TargetRefused("private", "evil.test", "10.0.0.1")
    assert isinstance(exc, OSError)
    assert (exc.reason, exc.host, exc.address) == ("private", "evil.test", "10.0.0.1")
    assert "evil.test" in str(exc) and "private" in str(exc)
    clone = pickle.loads(pickle.dumps(exc))
    assert (clone.reason, clone.host, clone.address) == ("private", "evil.test", "10.0.0.1")


def test_find_refusal_walks_causes_and_contexts():
    refused = TargetRefused("loopback", "h", "127.0.0.1")
    try:
        try:
            raise refused
        except OSError as inner:
            raise RuntimeError("wrapped") from inner
    except RuntimeError as outer:
        assert find_refusal(outer) is refused
    assert find_refusal(ValueError("x")) is None
    assert find_refusal(None) is None
    looped = ValueError("loop")
    looped.__context__ = looped
    assert find_refusal(looped) is None


# -- GuardedResolver on its own ----------------------------------------------------------


def test_resolver_drops_refused_answers_and_keeps_the_rest():
    fake = FakeResolver({"mixed.test": ["10.0.0.1", "93.184.216.34", "169.254.169.254"]})
    answers = run(GuardedResolver(TargetPolicy(), fake).resolve("mixed.test", 80))
    assert [a["host"] for a in answers] == ["93.184.216.34"]


def test_resolver_refuses_when_nothing_remains():
    fake = FakeResolver({"meta.test": ["169.254.169.254", "10.0.0.1"]})
    with pytest.raises(TargetRefused) as info:
        run(GuardedResolver(TargetPolicy(), fake).resolve("meta.test", 80))
    assert (info.value.reason, info.value.host, info.value.address) == (
        "metadata",
        "meta.test",
        "169.254.169.254",
    )


def test_resolver_passes_empty_answers_through_and_refuses_garbage():
    fake = FakeResolver({"none.test": [], "junk.test": ["not-an-ip"]})
    guard = GuardedResolver(TargetPolicy(), fake)
    assert run(guard.resolve("none.test")) == []
    with pytest.raises(TargetRefused, match="invalid"):
        run(guard.resolve("junk.test"))


def test_resolver_checks_every_answer_so_rebinding_is_caught():
    fake = FakeResolver({"rebind.test": ["93.184.216.34"]})
    guard = GuardedResolver(TargetPolicy(), fake)
    assert [a["host"] for a in run(guard.resolve("rebind.test"))] == ["93.184.216.34"]
    fake.table["rebind.test"] = ["127.0.0.1"]  # the attacker's DNS flips to loopback
    with pytest.raises(TargetRefused, match="loopback"):
        run(guard.resolve("rebind.test"))


def test_default_inner_resolver_is_threaded_and_built_lazily():
    async def go() -> list[ResolveResult]:
        guard = GuardedResolver(TargetPolicy(allow_loopback=True))
        try:
            return await guard.resolve("localhost", 80)
        finally:
            await guard.close()

    assert {a["host"] for a in run(go())} <= LOOPBACK_ONLY


# -- real sessions through the resolver --------------------------------------------------


@pytest.mark.parametrize(
    ("host", "address", "reason"),
    [
        ("evil.test", "10.0.0.1", "private"),
        ("meta.test", "169.254.169.254", "metadata"),
        ("meta6.test", "fd00:ec2::254", "metadata"),
        ("mapped.test", "::ffff:10.0.0.1", "private"),
    ],
)
def test_session_refuses_hostile_names_before_any_socket_opens(host, address, reason):
    fake = FakeResolver({host: [address]})
    net = SafetyNet()

    async def go() -> None:
        async with session(GuardedResolver(TargetPolicy(), fake), net) as client:
            await fetch(client, f"http://{host}/")

    with pytest.raises(aiohttp.ClientConnectorError) as info:
        run(go())
    assert isinstance(info.value.os_error, TargetRefused)
    assert isinstance(info.value.__cause__, TargetRefused)
    assert find_refusal(info.value).reason == reason
    assert fake.asked == [host]
    assert net.addresses == []


def test_receiver_name_is_refused_unless_loopback_is_allowed():
    async def go(policy: TargetPolicy) -> tuple[int | None, list[str], SafetyNet]:
        net = SafetyNet()
        fake = FakeResolver({"receiver.test": ["127.0.0.1"]})
        async with receiver() as (port, hits), session(GuardedResolver(policy, fake), net) as c:
            try:
                status = await fetch(c, f"http://receiver.test:{port}/postback")
            except aiohttp.ClientConnectorError as exc:
                assert find_refusal(exc).reason == "loopback"
                status = None
            return status, hits, net

    status, hits, net = run(go(TargetPolicy()))
    assert (status, hits, net.addresses) == (None, [], [])
    status, hits, net = run(go(TargetPolicy(allow_loopback=True)))
    assert (status, hits, net.addresses) == (200, ["/postback"], ["127.0.0.1"])


def test_localhost_through_the_real_threaded_resolver():
    async def go(policy: TargetPolicy) -> tuple[int | None, list[str]]:
        async with receiver() as (port, hits), session(GuardedResolver(policy), SafetyNet()) as c:
            try:
                return await fetch(c, f"http://localhost:{port}/"), hits
            except aiohttp.ClientConnectorError as exc:
                assert find_refusal(exc).reason == "loopback"
                return None, hits

    assert run(go(TargetPolicy())) == (None, [])
    assert run(go(TargetPolicy(allow_loopback=True))) == (200, ["/"])


# -- IP literals -------------------------------------------------------------------------


def test_aiohttp_skips_the_resolver_for_ip_literals():
    """Why check_literal exists: a resolver-only guard never sees a literal host."""
    fake = FakeResolver({})

    async def go() -> tuple[int, list[str]]:
        async with (
            receiver() as (port, hits),
            session(GuardedResolver(TargetPolicy(), fake), SafetyNet()) as c,
        ):
            return await fetch(c, f"http://127.0.0.1:{port}/literal"), hits

    assert run(go()) == (200, ["/literal"])
    assert fake.asked == []


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://127.0.0.1:8080/", "loopback"),
        ("http://[::1]/", "loopback"),
        ("http://[::ffff:10.0.0.1]/", "private"),
        ("http://[::ffff:7f00:1]:9/", "loopback"),
        ("https://169.254.169.254/latest/meta-data/", "metadata"),
        ("http://[fd00:ec2::254]/", "metadata"),
        ("http://[fe80::1%25eth0]/", "link_local"),
        ("http://0.0.0.0/", "unspecified"),
        ("http://2130706433/", "loopback"),  # legacy integer form
        ("http://017700000001/", "loopback"),  # legacy octal form
        ("http://127.1/", "loopback"),  # legacy short form
        ("http://0x7f.1/", "loopback"),  # legacy hex form
        ("http://0xa9.254.169.254/", "metadata"),
        ("http://user:pw@10.0.0.1:8443/path?q=1#f", "private"),
    ],
)
def test_check_literal_refuses(url, reason):
    with pytest.raises(TargetRefused) as info:
        check_literal(url, TargetPolicy())
    assert info.value.reason == reason


@pytest.mark.parametrize(
    ("url", "policy"),
    [
        ("http://example.com/", TargetPolicy()),
        ("http://evil.test/", TargetPolicy()),  # names are the resolver's job
        ("http://127.0.0.1.nip.io/", TargetPolicy()),
        ("http://8.8.8.8/", TargetPolicy()),
        ("http://[2606:4700::1111]/", TargetPolicy()),
        ("http://127.0.0.1:8080/", TargetPolicy(allow_loopback=True)),
        ("http://[::1]/", TargetPolicy(allow_loopback=True)),
        ("http://10.0.0.1/", TargetPolicy(allow_private=True)),
        ("http://[::ffff:10.0.0.1]/", TargetPolicy(allow_private=True)),
    ],
)
def test_check_literal_passes(url, policy):
    assert check_literal(url, policy) is None


def test_check_literal_needs_a_host():
    with pytest.raises(ValueError, match="no host"):
        check_literal("mailto:a@b", TargetPolicy())


def test_literal_receiver_is_refused_up_front_and_reached_when_allowed():
    async def go(policy: TargetPolicy) -> tuple[int | None, list[str]]:
        async with receiver() as (port, hits), session(GuardedResolver(policy), SafetyNet()) as c:
            url = f"http://127.0.0.1:{port}/lit"
            try:
                check_literal(url, policy)
            except TargetRefused as exc:
                assert exc.reason == "loopback"
                return None, hits
            return await fetch(c, url), hits

    assert run(go(TargetPolicy())) == (None, [])
    assert run(go(TargetPolicy(allow_loopback=True))) == (200, ["/lit"])


# -- the socket-level guard --------------------------------------------------------------


def guarded_session(policy: TargetPolicy, net: SafetyNet) -> aiohttp.ClientSession:
    net.inner = guarded_socket_factory(policy)
    return session(GuardedResolver(policy, FakeResolver({})), net)


@pytest.mark.parametrize("url", ["http://127.0.0.1:{port}/", "http://[::1]:{port}/"])
def test_socket_factory_refuses_literals_without_check_literal(url):
    async def go() -> None:
        async with receiver() as (port, hits), guarded_session(TargetPolicy(), SafetyNet()) as c:
            try:
                await fetch(c, url.format(port=port))
            finally:
                assert hits == []

    with pytest.raises(aiohttp.ClientConnectorError) as info:
        run(go())
    assert find_refusal(info.value).reason == "loopback"


def test_socket_factory_refuses_a_redirect_to_a_refused_literal():
    policy = TargetPolicy(allowed_networks=allowed_networks(["127.0.0.1/32"]))

    async def go() -> list[str]:
        async with receiver() as (port, hits), guarded_session(policy, SafetyNet()) as c:
            hop = f"http://127.0.0.1:{port}/hop?to=http://[::1]:{port}/final"
            with pytest.raises(aiohttp.ClientConnectorError) as info:
                await fetch(c, hop)
            assert find_refusal(info.value).address == "::1"
            return hits

    assert run(go()) == ["/hop"]


@pytest.mark.parametrize("host", ["127.0.0.1", "receiver.test"])
def test_guarded_connector_wires_both_guards(host):
    fake = FakeResolver({"receiver.test": ["127.0.0.1"]})

    async def go(policy: TargetPolicy) -> tuple[int | None, list[str]]:
        async with receiver() as (port, hits):
            connector = ssrf.guarded_connector(policy, fake, use_dns_cache=False)
            async with aiohttp.ClientSession(connector=connector) as client:
                try:
                    return await fetch(client, f"http://{host}:{port}/"), hits
                except aiohttp.ClientConnectorError as exc:
                    assert find_refusal(exc).reason == "loopback"
                    return None, hits

    assert run(go(TargetPolicy())) == (None, [])
    assert run(go(TargetPolicy(allow_loopback=True))) == (200, ["/"])
    assert fake.asked == ([] if host == "127.0.0.1" else [host, host])
