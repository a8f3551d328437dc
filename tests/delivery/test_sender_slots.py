"""The sender's slots: per target host, and for the whole sender, against a real receiver.

The dispatcher hands the sender more deliveries than it may send at once (the next ones
wait, ready); these tests pin down what waits where and that waiting costs a request
neither its timeout nor its recorded latency.
"""

from __future__ import annotations

import asyncio

from postbackd.delivery import ssrf
from postbackd.delivery.sender import Sender
from postbackd.outbound.request import OutboundRequest
from tests.receiver import Answer

LOOPBACK = ssrf.TargetPolicy(allow_loopback=True)


def _request(url: str, path: str) -> OutboundRequest:
    return OutboundRequest(method="GET", url=f"{url}{path}", headers={}, body=b"", missing=())


def _most_at_once(receiver, delays: dict[str, float]) -> int:
    """The most requests the receiver held at the same time (arrival .. arrival + delay)."""
    edges = []
    for r in receiver.requests:
        edges += [(r.at, 1), (r.at + delays[r.path], -1)]
    most = now = 0
    for _t, step in sorted(edges, key=lambda e: (e[0], e[1])):
        now += step
        most = max(most, now)
    return most


async def _send_all(sender: Sender, requests, timeout: float = 5):
    try:
        return await asyncio.gather(
            *(sender.send(r, timeout=timeout, policy=LOOPBACK, keep=1024) for r in requests)
        )
    finally:
        await sender.close()


def test_one_host_gets_at_most_its_slots(receiver):
    receiver.script = lambda _req, _n: Answer(delay=0.2)
    sender = Sender(LOOPBACK, limit=8, per_host=2)
    paths = [f"/h{i}" for i in range(6)]
    responses = asyncio.run(_send_all(sender, [_request(receiver.url, p) for p in paths]))
    assert [r.status for r in responses] == [200] * 6
    assert _most_at_once(receiver, dict.fromkeys(paths, 0.2)) == 2


def test_the_whole_sender_gets_at_most_its_limit(receiver):
    receiver.script = lambda _req, _n: Answer(delay=0.2)
    sender = Sender(LOOPBACK, limit=3, per_host=10)
    hosts = [receiver.url, receiver.url.replace("127.0.0.1", "localhost")]
    paths = [f"/g{i}" for i in range(8)]
    reqs = [_request(hosts[i % 2], p) for i, p in enumerate(paths)]
    responses = asyncio.run(_send_all(sender, reqs))
    assert [r.status for r in responses] == [200] * 8
    assert _most_at_once(receiver, dict.fromkeys(paths, 0.2)) == 3


def test_a_slow_partner_does_not_starve_another(receiver):
    """Six requests queue for the slow host's two slots; they hold none of the sender's
    slots while they wait, so the other host's request goes out at once."""
    delays = {**{f"/slow{i}": 0.4 for i in range(6)}, "/fast": 0.0}
    receiver.script = lambda req, _n: Answer(delay=delays[req.path])
    sender = Sender(LOOPBACK, limit=3, per_host=2)
    other = receiver.url.replace("127.0.0.1", "localhost")

    async def scenario():
        slow = [
            asyncio.ensure_future(
                sender.send(
                    _request(receiver.url, f"/slow{i}"), timeout=5, policy=LOOPBACK, keep=1024
                )
            )
            for i in range(6)
        ]
        await asyncio.sleep(0.05)  # the slow ones hold their host's slots, four wait
        fast = await sender.send(_request(other, "/fast"), timeout=5, policy=LOOPBACK, keep=1024)
        done_slow = sum(t.done() for t in slow)
        await asyncio.gather(*slow)
        await sender.close()
        return fast, done_slow

    fast, done_slow = asyncio.run(scenario())
    assert fast.status == 200
    assert done_slow == 0, "the fast host's request waited for the slow host's queue"
    assert fast.latency_ms < 300


def test_waiting_for_a_slot_counts_against_neither_timeout_nor_latency(receiver):
    """One slot, two requests of 0.4 s each with a 0.6 s timeout: the second waits 0.4 s
    for the slot, then gets its whole timeout, and records its own 0.4 s."""
    receiver.script = lambda _req, _n: Answer(delay=0.4)
    sender = Sender(LOOPBACK, limit=1, per_host=1)
    reqs = [_request(receiver.url, "/a"), _request(receiver.url, "/b")]
    first, second = asyncio.run(_send_all(sender, reqs, timeout=0.6))
    assert (first.status, second.status) == (200, 200), (first, second)
    assert 350 <= second.latency_ms < 600, second.latency_ms
