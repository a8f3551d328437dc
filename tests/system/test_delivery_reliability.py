"""SPEC 2 (delivery) and SPEC 4 (nothing silently lost), with real processes.

Every test runs the real `postbackd` executable as child processes on 127.0.0.1 and a
real aiohttp receiver (tests/receiver.py) in the test process; the receiver records the
Idempotency-Key of every request it gets, so what reached the partner can be compared
with what the database says was attempted.

1. A flaky receiver (500s, stalls beyond the postback timeout, connection resets, 429
   with Retry-After) that recovers: every delivery ends delivered, every key got a 2xx,
   and no key was sent more often than its recorded attempts explain.
2. The sending process is SIGKILLed mid-batch and restarted with a short lease: every
   delivery ends final, none lost, and the only keys sent twice are those whose first
   send was in flight (sent, not recorded) when the process died.
3. PostgreSQL: two `postbackd worker` processes on one database split the work and never
   send the same delivery twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import subprocess
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path

import aiohttp
import httpx
import pytest
import sqlalchemy as sa

from postbackd.delivery.dispatcher import RECORDING_SLOTS
from postbackd.store.engine import make_engine
from postbackd.store.tables import metadata
from tests.conftest import BACKENDS
from tests.receiver import Answer, Receiver
from tests.system.proc import BIN, HOST, create_api_key, free_port, server_env

pytestmark = pytest.mark.slow

SECRET_KEY = "delivery-reliability-secret"  # shared by every process of one test
FINAL = {"delivered", "dead", "skipped"}
LANES = 20  # concurrent event senders, one lead each (events on one lead are serialized)


# ---- child processes ----------------------------------------------------------------------


class Child:
    """One `postbackd` child process (serve or worker); output goes to a log file."""

    def __init__(self, name: str, args: list[str], workdir: Path, env: dict[str, str]):
        self.name = name
        self.args = args
        self.workdir = workdir
        self.env = env
        self.proc: subprocess.Popen | None = None
        self.log_path: Path | None = None
        self.starts = 0

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> Child:
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self.starts += 1
        self.log_path = self.workdir / f"{self.name}-{self.starts}.log"
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [str(BIN), *self.args],
                cwd=self.workdir,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        return self

    def kill(self) -> None:
        """SIGKILL (a crash: no shutdown hooks, no drain) and reap."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self._reap()

    def stop(self, timeout: float = 10) -> None:
        """SIGTERM, then SIGKILL if it does not exit in time."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout)
        self.kill()

    def _reap(self) -> None:
        if self.proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(10)

    def log(self) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.log().splitlines()[-lines:])

    def _check_alive(self) -> None:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.tail()}")


class ServeProc(Child):
    def __init__(self, db_url: str, workdir: Path, env: dict[str, str], *, worker: bool):
        self.port = free_port()
        args = ["serve", "--host", HOST, "--port", str(self.port), "--database-url", db_url]
        args.append("--worker" if worker else "--no-worker")
        super().__init__(f"serve-{self.port}", args, workdir, env)

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def start(self, ready_timeout: float = 30) -> ServeProc:
        super().start()
        deadline = time.monotonic() + ready_timeout
        while time.monotonic() < deadline:
            self._check_alive()
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return self
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"server not ready after {ready_timeout}s:\n{self.tail()}")


class WorkerProc(Child):
    def __init__(self, db_url: str, workdir: Path, env: dict[str, str], name: str):
        super().__init__(name, ["worker", "--database-url", db_url], workdir, env)

    def start(self, ready_timeout: float = 30) -> WorkerProc:
        super().start()
        deadline = time.monotonic() + ready_timeout
        while time.monotonic() < deadline:
            self._check_alive()
            if "delivering from" in self.log():
                return self
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"worker not ready after {ready_timeout}s:\n{self.tail()}")


def child_env(**extra: str) -> dict[str, str]:
    return server_env(
        POSTBACKD_SECRET_KEY=SECRET_KEY,
        POSTBACKD_ALLOW_LOOPBACK_TARGETS="1",
        PYTHONUNBUFFERED="1",  # the worker's "delivering from" line reaches the log at once
        COLUMNS="400",  # and rich does not wrap it
        **extra,
    )


@pytest.fixture
def procs(tmp_path):
    """Factories for `serve` / `worker` children; every one is SIGKILLed and reaped at the end."""
    started: list[Child] = []

    def serve(db_url: str, *, worker: bool, **env: str) -> ServeProc:
        child = ServeProc(db_url, tmp_path, child_env(**env), worker=worker)
        started.append(child)
        return child

    def worker(db_url: str, name: str, **env: str) -> WorkerProc:
        child = WorkerProc(db_url, tmp_path, child_env(**env), name)
        started.append(child)
        return child

    yield serve, worker
    for child in started:
        child.kill()


@pytest.fixture
def pg_url(request) -> str:
    """The session's PostgreSQL scratch database, emptied (PostgreSQL-only tests)."""
    if "postgresql" not in BACKENDS:
        pytest.skip("PostgreSQL is not among POSTBACKD_TEST_BACKENDS")
    url = request.getfixturevalue("pg_database")
    engine = make_engine(url, pool_size=1)
    with engine.begin() as conn:
        names = ", ".join(t.name for t in metadata.sorted_tables)
        conn.exec_driver_sql(f"TRUNCATE {names} RESTART IDENTITY CASCADE")
    engine.dispose()
    return url


