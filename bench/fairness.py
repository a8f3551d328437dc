"""Fairness benchmark (on demand; not pytest): a fast partner's end-to-end latency while a
slow partner's backlog drains, next to the same offered rate with no backlog, same run.

    .venv/bin/python bench/fairness.py [--slow-backlog 3000] [--slow-ms 200]
                                       [--rate 200] [--duration 10] [--db postgres]

Two receivers (bench/dispatch.py's, each its own process and port, so two targets):
`fast` answers at once, `slow` after --slow-ms. One SQLite server (API + worker), or with
`--db postgres` `serve --no-worker` plus one `postbackd worker` on a scratch database;
one campaign, one postback per receiver, each fired by its own event:
  alone   fast events at --rate for --duration: e2e p50/p99 (event sent -> postback
          received), the reference;
  behind  --slow-backlog events for the slow partner posted with the worker off, then the
          worker started and at once the same fast rate: e2e p50/p99, and the slow
          partner's deliveries/s meanwhile.
With oldest-first claims every fast delivery would wait for the slow backlog ahead of it:
backlog / (per-target slots / answer time), printed as "oldest-first would wait".
Results go to bench/results/fairness-<timestamp>.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.dispatch import (  # noqa: E402
    FIELDS,
    RESULTS,
    Receiver,
    Target,
    http_json,
    preload,
    run_rate,
)
from bench.ingest import ensure_wrk, pg_scratch  # noqa: E402

SLOW_EVENT = "bench_slow"
PER_TARGET = 16  # the server's default POSTBACKD_PER_TARGET_CONCURRENCY


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--slow-backlog", type=int, default=3000, help="slow partner's deliveries")
    p.add_argument("--slow-ms", type=float, default=200, help="the slow partner's answer time")
    p.add_argument("--rate", type=float, default=200, help="fast events/s offered")
    p.add_argument("--duration", type=float, default=10, help="seconds per fixed-rate run")
    p.add_argument("--rate-conns", type=int, default=16, help="wrk connections")
    p.add_argument("--leads", type=int, default=500, help="leads the events are posted for")
    p.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    p.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432/test")
    args = p.parse_args(argv)
    # what bench/dispatch.py's Target reads of its arguments
    args.writer_process = args.sqlite_synchronous = args.per_target = None
    return args


def add_slow_partner(target: Target, slow: Receiver) -> None:
    base, key = target.server.url, target.key
    event = {"event_id": SLOW_EVENT, "type": "tracking", "allow_duplicates": True}
    http_json("POST", f"{base}/api/v1/campaigns/{target.campaign_id}/events", event, key)
    postback = {
        "name": "slow partner",
        "trigger": "event",
        "trigger_events": [SLOW_EVENT],
        "url": f"{slow.url}/slow",
        "fields": FIELDS,
    }
    http_json("POST", f"{base}/api/v1/postbacks", postback, key)


def start_sending(target: Target) -> None:
    """The server's own worker (SQLite) or a `postbackd worker` process (PostgreSQL)."""
    if target.db_url.startswith("sqlite"):
        target.start_server(worker=True)
    else:
        target.start_worker()


def stop_sending(target: Target) -> None:
    if target.db_url.startswith("sqlite"):
        target.start_server(worker=False)
    elif target.worker is not None:
        target.worker.stop()
        target.worker = None


def main(argv=None) -> int:
    args = parse_args(argv)
    wrk = ensure_wrk()
    report: dict = {"started": time.strftime("%Y%m%d-%H%M%S"), "args": vars(args).copy()}
    with contextlib.ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="pb-fair-")))
        fast = Receiver(workdir)
        stack.callback(fast.stop)
        slow = Receiver(workdir, delay_ms=args.slow_ms)
        stack.callback(slow.stop)
        if args.db == "sqlite":
            url = f"sqlite:///{workdir / 'sqlite' / 'postbackd.db'}"
        elif not (url := stack.enter_context(pg_scratch(args.pg_url))):
            print(f"PostgreSQL unreachable at {args.pg_url}", file=sys.stderr)
            return 2
        target = Target(args.db, url, workdir / args.db, fast, args)
        stack.callback(target.stop)
        add_slow_partner(target, slow)

        print("== alone: the fast partner, no backlog ==", flush=True)
        start_sending(target)
        report["alone"] = run_rate(wrk, target, fast, args.rate, args)

        print(f"== behind: {args.slow_backlog:,} deliveries for the slow partner first ==")
        stop_sending(target)
        report["preload"] = preload(wrk, target, args.slow_backlog, event=SLOW_EVENT)
        slow_before, started = slow.count(), time.monotonic()
        start_sending(target)
        report["behind"] = run_rate(wrk, target, fast, args.rate, args, catch_up=0)
        slow_sent = slow.count() - slow_before
        report["slow_per_s"] = slow_sent / (time.monotonic() - started)
        report["slow_left"] = args.slow_backlog - slow_sent
    expected_rate = PER_TARGET / (args.slow_ms / 1000)
    report["oldest_first_wait_s"] = report["preload"]["pending_added"] / expected_rate
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"fairness-{report['started']}.json"
    out.write_text(json.dumps(report, indent=1, default=str))
    alone, behind = report["alone"], report["behind"]
    print()
    print(
        f"fast partner @{args.rate:,.0f}/s alone:  e2e p50 {alone['e2e_p50_ms']:.1f}"
        f" / p99 {alone['e2e_p99_ms']:.1f} ms, {alone['delivered']:,} delivered"
    )
    if behind["delivered"]:
        print(
            f"fast partner @{args.rate:,.0f}/s behind: e2e p50 {behind['e2e_p50_ms']:.1f}"
            f" / p99 {behind['e2e_p99_ms']:.1f} ms, {behind['delivered']:,} delivered"
            f" (p99 {behind['e2e_p99_ms'] / alone['e2e_p99_ms']:.1f}x alone)"
        )
    else:
        print(f"fast partner @{args.rate:,.0f}/s behind: none delivered during the run")
    print(
        f"slow partner ({args.slow_ms:.0f} ms per answer, {PER_TARGET} at a time):"
        f" {report['slow_per_s']:,.0f}/s meanwhile (at most {expected_rate:,.0f}/s),"
        f" {report['slow_left']:,} of {args.slow_backlog:,} still queued at the end;"
        f" oldest-first claims would have held each fast delivery"
        f" ~{report['oldest_first_wait_s']:,.0f} s"
    )
    print(f"\nresults: {out.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
