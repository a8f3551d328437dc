"""The delivery worker: claim due deliveries with a lease, send, record, decide.

Runs in the server process by default (woken at once by new deliveries) or alone as
`postbackd worker`; many workers on many machines share one PostgreSQL database, claiming
with `FOR UPDATE SKIP LOCKED`. A worker killed mid-send leaves its deliveries leased;
after the lease expires another worker (or the same one restarted) takes them again with
the same idempotency key.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import secrets
import socket
import time
from datetime import timedelta
from typing import Any

import sqlalchemy as sa

from postbackd.crypto import SecretBox
from postbackd.delivery import metrics, prepare
from postbackd.delivery.prepare import context_of
from postbackd.delivery.recorder import Finish, Recorder
from postbackd.delivery.retry import ErrorCode, Outcome, RetryPolicy, decide
from postbackd.delivery.sender import Response, Sender, body_ok, target_of
from postbackd.model import DeliveryState
from postbackd.outbound import request as outbound_request
from postbackd.outbound.signing import Redaction
from postbackd.settings import Settings
from postbackd.store import claims, orgs, outbox
from postbackd.store.cache import CONFIG
from postbackd.store.tables import postbacks as postbacks_t
from postbackd.store.tables import utcnow
from postbackd.store.writer import Writer

log = logging.getLogger(__name__)
CLAIM_BATCH = 100
POLL_SECONDS = 0.5
CONFIG_TTL = 1.0
MIN_CLAIM_INTERVAL = 0.005  # seconds between claims that came back short
# Per request slot (`worker_concurrency`): deliveries claimed and waiting for a slot, so
# the next request starts the moment one frees instead of a claim round trip (and a
# commit) later; and deliveries held in all, including those whose attempts wait for
# their group commit. A SIGKILL can make a worker resend at most the latter.
CLAIM_AHEAD = 4
RECORDING_SLOTS = 8
# A target may hold what it answers in this long at its own recent pace (at least
# CLAIM_AHEAD x its slots, at most the worker's whole claim-ahead): a fast partner needs a
# deep buffer to stay busy across a claim round trip, a slow one does not.
PACE_HORIZON = 0.1
PACE_WINDOW = 0.1  # seconds of answers a target's pace is measured over
PACE_TARGETS = 1024  # paces kept before the quiet targets' are forgotten


class Dispatcher:
    def __init__(
        self, settings: Settings, engine: sa.Engine, writer: Writer, sender: Sender, box: SecretBox
    ):
        self.settings = settings
        self.engine = engine
        self.writer = writer
        self.sender = sender
        self.box = box
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self.recorder = Recorder(writer, self.worker_id)
        # Claims through the writer process come back rendered there (delivery/prepare.py):
        # that process has a core to spare; rendering in a writer thread would gain nothing.
        self.prepare_in_writer = getattr(writer, "remote", False)
        self.rng = random.Random()
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._inflight: set[asyncio.Task] = set()
        self._tokens: dict[str, int] = {}  # lease token -> deliveries of that claim in flight
        self._sending: set[str] = set()  # delivery ids in flight here (until recorded)
        self._deferred: dict[str, dict] = {}  # claimed again while still in flight here
        self._busy: set[str] = set()  # ... of which still waiting for their partner's answer
        self._ahead = settings.worker_concurrency * CLAIM_AHEAD  # cap of _busy
        self._held = settings.worker_concurrency * RECORDING_SLOTS  # cap of _inflight
        # One target (host and port) holds at most its share of _busy (`_share_of`): more
        # would only wait for its slots while other partners' deliveries waited unclaimed
        # behind its backlog. Claims pass over it until it is down to half.
        self._share = settings.per_target_concurrency * CLAIM_AHEAD
        self._pace: dict[Any, list] = {}  # target -> [window start, answers since, answers/s]
        self._target_of: dict[str, str] = {}  # postback id -> its target, once rendered
        self._busy_for: dict[str, Any] = {}  # delivery id in _busy -> its target
        self._held_by: dict[Any, int] = {}  # target -> its deliveries in _busy
        self._full: set[Any] = set()  # targets holding their share; claims pass them over
        self._after = ""  # the postback the last claim passing over busy ones stopped at
        self._claims = 0
        self._backlog = False
        self._handoff_token = f"{self.worker_id}#handoff"
        self._next_due: float | None = None  # monotonic time of the earliest retry we scheduled
        self._cache: dict[tuple[str, str], tuple[float, Any]] = {}
        self._loading: dict[tuple[str, str], asyncio.Future] = {}
        self._opened: dict[str, tuple[str, dict[str, str]]] = {}  # postback id -> secrets
        self._rules: dict[str, tuple] = {}  # postback id -> (config, secrets, policy, redactor)
        CONFIG.on_clear(self._cache.clear)  # admin writes reach the worker's cache too

    def ring(self) -> None:
        """Thread-safe: there is new work, look now."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._wake.set)

    async def run(self, stop: asyncio.Event) -> None:
        self._loop = asyncio.get_running_loop()
        heartbeat = asyncio.create_task(self._heartbeat(stop))
        last_claim = 0.0
        while not stop.is_set():
            # Coalesce doorbells: under steady ingest every commit rings, and a claim per
            # ring would cost a writer transaction per event.
            await asyncio.sleep(max(0.0, last_claim + MIN_CLAIM_INTERVAL - time.monotonic()))
            self._wake.clear()  # before claiming: a ring during the claim is not lost
            last_claim = time.monotonic()
            claimed, asked = await self._claim()
            if asked and claimed == asked:
                continue  # a full batch: more may be waiting
            waiters = [asyncio.ensure_future(self._wake.wait()), asyncio.ensure_future(stop.wait())]
            _done, pending = await asyncio.wait(
                waiters, timeout=self._wait_seconds(), return_when=asyncio.FIRST_COMPLETED
            )
            for waiter in pending:
                waiter.cancel()
        await self.drain()
        heartbeat.cancel()

    def _wait_seconds(self) -> float:
        """Until the next poll, or sooner when a retry we scheduled falls due."""
        if self._next_due is None:
            return POLL_SECONDS
        wait = self._next_due - time.monotonic()
        if wait <= POLL_SECONDS:
            self._next_due = None
        return min(max(wait, 0.001), POLL_SECONDS)

    async def _heartbeat(self, stop: asyncio.Event) -> None:
        """Renew the leases of everything in flight every third of a lease, so a delivery
        waiting for a slot or a slow partner is never taken over by another claim."""
        lease = self.settings.lease_seconds
        while not stop.is_set():
            await asyncio.sleep(lease / 3)
            tokens = list(self._tokens)
            try:
                await self.writer.run(outbox.renew, tokens, lease, utcnow())
            except Exception:
                log.exception("renewing leases failed")

    async def drain(self, timeout: float = 15) -> None:
        if self._inflight:
            await asyncio.wait(self._inflight, timeout=timeout)

    async def _claim(self) -> tuple[int, int]:
        """(claimed, asked for); nothing is asked for while every slot is busy.

        A slot is a request in flight to a partner: it frees as soon as the answer is in,
        while the attempt waits for its commit (group commit wants many waiting at once).
        Up to CLAIM_AHEAD deliveries per slot are held until answered (the sender lets
        `worker_concurrency` of them out at once); with those waiting to be recorded, at
        most RECORDING_SLOTS per slot.
        """
        metrics.CLAIMED.set(len(self._busy))
        metrics.PASSED_OVER.set(len(self._full))
        free = min(self._ahead - len(self._busy), self._held - len(self._inflight))
        if free <= 0:
            return 0, 0
        self._claims += 1
        token = f"{self.worker_id}#{self._claims}"
        lease = self.settings.lease_seconds
        asked = min(free, CLAIM_BATCH)
        try:
            if self._full:  # pass over the targets holding their share
                skip = self._passed_over()
                batch, self._after = await self._claim_unit(
                    claims.claim_passing_over,
                    *(token, asked, lease, utcnow(), skip, self._share, self._after),
                )
            else:
                batch = await self._claim_unit(claims.claim_due, token, asked, lease, utcnow())
        except Exception:
            log.exception("claiming deliveries failed; retrying")
            await asyncio.sleep(POLL_SECONDS)
            return 0, asked
        self._backlog = len(batch) == asked  # more may be due than we took
        for delivery in batch:
            self._start(delivery)
        return len(batch), asked

    async def _claim_unit(self, fn, *args: Any) -> Any:
        if self.prepare_in_writer:
            return await self.writer.run(prepare.claim, self.box, fn, *args)
        return await self.writer.run(fn, *args)

    def _start(self, delivery: dict) -> None:
        if delivery["id"] in self._sending:
            # Claimed again while our task for it is still finishing (its lease ran out, or
            # a retry with no delay was claimed before the task's last step): never twice at
            # once, but not dropped either; it starts when that task is done.
            self._deferred[delivery["id"]] = delivery
            return
        self._sending.add(delivery["id"])
        self._busy.add(delivery["id"])
        self._hold(delivery)
        token = delivery["leased_by"]
        self._tokens[token] = self._tokens.get(token, 0) + 1
        task = asyncio.create_task(self._tracked(delivery))
        task.delivery = delivery
        self._inflight.add(task)
        task.add_done_callback(self._done)

    def handoff_lease(self) -> claims.Handoff | None:
        """A lease for deliveries about to be written by this process's ingest, so they
        come straight here after the commit instead of waiting to be claimed; None while
        every slot is busy or older deliveries wait (they go first, through claims).
        Deliveries of the postbacks passed over as busy stay pending."""
        if self._loop is None or self._backlog:
            return None
        if len(self._busy) >= self._ahead:
            return None
        passed_over = self._passed_over() if self._full else frozenset()
        return claims.Handoff(self._handoff_token, self.settings.lease_seconds, passed_over)

    def take(self, deliveries: list[dict]) -> None:
        """Deliveries committed already leased to us (`handoff_lease`): send them now.

        If this process dies before they are sent, their lease runs out and any worker
        claims them, as after a crash mid-send."""
        for delivery in deliveries:
            self._start(delivery)

    def _answered(self, delivery_id: str) -> None:
        """The partner answered (or the send was skipped): its slot is free again."""
        if delivery_id in self._busy:
            was_full = len(self._busy) >= self._ahead
            self._busy.discard(delivery_id)
            target_freed = self._release(delivery_id)
            if was_full or target_freed:
                self._wake.set()  # a slot opened while work may be waiting

    def _hold(self, delivery: dict) -> None:
        """Count a delivery against its target's share (the postback's, until one of its
        requests has shown where it goes)."""
        postback_id = delivery["postback_id"]
        target = self._target_of.get(postback_id) or ("postback", postback_id)
        self._busy_for[delivery["id"]] = target
        held = self._held_by[target] = self._held_by.get(target, 0) + 1
        if held >= self._share_of(target):
            self._full.add(target)

    def _release(self, delivery_id: str) -> bool:
        """True when the delivery's target just went down to half its share."""
        target = self._busy_for.pop(delivery_id)
        self._paced(target, time.monotonic())
        held = self._held_by[target] = self._held_by[target] - 1
        if not held:
            del self._held_by[target]
        if target in self._full and held <= self._share_of(target) // 2:
            self._full.discard(target)
            return True
        return False

    def _share_of(self, target: Any) -> int:
        """What a target may hold claimed: PACE_HORIZON of its answers at its recent pace,
        between CLAIM_AHEAD x its slots and the whole claim-ahead. With a fixed
        4 x 16 a lone fast partner drained at 26% of the bare client instead of 41%: it
        emptied 32 deliveries faster than a claim came back."""
        pace = self._pace.get(target)
        if pace is None:
            return self._share
        return max(self._share, min(self._ahead, int(pace[2] * PACE_HORIZON)))

    def _paced(self, target: Any, now: float) -> None:
        """Count an answer towards the target's pace, measured over PACE_WINDOW; after a
        quiet spell the first window is long, so the pace starts low again."""
        pace = self._pace.get(target)
        if pace is None:
            if len(self._pace) >= PACE_TARGETS:  # forget the targets quiet for a while
                self._pace = {t: p for t, p in self._pace.items() if now - p[0] < 10}
            self._pace[target] = [now, 1, 0.0]
            return
        pace[1] += 1
        if now - pace[0] >= PACE_WINDOW:
            pace[2] = pace[1] / (now - pace[0])
            pace[0], pace[1] = now, 0

    def holding(self) -> dict[Any, int]:
        """Claimed and unanswered deliveries per target (empty when idle)."""
        return dict(self._held_by)

    def _passed_over(self) -> frozenset[str]:
        """The postbacks whose target holds its share."""
        full = self._full
        return frozenset(
            [pb for pb, target in self._target_of.items() if target in full]
            + [target[1] for target in full if isinstance(target, tuple)]
        )

    def _done(self, task: asyncio.Task) -> None:
        was_full = len(self._inflight) >= self._held
        self._inflight.discard(task)
        if task.delivery["id"] not in self._sending:  # else a deferred claim of it started
            self._answered(task.delivery["id"])
        token = task.delivery["leased_by"]
        self._tokens[token] -= 1
        if not self._tokens[token]:
            del self._tokens[token]
        if was_full:
            self._wake.set()
        if not task.cancelled() and task.exception():
            log.error("delivery task failed", exc_info=task.exception())

    async def _tracked(self, delivery: dict) -> str:
        try:
            return await self.deliver(delivery)
        finally:
            # Here, not in the done callback: the delivery may be due again (a retry with
            # no delay) and claimed before the callback runs.
            self._sending.discard(delivery["id"])
            if (again := self._deferred.pop(delivery["id"], None)) is not None:
                self._start(again)

    async def deliver(self, delivery: dict) -> str:
        """One attempt of one claimed delivery; returns the new state."""
        postback = await self._read("postback", delivery["postback_id"])
        if postback is None or postback["archived"] or not postback["enabled"]:
            return await self._skip(
                delivery, "postback_disabled", "the postback was disabled or archived"
            )
        org = await self._read("org", delivery["org_id"])
        secrets_ = self._secrets_of(postback)
        started_at = utcnow()
        now = time.time()
        req = prepare.usable(delivery.get("request"), postback, now) or outbound_request.build(
            postback["config"],
            secrets_,
            context_of(delivery),
            delivery["idempotency_key"],
            int(now),
        )
        self._target_of[postback["id"]] = target_of(req.url)
        resp = await self.sender.send(
            req,
            timeout=postback["config"].get("timeout", 10),
            policy=self.sender.policy_for(org.get("allowed_targets") or []),
            keep=self.settings.attempt_body_limit,
        )
        self._answered(delivery["id"])
        return await self._record(delivery, postback, secrets_, req, resp, started_at)

    async def _record(self, delivery, postback, secrets_, req, resp: Response, started_at) -> str:
        config = postback["config"]
        number = delivery["attempts"] + 1
        policy, redact = self._rules_of(postback["id"], config, secrets_)
        good_body = resp.status is None or body_ok(config.get("success"), resp.body)
        decision = decide(
            policy,
            number,
            resp.status,
            resp.error.value if resp.error else None,
            body_ok=good_body,
            retry_after=resp.headers.get("Retry-After"),
            rng=self.rng,
            now=utcnow(),
        )
        attempt = _attempt_row(
            number, started_at, req, resp, decision.reason, redact, self.settings.attempt_body_limit
        )
        update = _delivery_update(decision, number, resp, req)
        finish = Finish(
            # Only what the record needs: this may cross to the writer process.
            delivery={"id": delivery["id"], "leased_by": delivery["leased_by"]},
            attempt=attempt,
            update=update,
            postback_id=postback["id"],
            outcome=decision.outcome,
            disable_after=config.get("disable_after_failures", 0),
            gone=decision.reason == ErrorCode.HTTP_410,
            # A plain success on a postback without a failure streak leaves its row alone.
            streak=postback["consecutive_failures"] > 0
            or decision.outcome is not Outcome.DELIVERED,
        )
        disabled = await self.recorder.record(finish)
        if decision.outcome is Outcome.DEAD:
            self._cache.pop(("postback", postback["id"]), None)  # its failure streak just changed
        if disabled:
            CONFIG.clear()  # planning must stop matching it at once
        if decision.outcome is Outcome.RETRY:
            self._note_due(decision.delay)
        metrics.record_attempt(decision.outcome.value, decision.reason, resp.latency_ms)
        return update["state"]

    def _note_due(self, delay: float) -> None:
        due = time.monotonic() + delay
        self._next_due = due if self._next_due is None else min(self._next_due, due)

    async def _skip(self, delivery: dict, code: str, reason: str) -> str:
        update = {
            "state": DeliveryState.SKIPPED.value,
            "skip_filter": code,
            "skip_reason": reason,
            "finished_at": utcnow(),
            "next_attempt_at": None,
        }
        await self.writer.run(outbox.release, delivery, update)
        metrics.record_attempt("skipped", code, 0)
        return update["state"]

    def _rules_of(self, postback_id: str, config: dict, secrets_: dict) -> tuple:
        """A postback's retry policy and redactor, built once per config and secrets
        object (both are cached and shared until the postback changes)."""
        hit = self._rules.get(postback_id)
        if hit is None or hit[0] is not config or hit[1] is not secrets_:
            hit = (config, secrets_, _policy(config), Redactor(secrets_, config))
            self._rules[postback_id] = hit
        return hit[2], hit[3]

    def _secrets_of(self, postback: dict) -> dict[str, str]:
        """A postback's secrets, decrypted once per sealed value rather than per attempt."""
        hit = self._opened.get(postback["id"])
        if hit is None or hit[0] != postback["secrets"]:
            hit = self._opened[postback["id"]] = (
                postback["secrets"],
                self.box.open(postback["secrets"]),
            )
        return hit[1]

    async def _read(self, kind: str, id_: str) -> dict | None:
        """Postbacks and organizations, cached for a second (admin writes in this process
        clear it at once); concurrent misses share one load."""
        hit = self._cache.get((kind, id_))
        if hit and time.monotonic() - hit[0] < CONFIG_TTL:
            return hit[1]
        loading = self._loading.get((kind, id_))
        if loading is None:
            loading = self._loading[(kind, id_)] = asyncio.ensure_future(
                asyncio.to_thread(self._load, kind, id_)
            )
            loading.add_done_callback(lambda _f: self._loading.pop((kind, id_), None))
        value = await asyncio.shield(loading)
        self._cache[(kind, id_)] = (time.monotonic(), value)
        return value

    def _load(self, kind: str, id_: str) -> dict | None:
        with self.engine.connect() as conn:
            if kind == "org":
                return orgs.get_org(conn, id_)
            row = conn.execute(sa.select(postbacks_t).where(postbacks_t.c.id == id_)).first()
            if row is None:
                return None
            postback = dict(row._mapping)
            postback["render_key"] = prepare.render_key(postback["config"], postback["secrets"])
            return postback