# ---- traffic through the server's HTTP API ------------------------------------------------


async def _json(session: aiohttp.ClientSession, method: str, url: str, **kw) -> tuple[int, dict]:
    async with session.request(method, url, **kw) as r:
        return r.status, await r.json(content_type=None)


async def _setup_and_fire(base: str, key: str, org_id: str, postback: dict, n: int) -> list[str]:
    """Campaign, conversion event, the postback and LANES leads; then fire n events.

    Returns the conversion ids; every event must have planned exactly one delivery.
    """
    headers = {"Authorization": f"Bearer {key}"}
    timeout = aiohttp.ClientTimeout(total=20)
    async with aiohttp.ClientSession(headers=headers, timeout=timeout) as s:
        status, campaign = await _json(
            s, "POST", f"{base}/api/v1/campaigns", json={"name": "Reliability"}
        )
        assert status == 201, campaign
        cid = campaign["id"]
        event = {"event_id": "sale", "type": "conversion", "allow_duplicates": True}
        status, body = await _json(s, "POST", f"{base}/api/v1/campaigns/{cid}/events", json=event)
        assert status == 201, body
        status, body = await _json(s, "POST", f"{base}/api/v1/postbacks", json=postback)
        assert status == 201, body
        tids = []
        for i in range(LANES):
            status, body = await _json(
                s, "POST", f"{base}/api/leads", json={"cid": cid, "email": f"r{i}@example.com"}
            )
            assert status == 201, body
            tids.append(body["data"]["transaction_id"])

        conversions: list[str] = []

        async def lane(tid: str, count: int) -> None:
            for j in range(count):
                payload = {"event_id": "sale", "transaction_id": tid, "revenue": 1 + j % 7}
                status, body = await _json(
                    s, "POST", f"{base}/api/event/global/{org_id}", json=payload
                )
                assert status == 200, body
                assert body["data"]["deliveries"] == 1, body
                conversions.append(body["data"]["conversion_id"])

        per_lane = [n // LANES + (1 if i < n % LANES else 0) for i in range(LANES)]
        await asyncio.gather(*(lane(t, c) for t, c in zip(tids, per_lane, strict=True)))
    assert len(conversions) == n
    return conversions


def fire(server: ServeProc, key: str, org_id: str, postback: dict, n: int) -> list[str]:
    """_setup_and_fire, with the server's log attached when an answer was not the expected one."""
    try:
        return asyncio.run(_setup_and_fire(server.url, key, org_id, postback, n))
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n--- server log:\n{server.tail(60)}") from exc


def postback_body(receiver: Receiver, *, timeout: float, schedule: list[float], attempts: int):
    return {
        "name": "reliability",
        "trigger": "event",
        "url": receiver.url + "/pb?click={transaction_id}",
        "fields": {"click": "{transaction_id}", "amount": "{revenue}"},
        "timeout": timeout,
        "retry": {"schedule": schedule, "max_attempts": attempts},
    }


def wait_final(base: str, key: str, n: int, timeout: float) -> dict[str, int]:
    """Poll GET /api/v1/stats/deliveries until n deliveries are final (bounded in time)."""
    deadline = time.monotonic() + timeout
    by_state: dict[str, int] = {}
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}) as http:
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                r = http.get("/api/v1/stats/deliveries", timeout=5)
                if r.status_code == 200:
                    by_state = r.json()["by_state"]
                    if sum(v for s, v in by_state.items() if s in FINAL) >= n:
                        return by_state
            time.sleep(0.2)
    raise AssertionError(f"deliveries not final after {timeout}s: {by_state}")


