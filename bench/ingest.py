"""Ingest benchmark with a same-run ceiling (on demand; not part of pytest).

    .venv/bin/python bench/ingest.py [--repeat N] [--duration S] [--no-pg] [--profile]

Runs, interleaved (A B A B …) and repeated `--repeat` times, medians quoted:
  ceiling   a bare ASGI app (bench/ceiling_app.py) under uvicorn + uvloop + httptools, one
            worker process: `wrk -t1 -c64` with the same ~335-byte JSON POSTs;
  sqlite    the real `postbackd serve --no-worker` on a SQLite file (synchronous=FULL by
            default): global event postbacks for random existing leads (a conversion and a
            tracking event, both allowing duplicates) at saturation (-c64) and at a fixed
            1,000 events/s offered (-c16, wrk Lua pacing); one JSON postback fires on
            both events, so every accepted event commits its outbox row too (left
            pending: no worker);
  postgres  the same on a scratch database next to --pg-url, if PostgreSQL is reachable.
Accepted = answered 200 (counted by wrk's response() hook, cross-checked against the
conversions table). CPU of the server, wrk and the whole box come from /proc.
Results go to bench/results/ingest-<timestamp>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench import disk  # noqa: E402
from bench.disk import FsyncProbe, describe  # noqa: E402
from tests.system.proc import (  # noqa: E402
    HOST,
    Server,
    create_api_key,
    die_with_parent,
    free_port,
    server_env,
)

LUA = REPO / "bench" / "wrk" / "postback.lua"
RESULTS = REPO / "bench" / "results"
TICK = os.sysconf("SC_CLK_TCK")
WRK_INSTALL = ["apt-get", "install", "-y", "wrk"]
TARGET_RATIO = 0.20
TARGET_P99_MS = 20.0
# The postback every event fires (`dispatch.py` sends it to its receiver): `t` carries
# the event's send time (sub1), `ct` the time the server recorded the conversion; the rest
# pads the body to ~300 bytes. Here it only makes each event commit its outbox row.
POSTBACK_FIELDS = {
    "click": "{transaction_id}",
    "t": "{sub1}",
    "ct": "{conversion_time}",
    "event": "{event_id}",
    "conversion": "{conversion_id}",
    "lead": "{lead_id}",
    "delivery": "{delivery_id}",
    "pid": "{pid}",
    "utm_source": "{utm_source}",
    "utm_campaign": "{utm_campaign}",
    "status": "{status}",
}
NOISE_CORES = 0.3  # busy CPUs on the idle box before a run above which it is flagged


# ---- tools and /proc ------------------------------------------------------------------------


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        print("wrk is missing; running:", " ".join(WRK_INSTALL), flush=True)
        subprocess.run(WRK_INSTALL, check=False)
        found = shutil.which("wrk")
        if found:
            return found
    print(
        "wrk is not installed. Install it with:\n  sudo " + " ".join(WRK_INSTALL), file=sys.stderr
    )
    sys.exit(2)


def proc_cpu(pid: int) -> float:
    """utime + stime of a live process (all its threads) and of its live child processes
    (the SQLite server's writer process), seconds."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    own = (int(fields[11]) + int(fields[12])) / TICK
    return own + sum(c for c in map(proc_cpu, _children(pid)) if c == c)  # gone: nan


def _children(pid: int) -> list[int]:
    out: list[int] = []
    with contextlib.suppress(OSError):
        for tid in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError):
                out += [
                    int(c) for c in Path(f"/proc/{pid}/task/{tid}/children").read_text().split()
                ]
    return out


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds of the main thread (the event loop) and of all other threads together."""
    out = {"main": 0.0, "other_threads": 0.0}
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tasks:
        key = "main" if int(tid) == pid else "other_threads"
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = Path(f"/proc/{pid}/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
            out[key] += (int(fields[11]) + int(fields[12])) / TICK
    return out


def box_cpu() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    total = sum(values[:8])
    idle = values[3] + values[4]
    return (total - idle) / TICK, total / TICK


def busy_cores(seconds: float = 0.5) -> float:
    """How many CPUs the box kept busy over a short idle window (other work = noise)."""
    b0, _ = box_cpu()
    time.sleep(seconds)
    b1, _ = box_cpu()
    return (b1 - b0) / seconds


def http_json(method: str, url: str, body: dict | None = None, key: str | None = None) -> dict:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("Content-Type", "application/json")
    if key:
        req.add_header("Authorization", f"Bearer {key}")
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


# ---- servers --------------------------------------------------------------------------------


class Ceiling:
    """bench/ceiling_app.py under uvicorn, configured like `postbackd serve`."""

    def __init__(self, workdir: Path):
        self.port = free_port()
        self.url = f"http://{HOST}:{self.port}"
        cmd = [sys.executable, "-m", "uvicorn", "bench.ceiling_app:app", "--host", HOST]
        cmd += ["--port", str(self.port), "--loop", "uvloop", "--http", "httptools"]
        cmd += ["--workers", "1", "--no-access-log", "--log-level", "warning"]
        self.log = open(workdir / "ceiling.log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            cmd,
            cwd=REPO,
            env=server_env(),
            stdout=self.log,
            stderr=subprocess.STDOUT,
            preexec_fn=die_with_parent,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and self.proc.poll() is None:
            with contextlib.suppress(OSError, urllib.error.URLError):
                urllib.request.urlopen(self.url, timeout=1).close()
                return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError("ceiling server did not start; see ceiling.log")

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.log.close()


class Candidate:
    """The real server with an org, a campaign, two duplicate-allowing events and leads."""

    def __init__(self, name: str, db_url: str, workdir: Path, leads: int, env: dict, launcher=None):
        self.name = name
        self.db_url = db_url
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.org_id, self.key = create_api_key(db_url, f"bench-{name}", workdir)
        self.server = Server(db_url, workdir, env=env, launcher=launcher).start()
        try:
            tids = self._setup(leads)
        except BaseException:
            self.server.kill()
            raise
        self.tids_file = workdir / "tids.txt"
        self.tids_file.write_text("\n".join(tids) + "\n")
        self.url = f"{self.server.url}/api/event/global/{self.org_id}"

    def _setup(self, leads: int) -> list[str]:
        base = self.server.url
        campaign = http_json("POST", f"{base}/api/v1/campaigns", {"name": "Bench"}, self.key)
        for event in (
            {"event_id": "sale", "type": "conversion", "allow_duplicates": True},
            {"event_id": "page_view", "type": "tracking", "allow_duplicates": True},
        ):
            http_json("POST", f"{base}/api/v1/campaigns/{campaign['id']}/events", event, self.key)
        # Every accepted event also writes its outbox row in the same transaction (the
        # issue's "commit, with the outbox row"); `serve --no-worker` leaves it pending.
        postback = {
            "name": "bench outbox",
            "trigger": "event",
            "trigger_events": ["sale", "page_view"],
            "url": "http://127.0.0.1:9/postback",
            "fields": POSTBACK_FIELDS,
        }
        http_json("POST", f"{base}/api/v1/postbacks", postback, self.key)
        return asyncio.run(_create_leads(base, campaign["id"], leads))

    @property
    def pid(self) -> int:
        return self.server.pid

    def conversions(self) -> tuple[int, int]:
        """Rows in conversions and in the outbox (deliveries)."""
        import sqlalchemy as sa

        from postbackd.store.engine import make_engine

        engine = make_engine(self.db_url, pool_size=1)
        try:
            with engine.connect() as conn:
                return tuple(
                    conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar()
                    for table in ("conversions", "deliveries")
                )
        finally:
            engine.dispose()

    def stop(self) -> None:
        self.server.stop()


async def _create_leads(base: str, cid: str, n: int) -> list[str]:
    import aiohttp

    sem = asyncio.Semaphore(32)

    async def one(session, i):
        async with sem:
            body = {"cid": cid, "email": f"bench{i}@example.com", "state": "NY"}
            async with session.post(f"{base}/api/leads", json=body) as r:
                assert r.status == 201, await r.text()
                return (await r.json())["data"]["transaction_id"]

    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        return await asyncio.gather(*(one(session, i) for i in range(n)))


@contextlib.contextmanager
def pg_scratch(admin_url: str):
    """A database created next to `admin_url` and dropped afterwards; None if unreachable."""
    try:
        import psycopg

        admin = psycopg.connect(admin_url, autocommit=True, connect_timeout=3)
    except Exception as exc:  # noqa: BLE001 - any failure means "no PostgreSQL here"
        print(f"PostgreSQL not reachable at {admin_url} ({type(exc).__name__}); skipping it")
        yield None
        return
    name = f"postbackd_bench_{uuid.uuid4().hex[:8]}"
    admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield admin_url.rsplit("/", 1)[0] + f"/{name}"
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


# ---- wrk ------------------------------------------------------------------------------------


def run_wrk(wrk: str, target, *, conns: int, duration: float, rate: float) -> dict:
    """One wrk run against `target` (Ceiling or Candidate) with CPU accounting."""
    duration = max(1, round(duration))  # wrk takes whole seconds
    cmd = [wrk, "-t1", f"-c{conns}", f"-d{duration}s", "--timeout", "5s", "-s", str(LUA)]
    cmd += [target.url, "--", str(target.tids_file), str(rate), "1"]
    before_db = target.conversions() if isinstance(target, Candidate) else None
    noise = busy_cores()
    # At a fixed rate on SQLite every answer waits for an fsync: sample the disk's own.
    sqlite = isinstance(target, Candidate) and target.db_url.startswith("sqlite")
    probe = FsyncProbe(target.workdir) if rate and sqlite else contextlib.nullcontext()
    with tempfile.TemporaryFile() as out, probe:
        th0 = thread_cpu(target.pid)
        s0, (b0, t0), w0 = proc_cpu(target.pid), box_cpu(), time.monotonic()
        proc = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, preexec_fn=die_with_parent
        )
        rusage = _wait_with_rusage(proc, duration + 30)
        s1, (b1, t1), w1 = proc_cpu(target.pid), box_cpu(), time.monotonic()
        th1 = thread_cpu(target.pid)
        out.seek(0)
        text = out.read().decode(errors="replace")
    line = next((x for x in text.splitlines() if x.startswith("WRKJSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no summary:\n{text}")
    w = json.loads(line[len("WRKJSON ") :])
    secs = w["duration_us"] / 1e6
    server_cpu, wrk_cpu = s1 - s0, rusage.ru_utime + rusage.ru_stime
    result = {
        "conns": conns,
        "offered_rate": rate or None,
        "wall_s": w1 - w0,
        "req_per_s": w["requests"] / secs,
        "accepted_per_s": w["s2xx"] / secs,
        "p50_ms": w["p50_us"] / 1000,
        "p90_ms": w["p90_us"] / 1000,
        "p99_ms": w["p99_us"] / 1000,
        "p999_ms": w["p999_us"] / 1000,
        "server_cpu_s": server_cpu,
        "server_cpu_pct": 100 * server_cpu / secs,
        "server_cpu_us_per_req": 1e6 * server_cpu / max(w["requests"], 1),
        "server_thread_cpu_us_per_req": {
            k: 1e6 * (th1[k] - th0[k]) / max(w["requests"], 1) for k in th0
        },
        "wrk_cpu_s": wrk_cpu,
        "box_busy_s": b1 - b0,
        "box_cpu_pct": 100 * (b1 - b0) / (t1 - t0) if t1 > t0 else None,
        "rest_of_box_cpu_s": (b1 - b0) - server_cpu - wrk_cpu,
        "busy_cores_before": noise,
        "noisy": noise > NOISE_CORES,
        "wrk": w,
    }
    if isinstance(probe, FsyncProbe):
        result["disk"] = probe.figures()
    if before_db is not None:
        after_db = target.conversions()
        result["db_conversions_added"] = after_db[0] - before_db[0]
        result["db_outbox_rows_added"] = after_db[1] - before_db[1]
    return result


def _wait_with_rusage(proc: subprocess.Popen, timeout: float):
    deadline = time.monotonic() + timeout
    while True:
        pid, status, rusage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            return rusage
        if time.monotonic() > deadline:
            proc.kill()
            _pid, status, rusage = os.wait4(proc.pid, 0)
            proc.returncode = os.waitstatus_to_exitcode(status)
            raise RuntimeError("wrk did not finish in time")
        time.sleep(0.05)


# ---- the plan and the report -----------------------------------------------------------------


def plan(targets: dict, rate: float) -> list[tuple[str, str, dict]]:
    """(run name, target name, wrk kwargs): saturation first, then fixed rate, A B A B."""
    runs = []
    for name in targets:
        runs.append((f"{name}/saturation", name, {"conns": 64, "rate": 0}))
    for name in targets:
        runs.append((f"{name}/rate", name, {"conns": 16, "rate": rate}))
    return runs


def medians(samples: list[dict]) -> dict:
    """Median of every number, and of every number in nested dicts (one level)."""
    out: dict = {}
    for k, v in samples[0].items():
        if isinstance(v, bool) or v is None:
            continue
        if isinstance(v, int | float):
            out[k] = statistics.median(s[k] for s in samples)
        elif isinstance(v, dict) and k != "wrk":
            out[k] = {
                sub: statistics.median(s[k][sub] for s in samples)
                for sub, x in v.items()
                if isinstance(x, int | float)
            }
    return out


def _n(v: float) -> str:
    return f"{v:,.0f}"


def table(med: dict, rate: float) -> list[tuple[str, str, str, str]]:
    rows = []
    ceil_sat, ceil_rate = med.get("ceiling/saturation"), med.get("ceiling/rate")
    for name in ("sqlite", "postgres"):
        sat, fixed = med.get(f"{name}/saturation"), med.get(f"{name}/rate")
        if not sat:
            continue
        ratio = sat["accepted_per_s"] / ceil_sat["req_per_s"]
        ok = "ok" if ratio >= TARGET_RATIO else "BELOW TARGET"
        rows += [
            (
                f"{name} ingest saturation (accepted/s)",
                f"{_n(sat['accepted_per_s'])}/s",
                f"{_n(ceil_sat['req_per_s'])}/s",
                f"{ratio:.0%} (target >= {TARGET_RATIO:.0%}: {ok})",
            ),
            (
                f"{name} saturation p50 / p99",
                f"{sat['p50_ms']:.1f} / {sat['p99_ms']:.1f} ms",
                f"{ceil_sat['p50_ms']:.1f} / {ceil_sat['p99_ms']:.1f} ms",
                f"{sat['p99_ms'] / ceil_sat['p99_ms']:.1f}x p99",
            ),
            (
                f"{name} server CPU per request (saturation)",
                f"{_n(sat['server_cpu_us_per_req'])} us ({_n(sat['server_cpu_pct'])}% CPU)",
                f"{_n(ceil_sat['server_cpu_us_per_req'])} us",
                f"{sat['server_cpu_us_per_req'] / ceil_sat['server_cpu_us_per_req']:.1f}x",
            ),
        ]
        split = sat.get("server_thread_cpu_us_per_req") or {}
        if split:
            rows.append(
                (
                    f"{name} CPU/request: event loop + other threads",
                    f"{_n(split['main'])} + {_n(split['other_threads'])} us",
                    f"{_n(ceil_sat['server_cpu_us_per_req'])} + 0 us",
                    f"{split['main'] / ceil_sat['server_cpu_us_per_req']:.1f}x loop",
                )
            )
        if fixed:
            ok = "ok" if fixed["p99_ms"] < TARGET_P99_MS else "ABOVE TARGET"
            rows += [
                (
                    f"{name} @{_n(rate)}/s offered: accepted",
                    f"{_n(fixed['accepted_per_s'])}/s",
                    f"{_n(ceil_rate['req_per_s'])}/s",
                    f"{fixed['accepted_per_s'] / ceil_rate['req_per_s']:.0%}",
                ),
                (
                    f"{name} @{_n(rate)}/s p50 / p99",
                    f"{fixed['p50_ms']:.1f} / {fixed['p99_ms']:.1f} ms",
                    f"{ceil_rate['p50_ms']:.1f} / {ceil_rate['p99_ms']:.1f} ms",
                    f"p99 target < {TARGET_P99_MS:g} ms: {ok}",
                ),
            ]
            if fixed.get("disk", {}).get("fsyncs"):
                latency, slow = disk.cells(fixed["disk"])
                rows.append(
                    (
                        f"{name} @{_n(rate)}/s: the disk's own fsync p50 / p99 / max",
                        latency,
                        "",
                        slow,
                    )
                )
    return rows


def print_table(rows: list[tuple[str, ...]]) -> None:
    header = ("figure", "value", "ceiling", "ratio")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(4)]
    for r in [header, tuple("-" * w for w in widths), *rows]:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)))


# ---- main -----------------------------------------------------------------------------------


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--repeat", type=int, default=1, help="rounds of A B A B; medians quoted")
    p.add_argument("--duration", type=int, default=10, help="seconds per wrk run (whole)")
    p.add_argument("--rate", type=float, default=1000, help="offered events/s of the fixed run")
    p.add_argument("--leads", type=int, default=1000, help="existing leads to post events for")
    p.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432/test")
    p.add_argument("--no-pg", action="store_true", help="skip PostgreSQL")
    p.add_argument("--sqlite-synchronous", choices=["FULL", "NORMAL"], help="default: FULL")
    p.add_argument(
        "--writer-process", choices=["auto", "on", "off"], help="POSTBACKD_WRITER_PROCESS"
    )
    p.add_argument("--warmup", type=int, default=2, help="seconds of unrecorded load first")
    p.add_argument(
        "--profile", action="store_true", help="also profile a SQLite saturation run (cProfile)"
    )
    p.add_argument("--only-profile", action="store_true", help="just the profiled run")
    p.add_argument(
        "--keep", action="store_true", help="keep the work dir (server logs, SQLite file)"
    )
    return p.parse_args(argv)


def start_targets(args, workdir: Path, pg_url: str | None, stack: contextlib.ExitStack) -> dict:
    """Start every target; each is stopped by `stack` even if a later one fails to start."""
    targets = {}
    ceiling = targets["ceiling"] = Ceiling(workdir)
    stack.callback(ceiling.stop)
    ceiling.tids_file = workdir / "ceiling-tids.txt"
    ceiling.tids_file.write_text("\n".join(uuid.uuid4().hex[:26] for _ in range(args.leads)))
    sqlite_env = {}
    if args.sqlite_synchronous:
        sqlite_env["POSTBACKD_SQLITE_SYNCHRONOUS"] = args.sqlite_synchronous
    dbs = {"sqlite": f"sqlite:///{workdir / 'sqlite' / 'postbackd.db'}", "postgres": pg_url}
    for name, url in dbs.items():
        if url:
            env = dict(sqlite_env) if name == "sqlite" else {}
            if args.writer_process:
                env["POSTBACKD_WRITER_PROCESS"] = args.writer_process
            targets[name] = Candidate(name, url, workdir / name, args.leads, env)
            stack.callback(targets[name].stop)
    return targets


def main(argv=None) -> int:
    args = parse_args(argv)
    wrk = ensure_wrk()
    if args.only_profile:
        from bench import profile_server

        with tempfile.TemporaryDirectory(prefix="pb-profile-") as tmp:
            profile_server.profile_sqlite(args, Path(tmp), wrk, run_wrk)
        return 0
    started = time.strftime("%Y%m%d-%H%M%S")
    runs: list[dict] = []
    with contextlib.ExitStack() as stack:
        if args.keep:
            workdir = Path(tempfile.mkdtemp(prefix="pb-bench-"))
            print(f"keeping server logs and databases in {workdir}")
        else:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="pb-bench-")))
        pg_url = None if args.no_pg else stack.enter_context(pg_scratch(args.pg_url))
        targets = start_targets(args, workdir, pg_url, stack)
        for name, t in targets.items():
            if args.warmup > 0:
                print(f"warm-up {name} ({args.warmup:g}s)", flush=True)
                run_wrk(wrk, t, conns=16, duration=args.warmup, rate=0)
        for rnd in range(1, args.repeat + 1):
            for run_name, target, kw in plan(targets, args.rate):
                r = run_wrk(wrk, targets[target], duration=args.duration, **kw)
                runs.append({"run": run_name, "round": rnd, **r})
                print(
                    f"[{rnd}/{args.repeat}] {run_name:20} {r['req_per_s']:9,.0f} req/s"
                    f" {r['accepted_per_s']:9,.0f} 2xx/s  p50 {r['p50_ms']:6.2f} ms"
                    f"  p99 {r['p99_ms']:6.2f} ms  server CPU {r['server_cpu_pct']:4.0f}%"
                    f"  box CPU {r['box_cpu_pct']:4.0f}%  non-2xx {_non2xx(r)}"
                    + (
                        f"  db +{r['db_conversions_added']:,} conversions"
                        f" +{r['db_outbox_rows_added']:,} outbox rows"
                        if "db_outbox_rows_added" in r
                        else ""
                    )
                    + (f"  {describe(r['disk'])}" if "disk" in r else "")
                    + (
                        f"  NOISY ({r['busy_cores_before']:.1f} CPUs busy before)"
                        if r["noisy"]
                        else ""
                    ),
                    flush=True,
                )
        profile = None
        if args.profile:
            from bench import profile_server

            profile = profile_server.profile_sqlite(args, workdir / "profile", wrk, run_wrk)
    med = {name: medians([r for r in runs if r["run"] == name]) for name in _names(runs)}
    rows = table(med, args.rate)
    print()
    print(f"medians of {args.repeat} round(s), {args.duration:g}s each, wrk -t1; {_machine()}")
    if noisy := sum(r["noisy"] for r in runs):
        print(f"WARNING: {noisy} of {len(runs)} runs started with other work on the box")
    print_table(rows)
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"ingest-{started}.json"
    report = {
        "started": started,
        "args": vars(args),
        "machine": _machine_info(),
        "runs": runs,
        "medians": med,
        "table": [dict(zip(("figure", "value", "ceiling", "ratio"), r, strict=True)) for r in rows],
        "profile": profile,
    }
    path.write_text(json.dumps(report, indent=2, default=str))
    print(f"\nresults: {path.relative_to(REPO)}")
    return 0


def _non2xx(r: dict) -> str:
    w = r["wrk"]
    parts = {k: w[k] for k in ("s403", "s4xx", "s5xx", "sother") if w[k]}
    errs = {k: w[k] for k in w if k.startswith("err_") and w[k]}
    return json.dumps({**parts, **errs}) if parts or errs else "0"


def _names(runs: list[dict]) -> list[str]:
    return list(dict.fromkeys(r["run"] for r in runs))


def _machine() -> str:
    return f"{os.cpu_count()} CPUs, load avg {os.getloadavg()[0]:.2f}"


def _machine_info() -> dict:
    return {
        "cpus": os.cpu_count(),
        "loadavg": os.getloadavg(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "wrk": shutil.which("wrk"),
    }


if __name__ == "__main__":
    sys.exit(main())
