"""Click (lead entry) benchmark with a same-run ceiling (on demand; not pytest).

    .venv/bin/python bench/clicks.py [--duration S] [--repeat N]

`postbackd serve --no-worker` on a SQLite file (`synchronous=FULL`), one campaign with a
landing URL; `wrk -t1 -c64` GETs `/c/{cid}?pid=organic&sub1=...`: every answer is a 302
sent after the new lead (with its request context) was committed. The ceiling is the bare
ASGI app of `ingest.py` under the same uvicorn setup and the same wrk command, A B A B.
Figures: requests/s (wrk's own count; any non-2xx/3xx answer is reported), p99, and the
ratio to the ceiling.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.ingest import Ceiling, create_api_key, ensure_wrk, http_json  # noqa: E402
from tests.system.proc import Server, server_env  # noqa: E402


def wrk_run(wrk: str, url: str, seconds: int) -> dict:
    out = subprocess.run(
        [wrk, "-t1", "-c64", f"-d{seconds}s", "--latency", url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)\b", out)
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[p99.group(2)]
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    return {
        "req_per_s": rate,
        "p99_ms": float(p99.group(1)) * scale,
        "bad": int(bad.group(1)) if bad else 0,
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--duration", type=int, default=8, help="seconds per wrk run")
    p.add_argument("--repeat", type=int, default=2, help="rounds of ceiling, clicks")
    args = p.parse_args(argv)
    wrk = ensure_wrk()
    with tempfile.TemporaryDirectory(prefix="pb-clicks-") as tmp:
        work = Path(tmp)
        db_url = f"sqlite:///{work / 'clicks.db'}"
        _org, key = create_api_key(db_url, "clicks", work)
        server = Server(db_url, work, env=server_env()).start()
        ceiling = Ceiling(work)
        try:
            landing = {
                "name": "Clicks",
                "landing_url": "https://lp.example.com/?t={transaction_id}",
            }
            cid = http_json("POST", f"{server.url}/api/v1/campaigns", landing, key)["id"]
            click_url = f"{server.url}/c/{cid}?pid=organic&sub1=creative_0042&utm_source=meta"
            runs: dict[str, list[dict]] = {"ceiling": [], "clicks": []}
            wrk_run(wrk, click_url, 1)  # warm-up
            for _ in range(args.repeat):
                for name, url in (("ceiling", ceiling.url + "/"), ("clicks", click_url)):
                    r = wrk_run(wrk, url, args.duration)
                    runs[name].append(r)
                    print(
                        f"{name:8} {r['req_per_s']:9,.0f} req/s  p99 {r['p99_ms']:7.2f} ms  non-2xx/3xx {r['bad']}",
                        flush=True,
                    )
        finally:
            ceiling.stop()
            server.stop()
    ceil = statistics.median(r["req_per_s"] for r in runs["ceiling"])
    clicks = statistics.median(r["req_per_s"] for r in runs["clicks"])
    p99 = statistics.median(r["p99_ms"] for r in runs["clicks"])
    print(
        f"\nclicks (lead + context committed, then 302): {clicks:,.0f}/s, p99 {p99:.1f} ms;"
        f" bare ASGI ceiling {ceil:,.0f} req/s; ratio {clicks / ceil:.0%} (medians of {args.repeat})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