def stored(db_url: str) -> dict:
    """Deliveries (by idempotency key) and their recorded attempts, read from the database."""
    engine = make_engine(db_url, pool_size=1)
    try:
        with engine.connect() as conn:
            deliveries = conn.execute(
                sa.text("SELECT id, idempotency_key, state, attempts FROM deliveries")
            ).all()
            attempts = conn.execute(
                sa.text(
                    "SELECT d.idempotency_key AS key, a.number, a.worker, a.response_status,"
                    " a.error_code FROM delivery_attempts a"
                    " JOIN deliveries d ON d.id = a.delivery_id ORDER BY a.number"
                )
            ).all()
    finally:
        engine.dispose()
    by_key: dict[str, list] = defaultdict(list)
    for a in attempts:
        by_key[a.key].append(a)
    return {
        "deliveries": {d.idempotency_key: d for d in deliveries},
        "attempts": by_key,
    }


def received_by_key(receiver: Receiver) -> dict[str, list]:
    out: dict[str, list] = defaultdict(list)
    for req in list(receiver.requests):
        out[req.headers.get("Idempotency-Key", "")].append(req)
    return out


# ---- 1. a flaky receiver that recovers ----------------------------------------------------

FLAKY_N = 300
FLAKY_TIMEOUT = 0.5  # the postback's timeout; a stall lasts three times as long
FLAKY_FOR = 4.0  # seconds of failures, counted from the first request


class Flaky:
    """Fails for FLAKY_FOR seconds (500, stall past the timeout, reset, 429), then 200s."""

    MODES = ("500", "stall", "reset", "429")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.first: float | None = None
        self.modes: Counter = Counter()
        self.ok: Counter = Counter()  # idempotency key -> 2xx answers given

    def __call__(self, req, n: int) -> Answer:
        with self.lock:
            if self.first is None:
                self.first = req.at
            failing = req.at - self.first < FLAKY_FOR
            mode = self.MODES[n % len(self.MODES)] if failing else "200"
            self.modes[mode] += 1
            if mode == "200":
                self.ok[req.headers.get("Idempotency-Key", "")] += 1
        if mode == "500":
            return Answer(status=500, body=b"oops")
        if mode == "stall":
            return Answer(delay=FLAKY_TIMEOUT * 3)
        if mode == "reset":
            return Answer(reset=True)
        if mode == "429":
            return Answer(status=429, headers={"Retry-After": "1"})
        return Answer()


def test_flaky_receiver_every_delivery_lands(db_url, tmp_path, procs, receiver):
    serve, _worker = procs
    started = time.monotonic()
    flaky = Flaky()
    receiver.script = flaky
    org_id, key = create_api_key(db_url, "Flaky", tmp_path)
    server = serve(db_url, worker=True).start()
    body = postback_body(
        receiver, timeout=FLAKY_TIMEOUT, schedule=[0.2, 0.2, 0.5, 0.5, 1], attempts=12
    )
    fire(server, key, org_id, body, FLAKY_N)

    by_state = wait_final(server.url, key, FLAKY_N, timeout=30)
    assert by_state == {"delivered": FLAKY_N}, (by_state, server.tail())

    db = stored(db_url)
    got = received_by_key(receiver)
    keys = set(db["deliveries"])
    assert len(keys) == FLAKY_N
    # The faults really happened, of every kind, and then the receiver recovered.
    assert all(flaky.modes[m] > 0 for m in Flaky.MODES), flaky.modes
    retried = [k for k, d in db["deliveries"].items() if d.attempts > 1]
    assert len(retried) > FLAKY_N // 2, f"only {len(retried)} deliveries needed a retry"
    # Every key reached the receiver and got a 2xx; nothing came that we did not plan.
    assert set(got) == keys, (len(set(got) - keys), len(keys - set(got)))
    assert not [k for k in keys if flaky.ok[k] < 1]
    # Per key: no more requests than recorded attempts, and the count matches the row.
    over = {
        k: (len(got[k]), len(db["attempts"][k]))
        for k in keys
        if len(got[k]) > len(db["attempts"][k])
    }
    assert not over, f"sent more often than attempts explain: {dict(list(over.items())[:10])}"
    mismatch = [k for k, d in db["deliveries"].items() if d.attempts != len(db["attempts"][k])]
    assert not mismatch, mismatch[:10]
    # The last attempt of each is the 200; the earlier ones carry a retryable error code.
    for k in keys:
        *earlier, last = db["attempts"][k]
        assert last.response_status == 200 and last.error_code is None, last
        assert all(a.response_status != 200 for a in earlier), earlier
    codes = Counter(a.error_code for k in keys for a in db["attempts"][k] if a.error_code)
    assert set(codes) <= {"http_5xx", "timeout", "reset", "http_429"}, codes
    assert {"http_5xx", "timeout", "reset", "http_429"} <= set(codes), codes
    print(
        f"flaky: {FLAKY_N} delivered, {len(receiver.requests)} requests"
        f" ({dict(flaky.modes)}), attempts by error {dict(codes)},"
        f" max attempts {max(d.attempts for d in db['deliveries'].values())},"
        f" {time.monotonic() - started:.1f}s"
    )


