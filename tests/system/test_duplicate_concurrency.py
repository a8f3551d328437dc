"""Seed 000 duplicate protection under concurrency: 50 identical posts, one conversion.

50 simultaneous identical conversion posts for an event that forbids duplicates, sent to
real `postbackd serve` processes: one on SQLite, two sharing one PostgreSQL database (so
the in-process lock cannot help; the advisory lock and the unique dedupe key must).
Exactly one post is acknowledged with 200; the others get 400 duplicate_event or 403
event_locked; exactly one conversion is stored.
"""

from __future__ import annotations

import asyncio
import contextlib

import aiohttp
import pytest

from tests.system.proc import Server, create_api_key

pytestmark = pytest.mark.slow
POSTS = 50


@pytest.fixture
def servers(db_url, tmp_path):
    count = 2 if db_url.startswith("postgresql") else 1
    env = {"POSTBACKD_SECRET_KEY": "dup-test", "POSTBACKD_WRITER_THREADS": "4"}
    started: list[Server] = []
    try:
        for _ in range(count):
            started.append(Server(db_url, tmp_path, env=env).start())
        yield started
    finally:
        for server in started:
            with contextlib.suppress(Exception):
                server.kill()


async def _setup(base: str, key: str) -> tuple[str, str]:
    auth = {"Authorization": f"Bearer {key}"}
    async with aiohttp.ClientSession(headers=auth) as s:
        async with s.post(f"{base}/api/v1/campaigns", json={"name": "dup"}) as r:
            cid = (await r.json())["id"]
        event = {"event_id": "sale", "type": "conversion", "allow_duplicates": False}
        async with s.post(f"{base}/api/v1/campaigns/{cid}/events", json=event) as r:
            assert r.status == 201
        async with s.post(f"{base}/api/leads", json={"cid": cid, "email": "a@b.c"}) as r:
            return cid, (await r.json())["data"]["transaction_id"]


async def _burst(urls: list[str], body: dict) -> list[tuple[int, str]]:
    start = asyncio.Event()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as s:

        async def one(i: int) -> tuple[int, str]:
            await start.wait()
            async with s.post(urls[i % len(urls)], json=body) as r:
                return r.status, (await r.json())["code"]

        tasks = [asyncio.create_task(one(i)) for i in range(POSTS)]
        await asyncio.sleep(0.2)  # every request waits at the gate
        start.set()
        return await asyncio.wait_for(asyncio.gather(*tasks), 60)


async def _conversions(base: str, key: str) -> list[dict]:
    auth = {"Authorization": f"Bearer {key}"}
    async with (
        aiohttp.ClientSession(headers=auth) as s,
        s.get(f"{base}/api/v1/conversions", params={"limit": 500}) as r,
    ):
        return (await r.json())["data"]


def test_fifty_identical_posts_record_one_conversion(servers, db_url, tmp_path):
    org, key = create_api_key(db_url, "dup", tmp_path)
    _cid, tid = asyncio.run(_setup(servers[0].url, key))
    urls = [f"{s.url}/api/event/global/{org}" for s in servers]
    body = {"event_id": "sale", "transaction_id": tid, "revenue": 9.5}
    results = asyncio.run(_burst(urls, body))
    oks = [r for r in results if r[0] == 200]
    assert len(oks) == 1, results
    others = {r for r in results if r[0] != 200}
    assert others <= {(400, "duplicate_event"), (403, "event_locked")}, others
    conversions = asyncio.run(_conversions(servers[-1].url, key))
    assert len(conversions) == 1 and conversions[0]["revenue"] == 9.5
    # Once the burst is over, a late identical post is a plain duplicate.
    assert asyncio.run(_post_once(urls[0], body)) == (400, "duplicate_event")


async def _post_once(url: str, body: dict) -> tuple[int, str]:
    async with aiohttp.ClientSession() as s, s.post(url, json=body) as r:
        return r.status, (await r.json())["code"]
