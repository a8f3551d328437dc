"""Outbound-postback (dispatch) benchmark with a same-run ceiling (on demand; not pytest).

    .venv/bin/python bench/dispatch.py [--duration S] [--rates 1000,2000] [--backlog K]
                                       [--no-pg | --no-sqlite] [--profile]

One receiver process (raw asyncio + httptools on 127.0.0.1) answers 200 at once and
records, per request, its arrival time, the `Idempotency-Key` header and the body. Then:
  ceiling   a bare aiohttp client (one ClientSession, TCPConnector(limit=64), the body
            and headers postbackd renders for a real delivery, pre-serialized) POSTs to it
            at concurrency 64: requests/s; before and after the first database's runs;
  drain     `postbackd serve --no-worker` takes K inbound events (wrk, as fast as it goes),
            each planning one JSON postback to the receiver; then the server is restarted
            with its in-process worker and the backlog is drained: deliveries/s (receiver
            arrival times), ratio to the ceiling;
  e2e       the same server (API + worker, one process) at fixed offered rates (wrk Lua
            pacing): accepted/s, delivered/s, event-sent -> postback-received p50/p99 (the
            event carries its send time in `sub1`, the postback copies `{sub1}` into its
            body), backlog (pending + retrying) at the start and the end;
  postgres  drain and e2e again on a scratch database next to --pg-url, with
            `serve --no-worker` plus one `postbackd worker` process (skipped if unreachable).
CPU of every process comes from /proc; a phase that starts with more than 0.3 CPUs busy
elsewhere is flagged NOISY. Results go to bench/results/dispatch-<timestamp>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import math
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench import disk  # noqa: E402
from bench.disk import FsyncProbe, describe  # noqa: E402
from bench.ingest import (  # noqa: E402
    POSTBACK_FIELDS,
    _children,
    _create_leads,
    _machine_info,
    box_cpu,
    busy_cores,
    ensure_wrk,
    http_json,
    pg_scratch,
    proc_cpu,
)
from tests.system.proc import (  # noqa: E402
    BIN,
    HOST,
    Server,
    create_api_key,
    die_with_parent,
    free_port,
    server_env,
)

LUA = REPO / "bench" / "wrk" / "dispatch.lua"
RESULTS = REPO / "bench" / "results"
EVENT = "bench_event"
TARGET_DRAIN_RATIO = 0.50
TARGET_P99_MS = 25.0
TARGET_P99_RATE = 1000  # the p99 target is stated for this offered rate
NOISE_CORES = 0.3
CEILING_CONCURRENCY = 64
SECRET_KEY = "dispatch-bench-throwaway-key"
FIELDS = POSTBACK_FIELDS  # the postback under test (see bench/ingest.py)


# ---- the receiver (its own process: `dispatch.py --role receiver --port P`) ----------------

OK_ANSWER = (
    b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{"ok":true}'
)


class ReceiverProtocol(asyncio.Protocol):
    """HTTP/1.1 keep-alive, parsed by httptools; POST anything = record and answer 200.

    `GET /_count` and `GET /_dump?from=N` are the bench's control calls; the body is parsed
    only when dumped, so recording a request costs almost nothing. With a `delay` (seconds)
    every postback is answered that much later (a slow partner, bench/fairness.py).
    """

    def __init__(self, log: list, delay: float = 0.0):
        import httptools

        self.log = log
        self.delay = delay
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.error = httptools.HttpParserError
        self.url, self.key, self.body, self.keep_alive = b"", None, [], True

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except self.error:
            self.transport.close()

    def on_message_begin(self) -> None:
        self.url, self.key, self.body = b"", None, []

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() == b"idempotency-key":
            self.key = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        self.keep_alive = self.parser.should_keep_alive()

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        arrived = time.time()
        if self.url.startswith(b"/_"):
            payload = json.dumps(_control(self.url.decode(), self.log)).encode()
            head = f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
            self.transport.write(head.encode() + payload)
        else:
            self.log.append((arrived, self.key, b"".join(self.body)))
            if self.delay:
                asyncio.get_running_loop().call_later(self.delay, self._answer, self.keep_alive)
                return
            self.transport.write(OK_ANSWER)
        if not self.keep_alive:
            self.transport.close()

    def _answer(self, keep_alive: bool) -> None:
        if not self.transport.is_closing():
            self.transport.write(OK_ANSWER)
            if not keep_alive:
                self.transport.close()


def _control(url: str, log: list) -> dict:
    if url.startswith("/_dump"):
        start = int(url.partition("from=")[2] or 0)
        return {"n": len(log), "rows": [_parse_record(r) for r in log[start:]]}
    return {"n": len(log)}


def _parse_record(record: tuple) -> list:
    """[arrived, idempotency key, t (event sent, unix s), ct (recorded, unix s)]."""
    import orjson

    arrived, key, body = record
    t = ct = None
    with contextlib.suppress(ValueError, TypeError, AttributeError):
        data = orjson.loads(body)
        t = float(data["t"]) if data.get("t") else None
        if data.get("ct"):
            ct = datetime.fromisoformat(data["ct"].replace("Z", "+00:00")).timestamp()
    return [arrived, key, t, ct]


async def _receiver_main(port: int, delay: float = 0.0) -> None:
    loop = asyncio.get_running_loop()
    log: list = []
    server = await loop.create_server(
        lambda: ReceiverProtocol(log, delay), HOST, port, backlog=1024
    )
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    server.close()


class Receiver:
    """The receiver child process and its control calls."""

    def __init__(self, workdir: Path, delay_ms: float = 0):
        self.port = free_port()
        self.url = f"http://{HOST}:{self.port}"
        self.log = open(workdir / f"receiver-{self.port}.log", "wb")  # noqa: SIM115
        cmd = [sys.executable, str(Path(__file__).resolve()), "--role", "receiver"]
        self.proc = subprocess.Popen(
            [*cmd, "--port", str(self.port), "--delay-ms", str(delay_ms)],
            cwd=REPO,
            env=server_env(),
            stdout=self.log,
            stderr=subprocess.STDOUT,
            preexec_fn=die_with_parent,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and self.proc.poll() is None:
            with contextlib.suppress(OSError):
                self.count()
                return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"receiver did not start; see {self.log.name}")

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _get(self, path: str) -> dict:
        with urllib.request.urlopen(self.url + path, timeout=30) as r:
            return json.loads(r.read())

    def count(self) -> int:
        return self._get("/_count")["n"]

    def dump(self, start: int) -> list[list]:
        return self._get(f"/_dump?from={start}")["rows"]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.log.close()


# ---- the bare-client ceiling (its own process: `--role ceiling-client`) ----------------------


async def _ceiling_main(url: str, seconds: float, concurrency: int, spec_file: str) -> dict:
    import aiohttp

    spec = json.loads(Path(spec_file).read_text())
    body, headers = spec["body"].encode(), spec["headers"]
    loop = asyncio.get_running_loop()
    statuses: Counter = Counter()
    errors: Counter = Counter()
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(
        connector=connector, skip_auto_headers=("User-Agent",)
    ) as session:

        async def client(i: int, until: float, counting: bool) -> None:
            n = 0
            while loop.time() < until:
                n += 1
                h = {**headers, "Idempotency-Key": f"ceiling-{i}-{n}-{counting:d}"}
                try:
                    async with session.post(url, data=body, headers=h) as resp:
                        await resp.read()
                        if counting:
                            statuses[resp.status] += 1
                except (TimeoutError, aiohttp.ClientError) as exc:
                    errors[type(exc).__name__] += 1

        warm = loop.time() + min(1.0, seconds / 5)
        await asyncio.gather(*(client(i, warm, False) for i in range(concurrency)))
        c0, t0 = time.process_time(), time.perf_counter()
        until = loop.time() + seconds
        await asyncio.gather(*(client(i, until, True) for i in range(concurrency)))
        cpu, elapsed = time.process_time() - c0, time.perf_counter() - t0
    done = sum(statuses.values())
    return {
        "requests": done,
        "seconds": elapsed,
        "req_per_s": done / elapsed,
        "client_cpu_s": cpu,
        "client_cpu_us_per_req": 1e6 * cpu / max(done, 1),
        "statuses": {str(k): v for k, v in statuses.items()},
        "errors": dict(errors),
        "body_bytes": len(body),
    }


def run_ceiling(receiver: Receiver, spec_file: Path, seconds: float, idle=None) -> dict:
    """`idle`: our other processes, idle meanwhile (kept out of the noise figure)."""
    noise = quiet_check({**(idle or {}), "receiver": receiver.pid})
    cmd = [sys.executable, str(Path(__file__).resolve()), "--role", "ceiling-client"]
    cmd += [
        "--url",
        receiver.url + "/ceiling",
        "--duration",
        str(seconds),
        "--spec",
        str(spec_file),
    ]
    n0 = receiver.count()
    window = CpuWindow({"receiver": receiver.pid})
    out, rusage = run_child(cmd, seconds + 60)
    cpu = window.stop()
    line = next((x for x in out.splitlines() if x.startswith("CEILJSON ")), None)
    if line is None:
        raise RuntimeError(f"ceiling client printed no summary:\n{out}")
    r = json.loads(line[len("CEILJSON ") :])
    received = receiver.count() - n0
    r.update(noise)
    r["client_process_cpu_s"] = rusage.ru_utime + rusage.ru_stime
    r["receiver_cpu_us_per_req"] = 1e6 * cpu["cpu_s"]["receiver"] / max(received, 1)
    r["receiver_got"] = received
    r["cpu"] = cpu
    print(
        f"ceiling  bare aiohttp client c{CEILING_CONCURRENCY}: {r['req_per_s']:,.0f} req/s"
        f"  client {r['client_cpu_us_per_req']:.0f} us/req"
        f"  receiver {r['receiver_cpu_us_per_req']:.0f} us/req  errors {r['errors'] or 0}"
        + noisy_note(r),
        flush=True,
    )
    return r


# ---- /proc, children, the box ----------------------------------------------------------------


def quiet_check(pids: dict[str, int] | None = None, seconds: float = 1.0) -> dict:
    """Is the box quiet before a phase? CPUs busy over `seconds` minus what our own (idle)
    processes in `pids` used then, and the load average."""
    pids = pids or {}
    own0 = {n: proc_cpu(p) for n, p in pids.items()}
    busy = busy_cores(seconds)
    own = {n: (proc_cpu(p) - own0[n]) / seconds for n, p in pids.items()}
    others = busy - sum(v for v in own.values() if not math.isnan(v))
    return {
        "busy_cores_before": others,
        "own_cores_before": own,
        "loadavg": os.getloadavg(),
        "noisy": others > NOISE_CORES,
    }


def noisy_note(r: dict) -> str:
    if not r.get("noisy"):
        return ""
    return f"  NOISY ({r['busy_cores_before']:.1f} CPUs busy before, load {r['loadavg'][0]:.1f})"


class CpuWindow:
    """CPU seconds of named processes and of the whole box between start and stop()."""

    def __init__(self, pids: dict[str, int]):
        self.pids = dict(pids)
        self.c0 = {n: proc_cpu(p) for n, p in self.pids.items()}
        (self.b0, self.t0), self.w0 = box_cpu(), time.monotonic()

    def stop(self, extra: dict[str, float] | None = None) -> dict:
        c1 = {n: proc_cpu(p) for n, p in self.pids.items()}
        (b1, t1), w1 = box_cpu(), time.monotonic()
        wall = w1 - self.w0
        used = {n: c1[n] - self.c0[n] for n in self.pids}
        used.update(extra or {})
        box = b1 - self.b0
        return {
            "wall_s": wall,
            "cpu_s": used,
            "cpu_pct": {n: 100 * v / wall for n, v in used.items()},
            "box_busy_s": box,
            "box_cpu_pct": 100 * box / (t1 - self.t0) if t1 > self.t0 else None,
            "rest_of_box_cpu_s": box - sum(v for v in used.values() if not math.isnan(v)),
        }


def run_child(cmd: list[str], timeout: float, tick=None, every: float = 0.5, stop_on=None):
    """Run `cmd` to the end (bounded); returns (output, rusage).

    `tick()` is called every `every` seconds; when the output shows `stop_on` the child
    gets SIGINT (wrk then stops early and still prints its summary)."""
    with tempfile.TemporaryFile() as out:
        proc = subprocess.Popen(
            cmd, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, preexec_fn=die_with_parent
        )
        deadline, next_tick, signalled = time.monotonic() + timeout, time.monotonic(), False
        while True:
            pid, status, rusage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                proc.returncode = os.waitstatus_to_exitcode(status)
                break
            if time.monotonic() > deadline:
                proc.kill()
                os.wait4(proc.pid, 0)
                raise RuntimeError(f"{Path(cmd[0]).name} did not finish in {timeout:.0f}s")
            if time.monotonic() >= next_tick:
                next_tick += every
                if tick:
                    tick()
                if stop_on and not signalled and stop_on in _peek(out):
                    proc.send_signal(signal.SIGINT)
                    signalled = True
            time.sleep(0.05)
        return _peek(out).decode(errors="replace"), rusage


def _peek(f) -> bytes:
    """The whole file without moving the offset the child shares with us."""
    return os.pread(f.fileno(), os.fstat(f.fileno()).st_size, 0)


# ---- postbackd processes and the outbox -------------------------------------------------------


class Serve(Server):
    """`postbackd serve`, with or without the in-process worker.

    (tests.system.proc.Server always passes --no-worker; this only changes that flag.)
    """

    def __init__(self, *args, worker: bool, tag: str, **kwargs):
        super().__init__(*args, **kwargs)
        self.worker, self.tag = worker, tag

    def start(self, ready_timeout: float = 30) -> Serve:
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self.starts += 1
        self.log_path = self.workdir / f"server-{self.tag}.log"
        cmd = [*self.launcher, "serve", "--host", HOST, "--port", str(self.port)]
        cmd += ["--database-url", self.db_url, "--worker" if self.worker else "--no-worker"]
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                cmd,
                cwd=self.workdir,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=die_with_parent,
            )
        self.wait_ready(ready_timeout)
        return self


class Worker:
    """One `postbackd worker` process (PostgreSQL)."""

    def __init__(self, db_url: str, workdir: Path, env: dict):
        self.log = open(workdir / "worker.log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [str(BIN), "worker", "--database-url", db_url],
            cwd=workdir,
            env=server_env(**env),
            stdout=self.log,
            stderr=subprocess.STDOUT,
            preexec_fn=die_with_parent,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.log.close()


class Outbox:
    """Read-only look at the deliveries table from the bench process (index-backed counts)."""

    BACKLOG = ("pending", "retrying", "sending")

    def __init__(self, db_url: str):
        from postbackd.store.engine import make_engine

        self.engine = make_engine(db_url, pool_size=1)

    def backlog(self) -> dict[str, int]:
        import sqlalchemy as sa

        from postbackd.store.tables import deliveries as d

        stmt = sa.select(d.c.state, sa.func.count()).where(d.c.state.in_(self.BACKLOG))
        with self.engine.connect() as conn:
            found = dict(conn.execute(stmt.group_by(d.c.state)).all())
        out = {s: found.get(s, 0) for s in self.BACKLOG}
        out["due"] = out["pending"] + out["retrying"]  # the backlog of the brief
        return out

    def by_state(self) -> dict[str, int]:
        import sqlalchemy as sa

        from postbackd.store.tables import deliveries as d

        with self.engine.connect() as conn:
            stmt = sa.select(d.c.state, sa.func.count()).group_by(d.c.state)
            return dict(conn.execute(stmt).all())

    def sample_request(self) -> dict:
        """The request postbackd will send for one pending delivery (its own renderer)."""
        import sqlalchemy as sa

        from postbackd.outbound import request as outbound_request
        from postbackd.store.tables import deliveries as d
        from postbackd.store.tables import postbacks as p

        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(d.c.id, d.c.context, d.c.postback_id).where(d.c.state == "pending")
            ).first()
            config = conn.execute(sa.select(p.c.config).where(p.c.id == row.postback_id)).scalar()
        req = outbound_request.build(config, {}, row.context, row.id, int(time.time()))
        headers = {k: v for k, v in req.headers.items() if k.lower() != "idempotency-key"}
        return {"method": req.method, "body": req.body.decode(), "headers": headers}

    def close(self) -> None:
        self.engine.dispose()


class Target:
    """An org with one campaign, one duplicate-allowing tracking event, leads, and one JSON
    postback to the receiver fired by that event. Holds the running postbackd processes."""

    def __init__(self, name: str, db_url: str, workdir: Path, receiver: Receiver, args):
        self.name, self.db_url, self.workdir = name, db_url, workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.env = {
            "POSTBACKD_ALLOW_LOOPBACK_TARGETS": "1",
            "POSTBACKD_SECRET_KEY": SECRET_KEY,
        }
        if args.writer_process:
            self.env["POSTBACKD_WRITER_PROCESS"] = args.writer_process
        if args.sqlite_synchronous and db_url.startswith("sqlite"):
            self.env["POSTBACKD_SQLITE_SYNCHRONOUS"] = args.sqlite_synchronous
        if args.per_target:
            self.env["POSTBACKD_PER_TARGET_CONCURRENCY"] = str(args.per_target)
        self.org_id, self.key = create_api_key(db_url, f"dispatch-{name}", workdir)
        self.port = free_port()
        self.server: Serve | None = None
        self.worker: Worker | None = None
        self.starts = 0
        self.outbox = Outbox(db_url)
        self.start_server(worker=False)
        base = self.server.url
        campaign = http_json("POST", f"{base}/api/v1/campaigns", {"name": "Dispatch"}, self.key)
        self.campaign_id = campaign["id"]
        event = {"event_id": EVENT, "type": "tracking", "allow_duplicates": True}
        http_json("POST", f"{base}/api/v1/campaigns/{campaign['id']}/events", event, self.key)
        postback = {
            "name": "bench receiver",
            "trigger": "event",
            "trigger_events": [EVENT],
            "url": f"{receiver.url}/postback",
            "fields": FIELDS,
        }
        self.postback = http_json("POST", f"{base}/api/v1/postbacks", postback, self.key)
        tids = asyncio.run(_create_leads(base, campaign["id"], args.leads))
        self.tids_file = workdir / "tids.txt"
        self.tids_file.write_text("\n".join(tids) + "\n")
        self.url = f"{base}/api/event/global/{self.org_id}"

    def start_server(self, worker: bool, launcher=None, env=None) -> None:
        self.stop_server()
        self.starts += 1
        self.server = Serve(
            self.db_url,
            self.workdir,
            port=self.port,
            env={**self.env, **(env or {})},
            launcher=launcher,
            worker=worker,
            tag=f"{self.starts}-{'worker' if worker else 'no-worker'}",
        ).start()

    def start_worker(self) -> None:
        self.worker = Worker(self.db_url, self.workdir, self.env)

    def stop_server(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None

    def pids(self) -> dict[str, int]:
        """Our running postbackd processes."""
        out = {"server": self.server.pid} if self.server is not None else {}
        if self.worker is not None:
            out["worker"] = self.worker.pid
        return out

    def stop(self) -> None:
        if self.worker is not None:
            self.worker.stop()
            self.worker = None
        self.stop_server()
        self.outbox.close()


# ---- wrk ------------------------------------------------------------------------------------


def wrk_cmd(
    wrk: str, target: Target, *, conns: int, duration: float, rate: float, limit: int, event=EVENT
):
    cmd = [wrk, "-t1", f"-c{conns}", f"-d{duration:g}s", "--timeout", "5s", "-s", str(LUA)]
    return cmd + [target.url, "--", str(target.tids_file), str(rate), "1", str(limit), event]


def wrk_summary(out: str) -> dict:
    line = next((x for x in out.splitlines() if x.startswith("WRKJSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no summary:\n{out}")
    return json.loads(line[len("WRKJSON ") :])


def non2xx(w: dict) -> dict:
    bad = {k: w[k] for k in ("s403", "s4xx", "s5xx", "sother") if w[k]}
    bad.update({k: w[k] for k in w if k.startswith("err_") and w[k]})
    return bad


def preload(wrk: str, target: Target, backlog: int, event: str = EVENT) -> dict:
    """Post `backlog` events into `serve --no-worker`: that many pending deliveries."""
    before = target.outbox.backlog()["pending"]
    window = CpuWindow(target.pids())
    bound = backlog / 100 + 60
    cmd = wrk_cmd(wrk, target, conns=32, duration=bound, rate=0, limit=backlog, event=event)
    out, rusage = run_child(cmd, bound + 30, every=0.2, stop_on=b"WRKSTOP")
    cpu = window.stop({"wrk": rusage.ru_utime + rusage.ru_stime})
    w = wrk_summary(out)
    pending = target.outbox.backlog()["pending"]
    stop = next((x for x in out.splitlines() if x.startswith("WRKSTOP ")), None)
    secs = float(stop.split()[1]) / 1000 if stop else w["duration_us"] / 1e6
    r = {
        "events_posted": w["requests"],
        "accepted": w["s2xx"],
        "accepted_per_s": w["s2xx"] / secs,
        "pending_added": pending - before,
        "pending": pending,
        "non2xx": non2xx(w),
        "cpu": cpu,
        "wrk": w,
    }
    print(
        f"{target.name:8} preload  {r['accepted']:,} events in {secs:.1f}s"
        f" ({r['accepted_per_s']:,.0f}/s, no worker) -> {pending:,} pending deliveries"
        f"  non-2xx {r['non2xx'] or 0}",
        flush=True,
    )
    return r


# ---- drain ----------------------------------------------------------------------------------


def run_drain(target: Target, receiver: Receiver, start_worker, label: str) -> dict:
    """Start the worker (`start_worker()`), measure until the backlog is delivered."""
    expected = target.outbox.backlog()["due"]
    noise = quiet_check({**target.pids(), "receiver": receiver.pid})
    n0 = receiver.count()
    w0 = time.monotonic()
    start_worker()
    pids = target.pids()
    for name, pid in list(pids.items()):  # a writer child's share, shown apart (in name's too)
        for child in _children(pid):
            cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
            if b"spawn_main" in cmdline and b"resource_tracker" not in cmdline:
                pids[f"{name}'s writer"] = child
    samples: list[tuple] = []
    deadline = time.monotonic() + max(60.0, expected / 50)
    drained_at = None
    while time.monotonic() < deadline:
        got = receiver.count() - n0
        cpu = {n: proc_cpu(p) for n, p in pids.items()}
        samples.append((time.monotonic(), got, cpu, box_cpu()))
        if got >= expected and _outstanding(target) == 0:
            drained_at = time.monotonic()
            break
        time.sleep(0.2)
    rows = receiver.dump(n0)
    r = drain_figures(rows, samples, expected, pids)
    r.update(noise)
    r.update(
        {
            "label": label,
            "expected": expected,
            "received": len(rows),
            "drained": drained_at is not None,
            "wall_from_start_s": (drained_at or time.monotonic()) - w0,
            "states_after": target.outbox.by_state(),
        }
    )
    cpu_text = "  ".join(
        f"{n} {r['cpu_pct_steady'][n]:.0f}% ({r['cpu_us_per_delivery'][n]:.0f} us/delivery)"
        for n in pids
    )
    print(
        f"{target.name:8} drain    {r['received']:,}/{expected:,} in {r['first_to_last_s']:.1f}s:"
        f" {r['deliveries_per_s']:,.0f}/s (steady 10-90% {r['steady_per_s']:,.0f}/s)"
        f"  {cpu_text}  dup keys {r['duplicate_keys']}"
        + ("" if r["drained"] else "  NOT DRAINED")
        + noisy_note(r),
        flush=True,
    )
    return r


def _outstanding(target: Target) -> int:
    b = target.outbox.backlog()
    return b["due"] + b["sending"]


def drain_figures(rows: list[list], samples: list[tuple], expected: int, pids: dict) -> dict:
    arrivals = sorted(row[0] for row in rows)
    keys = Counter(row[1] for row in rows)
    n = len(arrivals)
    out: dict = {"duplicate_keys": sum(c - 1 for c in keys.values() if c > 1)}
    out.update(_drain_cpu(samples, expected, pids))
    if n < 2:
        return {**out, "deliveries_per_s": 0.0, "steady_per_s": 0.0, "first_to_last_s": 0.0}
    span = arrivals[-1] - arrivals[0]
    lo, hi = int(n * 0.1), int(n * 0.9)
    per_second = Counter(int(a - arrivals[0]) for a in arrivals)
    out.update(
        {
            "first_to_last_s": span,
            "deliveries_per_s": (n - 1) / max(span, 1e-9),
            "steady_per_s": (hi - lo) / max(arrivals[hi] - arrivals[lo], 1e-9),
            "per_second": [per_second[i] for i in range(int(span) + 1)],
        }
    )
    return out


def _drain_cpu(samples: list[tuple], expected: int, pids: dict) -> dict:
    """CPU over the steady part: between the samples taken at 10% and 90% received."""
    inside = [s for s in samples if expected * 0.1 <= s[1] <= expected * 0.9]
    if len(inside) < 2:
        inside = [samples[0], samples[-1]]
    a, b = inside[0], inside[-1]
    wall, got = max(b[0] - a[0], 1e-9), max(b[1] - a[1], 1)
    (b0, t0), (b1, t1) = a[3], b[3]
    return {
        "cpu_pct_steady": {k: 100 * (b[2][k] - a[2][k]) / wall for k in pids},
        "cpu_us_per_delivery": {k: 1e6 * (b[2][k] - a[2][k]) / got for k in pids},
        "box_cpu_pct_steady": 100 * (b1 - b0) / max(t1 - t0, 1e-9),
        "steady_window_s": wall,
    }


# ---- end to end at a fixed rate ---------------------------------------------------------------


def run_rate(
    wrk: str, target: Target, receiver: Receiver, rate: float, args, catch_up: float = 60
) -> dict:
    noise = quiet_check({**target.pids(), "receiver": receiver.pid})
    start = target.outbox.backlog()
    n0 = receiver.count()
    series: list[tuple[float, int]] = []
    t_start = time.monotonic()

    def tick() -> None:
        series.append((time.monotonic() - t_start, target.outbox.backlog()["due"]))

    window = CpuWindow({**target.pids(), "receiver": receiver.pid})
    cmd = wrk_cmd(wrk, target, conns=args.rate_conns, duration=args.duration, rate=rate, limit=0)
    sqlite = target.db_url.startswith("sqlite")
    probe = FsyncProbe(target.workdir) if sqlite else contextlib.nullcontext()
    with probe:  # every event waits for an fsync on SQLite: sample the disk's own
        out, rusage = run_child(cmd, args.duration + 60, tick)
    cpu = window.stop({"wrk": rusage.ru_utime + rusage.ru_stime})
    end = target.outbox.backlog()
    caught_up = wait_caught_up(target, timeout=catch_up)
    w = wrk_summary(out)
    rows = receiver.dump(n0)
    r = e2e_figures(rows, w, cpu)
    r.update(noise)
    r.update(
        {
            "offered_per_s": rate,
            "conns": args.rate_conns,
            "backlog_start": start,
            "backlog_end": end,
            "backlog_max": max((v for _, v in series), default=end["due"]),
            "backlog_series": series,
            "catch_up_s": caught_up,
            "non2xx": non2xx(w),
            "wrk": w,
        }
    )
    if sqlite:
        r["disk"] = probe.figures()
    r["backlog_growth"] = end["due"] - start["due"]
    r["backlog_ok"] = r["backlog_growth"] <= max(50, 0.05 * rate)
    print(
        f"{target.name:8} @{rate:,.0f}/s  accepted {r['accepted_per_s']:,.0f}/s"
        f"  delivered {r['delivered_per_s']:,.0f}/s  e2e p50 {r['e2e_p50_ms']:.1f}"
        f" p99 {r['e2e_p99_ms']:.1f} ms  ingress p99 {r['ingress_p99_ms']:.1f} ms"
        f"  backlog {start['due']} -> {end['due']} (max {r['backlog_max']})"
        f"  CPU {_cpu_text(cpu)}  non-2xx {r['non2xx'] or 0}"
        + (f"  {describe(r['disk'])}" if "disk" in r else "")
        + noisy_note(r),
        flush=True,
    )
    return r


def _cpu_text(cpu: dict) -> str:
    parts = [f"{n} {v:.0f}%" for n, v in cpu["cpu_pct"].items()]
    return ", ".join(parts) + f", box {cpu['box_cpu_pct']:.0f}%"


def wait_caught_up(target: Target, timeout: float) -> float | None:
    """Seconds until nothing is pending, retrying or sending any more (None: timed out)."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if _outstanding(target) == 0:
            return time.monotonic() - t0
        time.sleep(0.1)
    return None


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, max(0, math.ceil(q / 100 * len(values)) - 1))]


