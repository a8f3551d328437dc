"""Seed 001 caps under concurrency: a daily cap of 10 admits exactly 10 fires of 200.

200 conversion events for 200 different leads arrive at once, through real `postbackd
serve --no-worker` processes on 127.0.0.1: one on SQLite (a single writer serializes),
three sharing one PostgreSQL database (four writer threads each, so up to twelve
transactions race for the cap counter row). Every event must be accepted (200, the
conversion recorded); exactly 10 deliveries may be planned to send and 190 must be
skipped "daily cap 10 reached". Then a separate `postbackd worker` process delivers the
10 to a real receiver on 127.0.0.1 and never sends a skipped one.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import parse_qs

import aiohttp
import pytest
import sqlalchemy as sa

from postbackd.store.engine import make_engine
from tests.system.proc import BIN, Server, create_api_key, server_env

pytestmark = pytest.mark.slow

EVENTS = 200
CAP = 10
PG_SERVERS = 3
SECRET_KEY = "caps-concurrency-test-key"
REQUEST_TIMEOUT_S = 60.0
BURST_TIMEOUT_S = 120.0
DELIVERY_TIMEOUT_S = 30.0


class Worker:
    """One `postbackd worker` child process; output goes to a log file."""

    def __init__(self, db_url: str, workdir: Path, env: dict[str, str]):
        self.log_path = workdir / f"worker-{time.monotonic_ns()}.log"
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [str(BIN), "worker", "--database-url", db_url],
                cwd=workdir,
                env=server_env(**env),
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def stop(self, timeout: float = 10) -> None:
        """SIGTERM, then SIGKILL if it does not exit in time; always reaped."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout)

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


@pytest.fixture
def procs(tmp_path):
    """Start server and worker processes; every one is stopped and reaped at teardown."""
    started: list[Server | Worker] = []

    class Procs:
        @staticmethod
        def serve(db_url: str, env: dict[str, str]) -> Server:
            server = Server(db_url, tmp_path, env=env)
            started.append(server)
            return server.start()

        @staticmethod
        def worker(db_url: str, env: dict[str, str]) -> Worker:
            worker = Worker(db_url, tmp_path, env)
            started.append(worker)
            return worker

    yield Procs
    for proc in reversed(started):
        proc.stop()


def noon_zone() -> str:
    """A fixed-offset IANA zone where it is about noon: the local day cannot roll over
    during the test, so every event counts against the same daily window."""
    offset = 12 - datetime.now(UTC).hour  # from -11 to +12
    return "Etc/GMT" if offset == 0 else f"Etc/GMT{'-' if offset > 0 else '+'}{abs(offset)}"


async def _json(session: aiohttp.ClientSession, method: str, url: str, **kw) -> tuple[int, dict]:
    async with session.request(method, url, **kw) as r:
        return r.status, await r.json(content_type=None)


async def _setup(bases: list[str], key: str, receiver_url: str) -> dict:
    """Organization timezone, a campaign, a duplicate-allowing event, the capped postback
    and EVENTS leads (created through every server), all through the HTTP API."""
    headers = {"Authorization": f"Bearer {key}"}
    base = bases[0]
    async with aiohttp.ClientSession(headers=headers) as s:
        status, body = await _json(
            s, "PATCH", f"{base}/api/v1/organization", json={"timezone": noon_zone()}
        )
        assert status == 200, body
        status, campaign = await _json(s, "POST", f"{base}/api/v1/campaigns", json={"name": "Cap"})
        assert status == 201, campaign
        cid = campaign["id"]
        event = {"event_id": "sale", "type": "conversion", "payout": 5, "allow_duplicates": True}
        status, body = await _json(s, "POST", f"{base}/api/v1/campaigns/{cid}/events", json=event)
        assert status == 201, body
        postback = {
            "name": "capped",
            "trigger": "event",
            "url": receiver_url + "/capped?conv={conversion_id}",
            "retry": {"schedule": [0.1], "max_attempts": 2},
            # Several caps, so each fire locks several counter rows (a lock-order test);
            # the daily one is the tightest.
            "filters": {
                "caps": {
                    "lifetime": {"enabled": True, "limit": EVENTS},
                    "monthly": {"enabled": True, "limit": CAP * 3},
                    "weekly": {"enabled": True, "limit": CAP * 2},
                    "daily": {"enabled": True, "limit": CAP},
                }
            },
        }
        status, pb = await _json(s, "POST", f"{base}/api/v1/postbacks", json=postback)
        assert status == 201, pb

        sem = asyncio.Semaphore(32)

        async def lead(i: int) -> str:
            async with sem:
                status, body = await _json(
                    s,
                    "POST",
                    f"{bases[i % len(bases)]}/api/leads",
                    json={"cid": cid, "email": f"u{i}@example.com"},
                )
            assert status == 201, body
            return body["data"]["transaction_id"]

        tids = await asyncio.gather(*(lead(i) for i in range(EVENTS)))
    assert len(set(tids)) == EVENTS
    return {"cid": cid, "postback_id": pb["id"], "tids": tids}


async def _burst(bases: list[str], org_id: str, tids: list[str]) -> list[tuple[int, dict]]:
    """EVENTS conversion events at once (no connection limit), spread over the servers."""
    start = asyncio.Event()

    async def one(session: aiohttp.ClientSession, i: int) -> tuple[int, dict]:
        await start.wait()
        body = {"event_id": "sale", "transaction_id": tids[i], "revenue": "2.50", "clid": f"c{i}"}
        url = f"{bases[i % len(bases)]}/api/event/global/{org_id}"
        return await _json(session, "POST", url, json=body)

    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
        tasks = [asyncio.create_task(one(session, i)) for i in range(EVENTS)]
        await asyncio.sleep(0)  # every task is parked on `start`
        start.set()
        return await asyncio.wait_for(asyncio.gather(*tasks), BURST_TIMEOUT_S)


