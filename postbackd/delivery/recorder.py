"""Record finished attempts in batches: one writer unit for everything that finished
while the previous unit was being committed.

A unit per attempt cost a SAVEPOINT, two statements and a thread hand-off each; under
load the dispatcher finishes dozens of attempts per commit, so they are written together
(one executemany for the attempts, one per shape of delivery update). A caller still
learns its outcome only after the COMMIT, so nothing is reported done that is not stored.
If a batch fails, its attempts are retried one by one, so one bad row cannot take the
others with it.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from postbackd.delivery.retry import Outcome
from postbackd.store import outbox, postbacks
from postbackd.store.cache import CONFIG
from postbackd.store.writer import Writer

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Finish:
    """One finished attempt: the delivery as claimed, its attempt row, its new state, and
    what it means for its postback's failure streak."""

    delivery: dict
    attempt: dict
    update: dict[str, Any]
    postback_id: str
    outcome: Outcome
    disable_after: int
    gone: bool
    streak: bool

    def __reduce__(self):
        # Crosses to the writer process in every record batch: a plain tuple of fields
        # pickles in half the time of the slots dataclass's generic state.
        return (Finish, tuple(getattr(self, f) for f in self.__slots__))


LINGER_SECONDS = 0.005  # how long a lone finish waits for company before it is written
FLUSH_AT = 128  # ... unless this many are waiting


class Recorder:
    """Group finished attempts into one writer unit at a time (see the module docstring).

    A finish that arrives while nothing is being written waits `linger` seconds for others:
    at a few hundred deliveries a second each would otherwise be a transaction (and an
    fsync) of its own, which cost more CPU than the attempt. Nothing waits on this but
    the delivery's row: the request went out already, and a crash before the write means
    the lease runs out and the delivery is sent again under the same idempotency key.
    """

    def __init__(self, writer: Writer, worker_id: str, linger: float = LINGER_SECONDS):
        self.writer = writer
        self.worker_id = worker_id
        self.linger = linger
        self._waiting: list[tuple[Finish, asyncio.Future]] = []
        self._busy = False
        self._timer: asyncio.TimerHandle | None = None

    async def record(self, finish: Finish) -> bool:
        """Store one attempt; returns True when its postback got disabled by it."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._waiting.append((finish, future))
        if not self._busy:
            self._busy = True
            # (with no linger, still the next loop turn: finishes of this turn join)
            self._timer = loop.call_later(self.linger, self._flush)
        elif self._timer is not None and len(self._waiting) >= FLUSH_AT:
            self._timer.cancel()
            self._timer = None
            loop.call_soon(self._flush)
        return await future

    def _flush(self) -> None:
        self._timer = None
        batch, self._waiting = self._waiting, []
        task = asyncio.ensure_future(self._write([f for f, _ in batch]))
        task.add_done_callback(lambda done: self._written(batch, done))

    async def _write(self, finishes: list[Finish]) -> list[bool | BaseException]:
        try:
            return await self.writer.run(record_finishes, self.worker_id, finishes)
        except Exception:
            if len(finishes) == 1:
                raise
            log.exception("recording %d attempts failed; recording them one by one", len(finishes))
        results: list[bool | BaseException] = []
        for finish in finishes:
            try:
                results += await self.writer.run(record_finishes, self.worker_id, [finish])
            except Exception as exc:
                results.append(exc)
        return results

    def _written(self, batch: list[tuple[Finish, asyncio.Future]], done: asyncio.Future) -> None:
        if self._waiting:
            self._flush()  # what finished meanwhile goes next, as one unit
        else:
            self._busy = False
        if done.cancelled() or done.exception() is not None:
            failure = done.exception() if not done.cancelled() else asyncio.CancelledError()
            results: list = [failure] * len(batch)
        else:
            results = done.result()
        for (_finish, future), result in zip(batch, results, strict=True):
            if future.cancelled():
                continue
            if isinstance(result, BaseException):
                future.set_exception(result)
            else:
                future.set_result(result)


def record_finishes(conn: sa.Connection, worker: str, finishes: list[Finish]) -> list[bool]:
    """Writer unit: the attempts and delivery states, then each postback's failure streak;
    one flag per finish, True when that finish disabled its postback."""
    outbox.finish_attempts(conn, worker, [(f.delivery, f.attempt, f.update) for f in finishes])
    disabled = [_postback_effect(conn, f) for f in finishes]
    if any(disabled):
        CONFIG.clear()  # planning in this process (maybe the writer process) stops matching it
    return disabled


def _postback_effect(conn: sa.Connection, fin: Finish) -> bool:
    if fin.outcome is Outcome.RETRY or not fin.streak:
        return False
    if fin.gone:
        postbacks.update(
            conn,
            fin.postback_id,
            {"enabled": False, "disabled_reason": "the endpoint answered 410 Gone"},
        )
        return True
    if postbacks.record_result(
        conn, fin.postback_id, fin.outcome is Outcome.DELIVERED, fin.disable_after
    ):
        log.warning(
            "postback %s disabled after %d consecutive failures", fin.postback_id, fin.disable_after
        )
        return True
    return False