def e2e_figures(rows: list[list], w: dict, cpu: dict) -> dict:
    secs = w["duration_us"] / 1e6
    timed = [r for r in rows if r[2] is not None]
    e2e = [(r[0] - r[2]) * 1000 for r in timed]
    to_record = [(r[3] - r[2]) * 1000 for r in timed if r[3] is not None]
    to_receive = [(r[0] - r[3]) * 1000 for r in timed if r[3] is not None]
    sent = [r[2] for r in timed]
    lo, hi = (min(sent), max(sent)) if sent else (0.0, 0.0)
    in_window = sum(1 for r in rows if lo <= r[0] <= hi)
    keys = Counter(r[1] for r in rows)
    delivered = len(rows)
    server_cpu = sum(v for k, v in cpu["cpu_s"].items() if k in ("server", "worker"))
    return {
        "accepted_per_s": w["s2xx"] / secs,
        "accepted": w["s2xx"],
        "delivered": delivered,
        "delivered_per_s": in_window / max(hi - lo, 1e-9),
        "e2e_p50_ms": pct(e2e, 50),
        "e2e_p90_ms": pct(e2e, 90),
        "e2e_p99_ms": pct(e2e, 99),
        "e2e_max_ms": max(e2e, default=float("nan")),
        "sent_to_recorded_p50_ms": pct(to_record, 50),
        "sent_to_recorded_p99_ms": pct(to_record, 99),
        "recorded_to_received_p50_ms": pct(to_receive, 50),
        "recorded_to_received_p99_ms": pct(to_receive, 99),
        "ingress_p50_ms": w["p50_us"] / 1000,
        "ingress_p99_ms": w["p99_us"] / 1000,
        "duplicate_keys": sum(c - 1 for c in keys.values() if c > 1),
        "postbackd_cpu_us_per_event": 1e6 * server_cpu / max(w["s2xx"], 1),
        "cpu": cpu,
    }