async def _admin(base: str, key: str, postback_id: str) -> dict:
    """Stats and every delivery of the postback, through the admin API (paginated)."""
    headers = {"Authorization": f"Bearer {key}"}
    async with aiohttp.ClientSession(headers=headers) as s:
        status, stats = await _json(
            s, "GET", f"{base}/api/v1/stats/deliveries", params={"postback_id": postback_id}
        )
        assert status == 200, stats
        rows: list[dict] = []
        cursor = None
        for _ in range(EVENTS):  # bounded: one page per loop, at most EVENTS deliveries
            params = {"postback_id": postback_id, "limit": "100"}
            if cursor:
                params["cursor"] = cursor
            status, page = await _json(s, "GET", f"{base}/api/v1/deliveries", params=params)
            assert status == 200, page
            rows += page["data"]
            cursor = page["next_cursor"]
            if not cursor:
                break
        status, conversions = await _json(
            s, "GET", f"{base}/api/v1/conversions", params={"event_id": "sale", "limit": "500"}
        )
        assert status == 200, conversions
    return {"stats": stats, "deliveries": rows, "conversions": conversions["data"]}


def _cap_counters(db_url: str, postback_id: str) -> dict[str, int]:
    engine = make_engine(db_url, pool_size=1)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                sa.text("SELECT window_key, count FROM cap_counters WHERE postback_id = :p"),
                {"p": postback_id},
            ).all()
    finally:
        engine.dispose()
    return {r.window_key: r.count for r in rows}


def test_daily_cap_admits_exactly_the_limit_under_concurrency(db_url, tmp_path, procs, receiver):
    on_pg = not db_url.startswith("sqlite")
    env = {"POSTBACKD_SECRET_KEY": SECRET_KEY, "POSTBACKD_ALLOW_LOOPBACK_TARGETS": "true"}
    if on_pg:
        env["POSTBACKD_WRITER_THREADS"] = "4"
    org_id, key = create_api_key(db_url, "Caps", tmp_path)
    servers = [procs.serve(db_url, env) for _ in range(PG_SERVERS if on_pg else 1)]
    bases = [server.url for server in servers]
    world = asyncio.run(_setup(bases, key, receiver.url))

    started = time.monotonic()
    answers = asyncio.run(_burst(bases, org_id, world["tids"]))
    elapsed = time.monotonic() - started

    # Every event is accepted and recorded: the cap limits postbacks, not conversions.
    refused = [(status, body) for status, body in answers if status != 200]
    assert not refused, (len(refused), refused[:5])
    data = [body["data"] for _, body in answers]
    assert [d["transaction_id"] for d in data] == world["tids"]
    assert sum(d["deliveries"] for d in data) == CAP, [d["deliveries"] for d in data]
    conversion_ids = {d["conversion_id"] for d in data}
    assert len(conversion_ids) == EVENTS

    # Exactly CAP deliveries to send, the rest skipped by the cap; each server agrees.
    for base in bases:
        seen = asyncio.run(_admin(base, key, world["postback_id"]))
        assert seen["stats"]["by_state"] == {"pending": CAP, "skipped": EVENTS - CAP}, seen["stats"]
        assert seen["stats"]["skipped_by_filter"] == {"caps": EVENTS - CAP}, seen["stats"]
        assert {c["id"] for c in seen["conversions"]} == conversion_ids
    rows = seen["deliveries"]
    assert len(rows) == EVENTS and {r["conversion_id"] for r in rows} == conversion_ids
    pending = {r["conversion_id"] for r in rows if r["state"] == "pending"}
    skipped = [r for r in rows if r["state"] == "skipped"]
    assert len(pending) == CAP
    assert {(r["skip_filter"], r["skip_reason"]) for r in skipped} == {
        ("caps", f"daily cap {CAP} reached")
    }
    # The event answers named the same CAP conversions as the pending deliveries.
    assert {d["conversion_id"] for d in data if d["deliveries"]} == pending
    counters = _cap_counters(db_url, world["postback_id"])
    assert sorted(k.split(":")[0] for k in counters) == ["daily", "lifetime", "monthly", "weekly"]
    assert set(counters.values()) == {CAP}, counters

    # A worker process delivers the CAP pending ones, and only those.
    worker = procs.worker(db_url, env)
    deadline = time.monotonic() + DELIVERY_TIMEOUT_S
    by_state: dict[str, int] = {}
    while time.monotonic() < deadline:
        by_state = asyncio.run(_admin(bases[0], key, world["postback_id"]))["stats"]["by_state"]
        if by_state.get("delivered") == CAP or worker.proc.poll() is not None:
            break
        time.sleep(0.1)
    assert by_state == {"delivered": CAP, "skipped": EVENTS - CAP}, (by_state, worker.log_tail())
    time.sleep(0.5)  # a stray send of a skipped delivery would show up here
    sent = [parse_qs(r.query)["conv"][0] for r in receiver.requests if r.path == "/capped"]
    assert sorted(sent) == sorted(pending)
    print(
        f"{len(servers)} server(s), {EVENTS} events in {elapsed:.2f}s:"
        f" {CAP} delivered, {len(skipped)} skipped by the daily cap"
    )