# ---- 2. the sending process is SIGKILLed mid-batch -----------------------------------------

KILL_N = 300
KILL_AFTER = 90  # SIGKILL once the receiver has seen this many requests
CONCURRENCY = 32  # requests in flight per worker (and per target, so none waits on a lease)
LEASE = "2"


def _pid_of(worker_id: str | None) -> int | None:
    """Worker ids are `host:pid:random`."""
    parts = (worker_id or "").split(":")
    return int(parts[1]) if len(parts) == 3 and parts[1].isdigit() else None


def resends_explained_by_the_kill(got, attempts, keys, restarted_at: float, new_pid: int) -> set:
    """The keys received twice, after checking each was in flight when the sender died.

    A key sent once was recorded once (by whichever process sent it). A key sent twice
    was sent first by the killed process, which never recorded that attempt (it was in
    flight), and again after the restart, recorded by the new process.
    """
    twice = {k for k in keys if len(got[k]) > 1}
    assert twice, "no send was in flight at the kill (nothing to prove)"
    problems = []
    for k in keys:
        arrivals = [r.at for r in got[k]]
        recorded = attempts[k]
        if k not in twice:
            if len(recorded) != 1:
                problems.append((k, "once", len(arrivals), [a.worker for a in recorded]))
            continue
        ok = (
            len(arrivals) == 2
            and arrivals[0] < restarted_at <= arrivals[1]
            and len(recorded) == 1
            and _pid_of(recorded[0].worker) == new_pid
        )
        if not ok:
            since = [round(a - restarted_at, 3) for a in arrivals]
            problems.append((k, "twice", since, [a.worker for a in recorded]))
    assert not problems, f"{len(problems)} keys (arrivals relative to restart): {problems[:10]}"
    # In flight at the kill: requests being sent, and requests answered whose attempts still
    # waited for their group commit (the recorder lingers for company) — together at most
    # RECORDING_SLOTS x concurrency held by a worker.
    held = RECORDING_SLOTS * CONCURRENCY
    assert len(twice) <= held, f"{len(twice)} keys resent, more than could be in flight"
    return twice


def test_sigkill_mid_batch_loses_nothing(db_url, tmp_path, procs, receiver):
    serve, worker = procs
    started = time.monotonic()
    rng = random.Random(7)
    rng_lock = threading.Lock()

    def slow(_req, _n) -> Answer:
        with rng_lock:
            return Answer(delay=rng.uniform(0.3, 1.0))

    receiver.script = slow
    env = {
        "POSTBACKD_LEASE_SECONDS": LEASE,
        "POSTBACKD_WORKER_CONCURRENCY": str(CONCURRENCY),
        "POSTBACKD_PER_TARGET_CONCURRENCY": str(CONCURRENCY),
    }
    org_id, key = create_api_key(db_url, "Crash", tmp_path)
    if db_url.startswith("sqlite"):  # one process owns the file: the server's own worker sends
        server = serve(db_url, worker=True, **env).start()
        sender: Child = server
    else:  # the server only ingests; a standalone worker sends
        server = serve(db_url, worker=False).start()
        sender = worker(db_url, "worker", **env).start()
    body = postback_body(receiver, timeout=5, schedule=[0.2], attempts=3)
    fire(server, key, org_id, body, KILL_N)

    deadline = time.monotonic() + 20
    while len(receiver.requests) < KILL_AFTER and time.monotonic() < deadline:
        time.sleep(0.01)
    old_pid = sender.pid
    sender.kill()
    seen_at_kill = len(receiver.requests)
    at_kill = stored(db_url)
    unfinished = [k for k, d in at_kill["deliveries"].items() if d.state not in FINAL]
    assert len(at_kill["deliveries"]) == KILL_N
    assert seen_at_kill >= KILL_AFTER and unfinished, "the kill did not land mid-batch"

    restarted_at = time.monotonic()  # any request arriving before this came from the old pid
    sender.start()
    new_pid = sender.pid
    try:
        by_state = wait_final(server.url, key, KILL_N, timeout=30)
    except AssertionError:
        print(server.tail(80))
        raise
    assert set(by_state) <= {"delivered", "dead"}, by_state
    assert sum(by_state.values()) == KILL_N, by_state
    # The receiver always answers 200 well within the timeout: nothing should be dead.
    assert by_state == {"delivered": KILL_N}, by_state

    db = stored(db_url)
    got = received_by_key(receiver)
    keys = set(db["deliveries"])
    assert len(keys) == KILL_N and set(got) == keys, (len(keys), len(set(got)))
    assert all(d.state == "delivered" for d in db["deliveries"].values())
    # Attempts recorded before the crash are all still there.
    old_before = sum(
        1 for k in keys for a in at_kill["attempts"][k] if _pid_of(a.worker) == old_pid
    )
    old_after = sum(1 for k in keys for a in db["attempts"][k] if _pid_of(a.worker) == old_pid)
    assert old_after == old_before, (old_before, old_after)
    assert {_pid_of(a.worker) for k in keys for a in db["attempts"][k]} <= {old_pid, new_pid}

    twice = resends_explained_by_the_kill(got, db["attempts"], keys, restarted_at, new_pid)
    print(
        f"kill: {seen_at_kill} received and {len(unfinished)} unfinished at SIGKILL,"
        f" {len(twice)} resent after restart, {len(receiver.requests)} requests in all,"
        f" {time.monotonic() - started:.1f}s"
    )


