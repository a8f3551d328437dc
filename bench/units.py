"""CPU per unit of the write path, without HTTP (on demand; not pytest).

The ingest and dispatch benchmarks measure the whole server; this one times the units the
writer runs, one at a time, in batches like the group-commit writer's (one transaction,
a SAVEPOINT per unit), on a scratch SQLite file: `fire_event` with one planned JSON
postback (the same one `dispatch.py` uses), without and with the hand-off lease that the
in-process dispatcher asks for (`+handoff`).
`process_time` per unit is the figure; the ceiling next to it is a bare `sqlite3` INSERT
of a conversion-sized row per unit in the same batches, the least a unit can cost.

    .venv/bin/python bench/units.py                 # figures
    .venv/bin/python bench/units.py --profile       # + cProfile top entries per unit kind
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from bench.dispatch import EVENT, FIELDS  # noqa: E402
from postbackd.store.claims import Handoff  # noqa: E402


def _setup(db_url: str, leads: int) -> tuple[str, list[str]]:
    from starlette.testclient import TestClient

    from postbackd.api.app import create_app
    from postbackd.settings import Settings
    from postbackd.store import orgs
    from postbackd.store.engine import make_engine

    settings = Settings(database_url=db_url, worker=False, secret_key="units-bench")
    engine = make_engine(db_url)
    app = create_app(settings, engine, writer_process=False)
    with TestClient(app) as client:
        with engine.begin() as conn:
            org = orgs.create_org(conn, "units")
            _row, key = orgs.create_key(conn, org["id"], "bench")
        client.headers["Authorization"] = f"Bearer {key}"
        cid = client.post("/api/v1/campaigns", json={"name": "Units"}).json()["id"]
        event = {"event_id": EVENT, "type": "tracking", "allow_duplicates": True}
        client.post(f"/api/v1/campaigns/{cid}/events", json=event).raise_for_status()
        postback = {
            "name": "units",
            "trigger": "event",
            "trigger_events": [EVENT],
            "url": "http://127.0.0.1:9/postback",
            "fields": FIELDS,
        }
        client.post("/api/v1/postbacks", json=postback).raise_for_status()
        tids = []
        for i in range(leads):
            r = client.post("/api/leads", json={"cid": cid, "sub1": str(i)})
            tids.append(r.json()["data"]["transaction_id"])
    engine.dispose()
    return org["id"], tids


LEAD_CACHE = True  # --no-lead-cache: every unit reads its lead (as on PostgreSQL)


def _batches(engine, units: list, batch: int) -> float:
    """Run `units` (fn, args) through the real writer's batch code; CPU seconds."""
    from postbackd.store import lead_cache
    from postbackd.store.writer import Writer, _Item

    writer = Writer(engine, max_batch=batch)
    conn = engine.connect().execution_options(immediate=True)
    if LEAD_CACHE:
        lead_cache.install(conn)
    start = time.process_time()
    for i in range(0, len(units), batch):
        items = [_Item(fn, args, None) for fn, args in units[i : i + batch]]
        for _item, ok, value in writer._run_batch(conn, items):
            if not ok:
                raise value
    spent = time.process_time() - start
    writer.close(conn)
    return spent


def _fire_units(org_id: str, tids: list[str], n: int, lease) -> list:
    from postbackd import record
    from postbackd.inbound.events import parse_event

    units = []
    for i in range(n):
        params = {
            "event_id": EVENT,
            "transaction_id": tids[i % len(tids)],
            "sub1": str(time.time()),
            "clid": f"c{i}",
        }
        units.append((record.fire_event, (org_id, parse_event(params), lease)))
    return units


def _bare_ceiling(path: Path, n: int, batch: int) -> float:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("CREATE TABLE IF NOT EXISTS bare (id TEXT PRIMARY KEY, lead TEXT, body TEXT)")
    body = "x" * 400
    start = time.process_time()
    for i in range(0, n, batch):
        conn.execute("BEGIN IMMEDIATE")
        for j in range(i, min(n, i + batch)):
            conn.execute("SAVEPOINT u")
            conn.execute("INSERT INTO bare VALUES (?, ?, ?)", (f"id{j}", "lead", body))
            conn.execute("RELEASE SAVEPOINT u")
        conn.execute("COMMIT")
    spent = time.process_time() - start
    conn.close()
    return spent


def _profile(engine, units: list, batch: int, top: int) -> str:
    prof = cProfile.Profile()
    prof.enable()
    _batches(engine, units, batch)
    prof.disable()
    buf = io.StringIO()
    stats = pstats.Stats(prof, stream=buf)
    stats.sort_stats("tottime").print_stats(top)
    stats.sort_stats("cumulative").print_stats(top)
    return buf.getvalue()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--events", type=int, default=4000)
    p.add_argument("--leads", type=int, default=500)
    p.add_argument("--batch", type=int, default=32, help="units per transaction")
    p.add_argument("--profile", action="store_true")
    p.add_argument("--top", type=int, default=30)
    p.add_argument("--no-lead-cache", action="store_true", help="the writer reads every lead")
    args = p.parse_args()
    global LEAD_CACHE
    LEAD_CACHE = not args.no_lead_cache

    from postbackd.store.engine import make_engine

    with tempfile.TemporaryDirectory(prefix="pbd-units-") as tmp:
        db_url = f"sqlite:///{tmp}/units.db"
        org_id, tids = _setup(db_url, args.leads)
        engine = make_engine(db_url)
        n = args.events
        figures = {}
        for batch in sorted({1, args.batch}):
            plain = _batches(engine, _fire_units(org_id, tids, n, None), batch)
            handed = _batches(engine, _fire_units(org_id, tids, n, Handoff("w-1", 30.0)), batch)
            bare = _bare_ceiling(Path(tmp) / f"bare-{batch}.db", n, batch)
            figures[batch] = (plain / n, handed / n, bare / n)
        print(f"{n} units each; CPU µs per unit (process_time)")
        print(f"{'batch':>6} {'fire_event':>11} {'+handoff':>9} {'bare insert':>12} {'ratio':>6}")
        for batch, (plain, handed, bare) in figures.items():
            print(
                f"{batch:>6} {plain * 1e6:>11.0f} {handed * 1e6:>9.0f} {bare * 1e6:>12.0f}"
                f" {plain / bare:>6.1f}x"
            )
        if args.profile:
            print(
                _profile(
                    engine, _fire_units(org_id, tids, n, Handoff("w-1", 30.0)), args.batch, args.top
                )
            )
        engine.dispose()


if __name__ == "__main__":
    main()