# ---- profile (optional) -----------------------------------------------------------------------

UNITS = (
    "claim_due",
    "record_finishes",
    "finish_attempts",
    "record_result",
    "_run_unit",
    "_run_alone",
    "_run_batch",
    "deliver",
    "send",
    "build",
)


def profile_drain(target: Target, receiver: Receiver, db_copy: Path) -> dict:
    """Drain a copy of the preloaded SQLite file under bench/profile_server.py (cProfile per
    thread) and time the dispatcher's units from the profile."""
    from bench import profile_server

    prof_dir = target.workdir / "prof"
    db_dir = db_copy
    src_db = Path(target.db_url.removeprefix("sqlite:///"))
    original = target.db_url
    target.db_url = f"sqlite:///{db_dir / src_db.name}"
    launcher = [sys.executable, str(REPO / "bench" / "profile_server.py")]
    env = {"PB_PROFILE_DIR": str(prof_dir)}
    outbox = target.outbox
    target.outbox = Outbox(target.db_url)
    try:
        r = run_drain(
            target,
            receiver,
            lambda: target.start_server(worker=True, launcher=launcher, env=env),
            "profiled",
        )
    finally:
        target.stop_server()
        target.outbox.close()
        target.outbox, target.db_url = outbox, original
    summary = profile_server.summarize(prof_dir)
    units = unit_times(prof_dir, r["received"])
    print(f"\nprofiled drain (cProfile on, rates are slowed): {r['deliveries_per_s']:,.0f}/s")
    for key, s in summary.items():
        print(f"\n== {key} thread(s): {s['threads']}, profiled busy {s['busy_s']:.1f}s ==")
        print("\n".join(s["top_tottime"].splitlines()[:14]))
    print("\nunits (cumulative, per call; per delivery = total / deliveries):")
    for u in units:
        print(
            f"  {u['group']:7} {u['function']:16} calls {u['calls']:7,}  {u['us_per_call']:8.0f} us/call"
            f"  {u['us_per_delivery']:7.0f} us/delivery"
        )
    return {"run": r, "threads": summary, "units": units}


