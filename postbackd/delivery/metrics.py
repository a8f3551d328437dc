"""Prometheus metrics of the delivery worker."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

ATTEMPTS = Counter(
    "postbackd_delivery_attempts_total", "delivery attempts by outcome", ["outcome", "reason"]
)
LATENCY = Histogram(
    "postbackd_delivery_latency_seconds",
    "outbound request latency",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)

CLAIMED = Gauge(
    "postbackd_worker_claimed", "deliveries a worker has claimed and not yet had answered"
)
PASSED_OVER = Gauge(
    "postbackd_worker_targets_passed_over",
    "targets holding their share of a worker's claims (a slow or busy partner), whose"
    " postbacks claims pass over",
)


_ATTEMPTS_BY: dict[tuple[str, str], object] = {}  # `labels()` costs a lock and a tuple per call


def record_attempt(outcome: str, reason: str, latency_ms: float) -> None:
    key = (outcome, reason or "ok")
    counter = _ATTEMPTS_BY.get(key)
    if counter is None:
        counter = _ATTEMPTS_BY[key] = ATTEMPTS.labels(*key)
    counter.inc()
    if latency_ms:
        LATENCY.observe(latency_ms / 1000)