def _policy(config: dict) -> RetryPolicy:
    retry = config.get("retry") or {}
    return RetryPolicy(
        schedule=tuple(retry.get("schedule") or RetryPolicy.schedule),
        max_attempts=retry.get("max_attempts", RetryPolicy.max_attempts),
        retry_on_4xx=retry.get("retry_on_4xx", False),
    )


class Redactor(Redaction):
    """Hides a postback's secrets in everything an attempt logs, both directions: the
    secret values and their encodings anywhere, and the headers that carry credentials."""

    def __init__(self, secrets_: dict[str, str], config: dict):
        super().__init__(
            outbound_request.secret_values(secrets_), outbound_request.secret_headers(config)
        )


def _attempt_row(
    number, started_at, req, resp: Response, reason: str, redact: Redactor, keep: int
) -> dict:
    answered = resp.status is not None
    return {
        "number": number,
        "started_at": started_at,
        "method": req.method,
        "url": redact.text(req.url),
        "request_headers": redact.headers(req.headers),
        "request_body": redact.text(outbound_request.body_text(req.body)[:keep]),
        "response_status": resp.status,
        "response_headers": redact.headers(dict(list(resp.headers.items())[:50]))
        if answered
        else None,
        "response_body": redact.text(resp.body[:keep].decode("utf-8", "replace"))
        if answered
        else None,
        "latency_ms": resp.latency_ms,
        "error_code": reason or None,
        "error_detail": redact.text(resp.detail) if resp.detail else None,
    }


def _delivery_update(decision, number: int, resp: Response, req) -> dict[str, Any]:
    now = utcnow()
    update: dict[str, Any] = {
        "attempts": number,
        "last_status": resp.status,
        "last_error": decision.reason or None,
        "missing": list(req.missing),
    }
    if decision.outcome is Outcome.RETRY:
        update.update(
            state=DeliveryState.RETRYING.value,
            next_attempt_at=now + timedelta(seconds=decision.delay),
        )
    else:
        state = (
            DeliveryState.DELIVERED if decision.outcome is Outcome.DELIVERED else DeliveryState.DEAD
        )
        update.update(state=state.value, next_attempt_at=None, finished_at=now)
    return update