def unit_times(prof_dir: Path, deliveries: int) -> list[dict]:
    import pstats

    out = []
    for group, pattern in (("main", "main.prof"), ("writer", "*writer*.prof")):
        files = sorted(prof_dir.glob(pattern))
        if not files:
            continue
        stats = pstats.Stats(*map(str, files))
        for (file, _line, func), (_cc, nc, _tt, ct, _callers) in stats.stats.items():
            if func in UNITS and "postbackd" in file and nc:
                out.append(
                    {
                        "group": group,
                        "function": func,
                        "file": file.split("postbackd/", 1)[-1],
                        "calls": nc,
                        "us_per_call": 1e6 * ct / nc,
                        "us_per_delivery": 1e6 * ct / max(deliveries, 1),
                    }
                )
    return sorted(out, key=lambda u: (u["group"], -u["us_per_delivery"]))


def copy_sqlite(db_url: str, dest: Path) -> None:
    src = Path(db_url.removeprefix("sqlite:///"))
    dest.mkdir(parents=True, exist_ok=True)
    for suffix in ("", "-wal", "-shm"):
        if (src.parent / (src.name + suffix)).exists():
            shutil.copy2(src.parent / (src.name + suffix), dest / (src.name + suffix))


# ---- the plan -------------------------------------------------------------------------------


