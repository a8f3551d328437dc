"""The commands a newcomer and an operator type: `postbackd demo` and `postbackd replay`."""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
import time
import urllib.request

import pytest

from tests.system.proc import BIN, die_with_parent, free_port, server_env

pytestmark = pytest.mark.slow


def _get(url: str, key: str) -> dict:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {key}"})
    with urllib.request.urlopen(req, timeout=5) as r:
        return json.loads(r.read())


@pytest.fixture
def demo(tmp_path):
    port = free_port()
    log = tmp_path / "demo.log"
    cmd = [str(BIN), "demo", "--port", str(port), "--database-url", f"sqlite:///{tmp_path}/demo.db"]
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            cmd,
            cwd=tmp_path,
            env=server_env(),
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=die_with_parent,
        )
    try:
        yield proc, port, log
    finally:
        proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(10)


def test_demo_shows_deliveries_a_retry_and_a_skip_within_a_minute(demo):
    proc, port, log = demo
    deadline = time.monotonic() + 60
    key = stats = None
    while time.monotonic() < deadline and proc.poll() is None:
        text = log.read_text(errors="replace")
        key = key or (m.group(1) if (m := re.search(r"admin API key\s+(pbk_\S+)", text)) else None)
        if key:
            with contextlib.suppress(OSError):
                stats = _get(f"http://127.0.0.1:{port}/api/v1/stats/deliveries", key)
                retried = _get(
                    f"http://127.0.0.1:{port}/api/v1/deliveries?state=delivered&limit=500", key
                )
                if (
                    stats["by_state"].get("delivered", 0) >= 10
                    and stats["by_state"].get("skipped", 0) >= 1
                ):
                    assert any(d["attempts"] > 1 for d in retried["data"]), retried
                    break
        time.sleep(0.5)
    assert key, log.read_text(errors="replace")
    assert stats and stats["by_state"].get("delivered", 0) >= 10, (
        stats,
        log.read_text(errors="replace")[-3000:],
    )
    assert stats["skipped_by_filter"] == {"state": 1}
    text = log.read_text(errors="replace")
    assert "answering 503" in text and "/docs" in text  # the retry is visible, and where to look


def test_replay_command_requeues_dead_deliveries(tmp_path):
    """Dead deliveries (a target that refused them) replayed by the CLI, keys unchanged."""
    from postbackd.inbound.events import parse_event
    from postbackd.inbound.leads import LeadCommand
    from postbackd.outbound.config import PostbackConfig, split_secrets
    from postbackd.record import enter_lead, fire_event
    from postbackd.store import campaigns, orgs, postbacks
    from postbackd.store.engine import make_engine, migrate
    from postbackd.store.writer import Writer

    url = f"sqlite:///{tmp_path}/replay.db"
    engine = make_engine(url)
    migrate(engine)
    writer = Writer(engine).start()

    def setup(conn):
        org = orgs.create_org(conn, "replay")
        cid = campaigns.create_campaign(conn, org["id"], {"name": "c"})["id"]
        campaigns.create_event_definition(
            conn,
            org["id"],
            cid,
            {"event_id": "sale", "type": "conversion", "allow_duplicates": True, "aliases": []},
        )
        cfg = PostbackConfig(name="p", trigger="event", url="http://127.0.0.1:9/x")
        columns, config, _ = split_secrets(cfg)
        postbacks.insert(conn, org["id"], {**columns, "config": config, "secrets": ""})
        return org["id"], cid

    org_id, cid = writer.run_sync(setup)
    tid = writer.run_sync(enter_lead, LeadCommand(cid=cid))["lead"]["transaction_id"]
    for _ in range(30):
        writer.run_sync(
            fire_event,
            org_id,
            parse_event({"event_id": "sale", "transaction_id": tid, "revenue": 1}),
        )
    with engine.begin() as conn:  # as if every attempt had failed
        conn.exec_driver_sql(
            "UPDATE deliveries SET state = 'dead', attempts = 8, next_attempt_at = NULL"
        )
        keys = {
            r[0]: r[1] for r in conn.exec_driver_sql("SELECT id, idempotency_key FROM deliveries")
        }
    writer.stop()
    out = subprocess.run(
        [str(BIN), "replay", "--org", org_id, "--state", "dead", "--database-url", url],
        cwd=tmp_path,
        env=server_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert "replayed 30 deliveries" in out, out
    with engine.connect() as conn:
        rows = conn.exec_driver_sql("SELECT id, idempotency_key, state FROM deliveries").all()
    assert {state for _, _, state in rows} == {"pending"}
    assert {i: k for i, k, _ in rows} == keys
