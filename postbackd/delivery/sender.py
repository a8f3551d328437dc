"""Send one rendered request with a pooled aiohttp client; report what happened.

One ClientSession per target policy (the server-wide one, plus one per organization
allow-list), each behind the SSRF guard. A semaphore per target (host and port) keeps one
slow partner from taking every connection; one for the whole sender keeps `limit`
requests out at once. The dispatcher hands over more than that (the next ones wait here, ready),
so a request's timeout and latency start when it gets its slots, not when it queued.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
from yarl import URL

from postbackd.delivery import ssrf
from postbackd.delivery.retry import ErrorCode
from postbackd.outbound.request import OutboundRequest


@dataclass(frozen=True, slots=True)
class Response:
    status: int | None
    headers: dict[str, str]
    body: bytes
    latency_ms: float
    error: ErrorCode | None = None
    detail: str | None = None


class Sender:
    def __init__(self, base_policy: ssrf.TargetPolicy, *, limit: int = 64, per_host: int = 16):
        self.base_policy = base_policy
        self.limit = limit
        self.per_host = per_host
        self._sessions: dict[ssrf.TargetPolicy, aiohttp.ClientSession] = {}
        self._host_slots: dict[str, asyncio.Semaphore] = defaultdict(
            lambda: asyncio.Semaphore(self.per_host)
        )
        self._slots = asyncio.Semaphore(limit)

    def policy_for(self, allowed_targets: list[str]) -> ssrf.TargetPolicy:
        """The server-wide policy widened by an organization's allow-list."""
        if not allowed_targets:
            return self.base_policy
        loopback = self.base_policy.allow_loopback or "loopback" in allowed_targets
        cidrs = ssrf.allowed_networks(t for t in allowed_targets if t != "loopback")
        return ssrf.TargetPolicy(
            allow_loopback=loopback,
            allow_private=self.base_policy.allow_private,
            allowed_networks=self.base_policy.allowed_networks + cidrs,
        )

    def _session(self, policy: ssrf.TargetPolicy) -> aiohttp.ClientSession:
        session = self._sessions.get(policy)
        if session is None or session.closed:
            connector = ssrf.guarded_connector(policy, limit=self.limit, ttl_dns_cache=30)
            session = aiohttp.ClientSession(
                connector=connector, auto_decompress=True, skip_auto_headers=("User-Agent",)
            )
            self._sessions[policy] = session
        return session

    async def close(self) -> None:
        for session in self._sessions.values():
            await session.close()
        self._sessions.clear()

    async def send(
        self, req: OutboundRequest, *, timeout: float, policy: ssrf.TargetPolicy, keep: int
    ) -> Response:
        started = time.perf_counter()
        try:
            url = URL(req.url, encoded=True)  # already escaped by the renderer; parsed once
            ssrf.check_literal(url, policy)
            # the target's slot first: waiting for it must not hold one of all the slots
            async with self._host_slots[target_of(req.url)], self._slots:
                started = time.perf_counter()
                return await self._exchange(req, url, timeout, policy, keep, started)
        except Exception as exc:  # every failure becomes a coded attempt, never a crash
            code, detail = classify_exception(exc)
            return Response(None, {}, b"", _ms(started), code, detail)

    async def _exchange(self, req, url: URL, timeout, policy, keep, started) -> Response:
        session = self._session(policy)
        async with session.request(
            req.method,
            url,
            data=req.body or None,
            headers=req.headers,
            timeout=_timeout(timeout),
            allow_redirects=False,
        ) as resp:
            body = await _read_capped(resp, keep)
            return Response(resp.status, dict(resp.headers), body, _ms(started))


_TIMEOUTS: dict[float, aiohttp.ClientTimeout] = {}


def _timeout(seconds: float) -> aiohttp.ClientTimeout:
    """One (immutable) ClientTimeout per value, not one per request."""
    hit = _TIMEOUTS.get(seconds)
    if hit is None:
        hit = _TIMEOUTS[seconds] = aiohttp.ClientTimeout(total=seconds)
    return hit


async def _read_capped(resp: aiohttp.ClientResponse, keep: int) -> bytes:
    """At most `keep` bytes of the answer; a huge response body is not our problem."""
    content = resp.content
    chunks, size = [], 0
    while size < keep:
        chunk = await content.read(keep - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
        if content.at_eof():  # the whole (small) answer came in one read: no second one
            break
    return b"".join(chunks)


def target_of(url: str) -> str:
    """A request's target, the unit of per-target concurrency: its host and port as
    written ("127.0.0.1:8080"), without credentials. A string split, not a URL parse: the
    dispatcher asks for every delivery."""
    netloc = url.split("/", 3)[2] if "://" in url else ""
    for end in "?#":
        netloc = netloc.partition(end)[0]
    return netloc.rpartition("@")[2].lower()


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)


def classify_exception(exc: BaseException) -> tuple[ErrorCode, str]:
    if refusal := ssrf.find_refusal(exc):
        return ErrorCode.REFUSED_TARGET, f"{refusal.host} -> {refusal.address}: {refusal.reason}"
    detail = f"{type(exc).__name__}: {exc}"[:500]
    if isinstance(exc, asyncio.TimeoutError | aiohttp.ServerTimeoutError):
        return ErrorCode.TIMEOUT, detail
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return ErrorCode.DNS, detail
    if isinstance(exc, aiohttp.ClientSSLError):
        return ErrorCode.TLS, detail
    if isinstance(exc, aiohttp.ClientConnectorError):
        return ErrorCode.CONNECT, detail
    if isinstance(
        exc, aiohttp.ServerDisconnectedError | aiohttp.ClientOSError | aiohttp.ClientPayloadError
    ):
        return ErrorCode.RESET, detail
    return ErrorCode.CONNECT, detail


def body_ok(success: dict[str, Any] | None, body: bytes) -> bool:
    """The postback's response rule (SPEC 2b): some trackers answer 200 with success=false."""
    if not success:
        return True
    text = body.decode("utf-8", "replace")
    if success.get("body_contains") and success["body_contains"] not in text:
        return False
    if success.get("body_not_contains") and success["body_not_contains"] in text:
        return False
    if success.get("json_field"):
        return _json_field(text, success["json_field"]) == success.get("json_equals")
    return True


def _json_field(text: str, path: str) -> Any:
    try:
        value: Any = orjson.loads(text)
    except orjson.JSONDecodeError:
        return _NOTHING
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return _NOTHING
        value = value[part]
    return value


_NOTHING = object()