def bench_target(name: str, db_url: str, wrk: str, receiver: Receiver, args, stack, first) -> dict:
    """Setup, preload, drain, fixed rates (and the profile) for one database; the first
    one also runs the ceiling before its drain, with the request it is about to send."""
    print(f"\n== {name}: setting up ({args.leads:,} leads) ==", flush=True)
    target = Target(name, db_url, args.workdir / name, receiver, args)
    stack.callback(target.stop)
    result: dict = {"db": name, "postback": target.postback}
    result["preload"] = preload(wrk, target, args.backlog)
    result["sample_request"] = target.outbox.sample_request()
    if args.profile and name == "sqlite":
        target.stop_server()  # a consistent copy of the pre-loaded file for the profiled drain
        copy_sqlite(db_url, args.workdir / name / "profile-db")
        target.start_server(worker=False)
    if first:
        sample = result["sample_request"]
        result["ceiling_before"] = ceiling_now(receiver, sample, args, target.pids())
    if name == "sqlite":
        result["drain"] = run_drain(
            target, receiver, lambda: target.start_server(worker=True), "serve (in-process worker)"
        )
    else:
        result["drain"] = run_drain(
            target, receiver, target.start_worker, "serve --no-worker + postbackd worker"
        )
    result["rates"] = [run_rate(wrk, target, receiver, rate, args) for rate in args.rates]
    result["states_after"] = target.outbox.by_state()
    target.stop()
    if args.profile and name == "sqlite":
        result["profile"] = profile_drain(target, receiver, args.workdir / name / "profile-db")
    return result


