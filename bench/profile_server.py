"""`postbackd serve` under cProfile, every thread profiled (bench/ingest.py --profile).

cProfile sees only the thread that enabled it, and the writer threads are where the SQL
runs, so each thread gets its own profiler (Thread.run is wrapped before the app starts)
and dumps `<name>.prof` into $PB_PROFILE_DIR when it ends. Stop the server with SIGTERM.
Profiling slows everything down; read the split between threads and the top entries,
not the absolute numbers.
"""

from __future__ import annotations

import cProfile
import io
import os
import pstats
import re
import signal
import sys
import threading
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _install(out_dir: Path) -> cProfile.Profile:
    original = threading.Thread.run

    def run(self):
        prof = cProfile.Profile()
        prof.enable()
        try:
            original(self)
        finally:
            prof.disable()
            safe = re.sub(r"[^A-Za-z0-9_.-]", "_", self.name)
            prof.dump_stats(out_dir / f"thread-{safe}-{threading.get_ident()}.prof")

    threading.Thread.run = run
    main = cProfile.Profile()
    main.enable()
    return main


def serve(argv: list[str]) -> None:
    out_dir = Path(os.environ["PB_PROFILE_DIR"])
    out_dir.mkdir(parents=True, exist_ok=True)
    # uvicorn re-raises the SIGTERM it caught once it has shut down; with the default
    # handler the process would die before the main thread's profile is written.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    main = _install(out_dir)
    try:
        from postbackd.cli import app

        app(argv, standalone_mode=False)
    finally:
        main.disable()
        main.dump_stats(out_dir / "main.prof")


def summarize(out_dir: Path, top: int = 25) -> dict:
    """Per group of threads (main = event loop, writer-*, the rest): totals and top entries."""
    groups: dict[str, list[Path]] = {}
    for f in sorted(out_dir.glob("*.prof")):
        name = f.stem
        key = "main" if name == "main" else ("writer" if "writer" in name else "other")
        groups.setdefault(key, []).append(f)
    out = {}
    for key, files in groups.items():
        stats = pstats.Stats(*map(str, files), stream=io.StringIO())
        total = sum(v[2] for v in stats.stats.values())  # tottime summed = busy time
        buf = io.StringIO()
        stats.stream = buf
        stats.sort_stats("tottime").print_stats(top)
        text = buf.getvalue()
        out[key] = {"threads": len(files), "busy_s": total, "top_tottime": _trim(text)}
        buf = io.StringIO()
        stats.stream = buf
        stats.sort_stats("cumulative").print_stats(top)
        out[key]["top_cumulative"] = _trim(buf.getvalue())
    return out


def _trim(text: str) -> str:
    lines = text.splitlines()
    start = next((i for i, x in enumerate(lines) if "ncalls" in x), 0)
    return "\n".join(x.rstrip() for x in lines[start:] if x.strip())


def profile_sqlite(args, workdir: Path, wrk: str, run_wrk) -> dict:
    """One SQLite saturation run against a profiled server; prints and returns a summary."""
    from bench.ingest import Candidate

    prof_dir = workdir / "prof"
    env = {"PB_PROFILE_DIR": str(prof_dir)}
    if args.sqlite_synchronous:
        env["POSTBACKD_SQLITE_SYNCHRONOUS"] = args.sqlite_synchronous
    launcher = [sys.executable, str(HERE / "profile_server.py")]
    db = workdir / "postbackd.db"
    target = Candidate("profile", f"sqlite:///{db}", workdir, args.leads, env, launcher)
    try:
        result = run_wrk(wrk, target, conns=64, duration=args.duration, rate=0)
    finally:
        target.stop()
    summary = summarize(prof_dir)
    print(
        f"\nprofiled SQLite saturation (cProfile on): {result['accepted_per_s']:,.0f} 2xx/s,"
        f" server CPU {result['server_cpu_pct']:.0f}%"
    )
    for key, s in summary.items():
        print(f"\n== {key} thread(s): {s['threads']}, profiled busy {s['busy_s']:.1f}s ==")
        print("\n".join(s["top_tottime"].splitlines()[:16]))
    return {"run": result, "threads": summary}


if __name__ == "__main__":
    sys.path.insert(0, str(HERE.parent))
    serve(sys.argv[1:])