# ---- 3. PostgreSQL: two workers share one database ----------------------------------------

PAIR_N = 500


def test_two_workers_never_send_the_same_delivery(pg_url, tmp_path, procs, receiver):
    serve, worker = procs
    started = time.monotonic()
    receiver.script = lambda _req, _n: Answer(delay=0.02)
    org_id, key = create_api_key(pg_url, "Pair", tmp_path)
    server = serve(pg_url, worker=False).start()
    workers = [worker(pg_url, "worker-a"), worker(pg_url, "worker-b")]
    for w in workers:
        w.start()
    body = postback_body(receiver, timeout=5, schedule=[0.2], attempts=3)
    fire(server, key, org_id, body, PAIR_N)

    by_state = wait_final(server.url, key, PAIR_N, timeout=30)
    assert by_state == {"delivered": PAIR_N}, by_state
    for w in workers:
        assert w.proc.poll() is None, f"{w.name} died:\n{w.tail()}"

    db = stored(pg_url)
    got = received_by_key(receiver)
    keys = set(db["deliveries"])
    assert len(keys) == PAIR_N and set(got) == keys
    sent_twice = {k: len(got[k]) for k in keys if len(got[k]) != 1}
    assert not sent_twice, f"{len(sent_twice)} keys received more than once: {sent_twice}"
    recorded_twice = {k: len(db["attempts"][k]) for k in keys if len(db["attempts"][k]) != 1}
    assert not recorded_twice, recorded_twice
    share = Counter(_pid_of(db["attempts"][k][0].worker) for k in keys)
    assert set(share) == {w.pid for w in workers}, share
    assert min(share.values()) >= PAIR_N // 20, f"one worker did almost nothing: {share}"
    print(f"pair: shares {sorted(share.values())}, {time.monotonic() - started:.1f}s")


def test_separate_worker_is_woken_by_notify_not_polling(pg_url, tmp_path, procs, receiver):
    """A `postbackd worker` on another process hears new deliveries at once (LISTEN/NOTIFY):
    the median event -> request latency is far below its 0.5 s poll."""
    serve, worker = procs
    org_id, key = create_api_key(pg_url, "Notify", tmp_path)
    server = serve(pg_url, worker=False).start()
    worker(pg_url, "worker-n").start()
    body = postback_body(receiver, timeout=5, schedule=[0.2], attempts=3)
    fire(server, key, org_id, body, 1)
    receiver.wait_for(1, timeout=10)
    tid = json.loads(receiver.requests[0].body)["click"]

    async def sequential(n: int) -> list[float]:
        sent = []
        async with aiohttp.ClientSession() as s:
            for _ in range(n):
                await asyncio.sleep(0.05)
                sent.append(time.monotonic())
                payload = {"event_id": "sale", "transaction_id": tid, "revenue": 1}
                status, answer = await _json(
                    s, "POST", f"{server.url}/api/event/global/{org_id}", json=payload
                )
                assert status == 200, answer
        return sent

    sent = asyncio.run(sequential(20))
    got = receiver.wait_for(21, timeout=20)[1:]
    assert len(got) == 20
    latencies = sorted(r.at - t for r, t in zip(got, sent, strict=True))
    assert latencies[10] < 0.15, f"median {latencies[10] * 1000:.0f} ms: the worker only polled"