def ceiling_now(receiver: Receiver, sample: dict, args, idle=None) -> dict:
    spec = args.workdir / "ceiling-spec.json"
    spec.write_text(json.dumps(sample))
    return run_ceiling(receiver, spec, args.ceiling_duration, idle)


# ---- report ---------------------------------------------------------------------------------


def _n(v: float) -> str:
    return f"{v:,.0f}"


def _verdict(ok: bool, bad: str) -> str:
    return "ok" if ok else bad


def table(report: dict) -> list[tuple[str, str, str, str, str]]:
    ceil = report["ceiling"]
    c = ceil["req_per_s"]
    rows = [
        (
            f"ceiling: bare aiohttp client c{CEILING_CONCURRENCY} -> receiver",
            f"{_n(c)} req/s",
            "-",
            "-",
            f"runs {', '.join(_n(x) for x in ceil['runs'])}; client"
            f" {ceil['client_cpu_us_per_req']:.0f} us/req",
        )
    ]
    for t in report["targets"]:
        rows += _target_rows(t, ceil)
    return rows


def _target_rows(t: dict, ceil: dict) -> list[tuple[str, str, str, str, str]]:
    name, d, c = t["db"], t["drain"], ceil["req_per_s"]
    ratio = d["deliveries_per_s"] / c
    cpu = sum(d["cpu_us_per_delivery"].values())
    rows = [
        (
            f"{name} outbox drain, {t['drain']['received']:,} deliveries",
            f"{_n(d['deliveries_per_s'])}/s (steady {_n(d['steady_per_s'])}/s)",
            f"{_n(c)}/s",
            f"{ratio:.0%}",
            f"target >= {TARGET_DRAIN_RATIO:.0%}: "
            + _verdict(ratio >= TARGET_DRAIN_RATIO, "BELOW TARGET")
            + (" NOISY" if d["noisy"] else ""),
        ),
        (
            f"{name} drain CPU per delivery ({'+'.join(d['cpu_us_per_delivery'])})",
            f"{_n(cpu)} us",
            f"{_n(ceil['client_cpu_us_per_req'])} us",
            f"{cpu / ceil['client_cpu_us_per_req']:.1f}x",
            "",
        ),
    ]
    for r in t["rates"]:
        rate = r["offered_per_s"]
        tag = f"{name} @{_n(rate)}/s"
        noisy = " NOISY" if r["noisy"] else ""
        p99_verdict = (
            f"target p99 < {TARGET_P99_MS:g} ms: "
            + _verdict(r["e2e_p99_ms"] < TARGET_P99_MS, "ABOVE TARGET")
            if rate == TARGET_P99_RATE
            else f"(p99 target is for {_n(TARGET_P99_RATE)}/s)"
        )
        rows += [
            (
                f"{tag} accepted / delivered",
                f"{_n(r['accepted_per_s'])} / {_n(r['delivered_per_s'])}/s",
                f"{_n(rate)}/s offered",
                f"{r['accepted_per_s'] / rate:.0%} / {r['delivered_per_s'] / rate:.0%}",
                f"non-2xx {json.dumps(r['non2xx']) if r['non2xx'] else 0}{noisy}",
            ),
            (
                f"{tag} e2e p50 / p99 (event sent -> received)",
                f"{r['e2e_p50_ms']:.1f} / {r['e2e_p99_ms']:.1f} ms",
                f"ingress {r['ingress_p50_ms']:.1f} / {r['ingress_p99_ms']:.1f} ms",
                f"{r['e2e_p99_ms'] / TARGET_P99_MS:.1f}x target",
                p99_verdict + noisy,
            ),
            (
                f"{tag} backlog pending+retrying start -> end",
                f"{r['backlog_start']['due']:,} -> {r['backlog_end']['due']:,}"
                f" (max {r['backlog_max']:,})",
                "-",
                f"+{r['backlog_growth']:,}",
                "no growth: " + _verdict(r["backlog_ok"], "GROWING") + noisy,
            ),
            (
                f"{tag} postbackd CPU per event (ingest + delivery)",
                f"{_n(r['postbackd_cpu_us_per_event'])} us",
                f"{_n(ceil['client_cpu_us_per_req'])} us (bare send)",
                f"{r['postbackd_cpu_us_per_event'] / ceil['client_cpu_us_per_req']:.1f}x",
                _cpu_text(r["cpu"]),
            ),
        ]
        if r.get("disk", {}).get("fsyncs"):
            latency, slow = disk.cells(r["disk"])
            rows.append((f"{tag} the disk's own fsync p50 / p99 / max", latency, "-", "-", slow))
    return rows


def print_table(rows: list[tuple[str, ...]]) -> None:
    header = ("figure", "value", "ceiling", "ratio", "target / note")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for r in [header, tuple("-" * w for w in widths), *rows]:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())


# ---- main -----------------------------------------------------------------------------------


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--duration", type=float, default=10, help="seconds per fixed-rate run")
    p.add_argument("--ceiling-duration", type=float, default=10, help="seconds per ceiling run")
    p.add_argument(
        "--rates",
        type=lambda s: [float(x) for x in s.split(",") if x],
        default=[1000.0, 2000.0],
        help="offered events/s, comma-separated (default 1000,2000)",
    )
    p.add_argument("--rate-conns", type=int, default=64, help="wrk connections of the rate runs")
    p.add_argument("--backlog", type=int, default=20000, help="deliveries to pre-load and drain")
    p.add_argument("--leads", type=int, default=2000, help="leads the events are posted for")
    p.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432/test")
    p.add_argument("--no-pg", action="store_true", help="skip PostgreSQL")
    p.add_argument("--no-sqlite", action="store_true", help="skip SQLite")
    p.add_argument("--sqlite-synchronous", choices=["FULL", "NORMAL"], help="default: FULL")
    p.add_argument("--profile", action="store_true", help="also drain a copy under cProfile")
    p.add_argument("--per-target", type=int, help="POSTBACKD_PER_TARGET_CONCURRENCY (default 16)")
    p.add_argument(
        "--writer-process", choices=["auto", "on", "off"], help="POSTBACKD_WRITER_PROCESS"
    )
    # internal: the child processes
    p.add_argument("--role", choices=["receiver", "ceiling-client"], help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, help=argparse.SUPPRESS)
    p.add_argument("--delay-ms", type=float, default=0, help=argparse.SUPPRESS)
    p.add_argument("--url", help=argparse.SUPPRESS)
    p.add_argument("--spec", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def child_main(args) -> int:
    import uvloop

    if args.role == "receiver":
        uvloop.run(_receiver_main(args.port, args.delay_ms / 1000))
        return 0
    result = uvloop.run(_ceiling_main(args.url, args.duration, CEILING_CONCURRENCY, args.spec))
    print("CEILJSON " + json.dumps(result), flush=True)
    return 0


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.role:
        return child_main(args)
    wrk = ensure_wrk()
    started = time.strftime("%Y%m%d-%H%M%S")
    box = quiet_check()
    print(
        f"{os.cpu_count()} CPUs, load avg {box['loadavg'][0]:.2f},"
        f" {box['busy_cores_before']:.2f} CPUs busy over 1 s before starting" + noisy_note(box),
        flush=True,
    )
    report: dict = {"started": started, "args": _jsonable_args(args), "box_before": box}
    report["code_before"] = code_fingerprint()
    report["targets"] = []
    with contextlib.ExitStack() as stack:
        args.workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="pb-disp-")))
        receiver = Receiver(args.workdir)
        stack.callback(receiver.stop)
        dbs = (
            []
            if args.no_sqlite
            else [("sqlite", f"sqlite:///{args.workdir / 'sqlite' / 'postbackd.db'}")]
        )
        if not args.no_pg and (pg_url := stack.enter_context(pg_scratch(args.pg_url))):
            dbs.append(("postgres", pg_url))
        for i, (name, url) in enumerate(dbs):
            t = bench_target(name, url, wrk, receiver, args, stack, first=i == 0)
            report["targets"].append(t)
            if i == 0:  # the ceiling again, between the first database and the next
                spec = {k: t["sample_request"][k] for k in ("body", "headers")}
                report["ceiling"] = ceiling_summary(
                    [t["ceiling_before"], ceiling_now(receiver, spec, args)]
                )
    if not report["targets"]:
        print("nothing measured (no database)", file=sys.stderr)
        return 2
    report["machine"] = _machine_info()
    report["code_after"] = code_fingerprint()
    rows = table(report)
    print()
    phases = _phases(report)
    if noisy := [p for p, r in phases if r.get("noisy")]:
        print(f"WARNING: NOISY - {len(noisy)} of {len(phases)} phases started with other work on")
        print(f"the box ({', '.join(noisy)}); discard those figures.")
    print(f"postback body {report['ceiling']['body_bytes']} bytes; {_machine_line(report)}")
    code = report["code_before"]
    print(
        f"postbackd sources {code['sha256']} (newest: {code['newest_file']} {code['newest_mtime']})"
    )
    if report["code_after"] != code:
        print("WARNING: postbackd sources changed during the run; the phases ran different code")
    print_table(rows)
    report["table"] = [
        dict(zip(("figure", "value", "ceiling", "ratio", "verdict"), r, strict=True)) for r in rows
    ]
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"dispatch-{started}.json"
    path.write_text(json.dumps(report, indent=2, default=str))
    print(f"\nresults: {path.relative_to(REPO)}")
    return 0


def ceiling_summary(runs: list[dict]) -> dict:
    return {
        "runs": [r["req_per_s"] for r in runs],
        "req_per_s": statistics.mean(r["req_per_s"] for r in runs),
        "client_cpu_us_per_req": statistics.mean(r["client_cpu_us_per_req"] for r in runs),
        "receiver_cpu_us_per_req": statistics.mean(r["receiver_cpu_us_per_req"] for r in runs),
        "body_bytes": runs[0]["body_bytes"],
        "detail": runs,
    }


def _phases(report: dict) -> list[tuple[str, dict]]:
    out = [("ceiling", r) for r in report["ceiling"]["detail"]]
    for t in report["targets"]:
        out.append((f"{t['db']} drain", t["drain"]))
        out += [(f"{t['db']} @{_n(r['offered_per_s'])}/s", r) for r in t["rates"]]
    return out


def _machine_line(report: dict) -> str:
    m = report["machine"]
    return f"{m['cpus']} CPUs, load avg now {m['loadavg'][0]:.2f}, python {m['python']}"


def code_fingerprint() -> dict:
    """Which postbackd code was measured: a hash of its sources and the newest change."""
    files = sorted((REPO / "postbackd").rglob("*.py"))
    digest = hashlib.sha256()
    for f in files:
        digest.update(f.relative_to(REPO).as_posix().encode() + b"\0" + f.read_bytes())
    newest = max(files, key=lambda f: f.stat().st_mtime)
    return {
        "sha256": digest.hexdigest()[:16],
        "newest_file": newest.relative_to(REPO).as_posix(),
        "newest_mtime": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(newest.stat().st_mtime)),
    }


def _jsonable_args(args) -> dict:
    return {k: v for k, v in vars(args).items() if k not in ("role", "port", "url", "spec")}


if __name__ == "__main__":
    sys.exit(main())
