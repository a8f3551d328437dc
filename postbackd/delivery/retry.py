"""Retry maths: what one attempt's outcome means and when to try again. Pure.

An attempt ends with an HTTP status or a transport error code; ``classify`` maps both
onto the stable error-code vocabulary and ``decide`` turns that into delivered, retry
after a delay, or dead. Everything random or time-dependent comes in as an argument
(``rng``, ``now``), so the same inputs always give the same decision.
"""

from __future__ import annotations

import enum
import math
import random
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

__all__ = [
    "Decision",
    "ErrorCode",
    "Outcome",
    "RetryPolicy",
    "classify",
    "decide",
    "parse_retry_after",
]


class ErrorCode(enum.StrEnum):
    """Why an attempt failed; ``OK`` (the empty string) when it did not."""

    OK = ""
    TIMEOUT = "timeout"
    DNS = "dns"
    CONNECT = "connect"
    RESET = "reset"
    TLS = "tls"
    HTTP_4XX = "http_4xx"
    HTTP_429 = "http_429"
    HTTP_410 = "http_410"
    HTTP_5XX = "http_5xx"
    HTTP_OTHER = "http_other"  # 1xx/3xx/out-of-range: redirects are not followed
    BODY_MISMATCH = "body_mismatch"
    REFUSED_TARGET = "refused_target"


TRANSPORT_ERRORS = frozenset(
    {ErrorCode.TIMEOUT, ErrorCode.DNS, ErrorCode.CONNECT, ErrorCode.RESET, ErrorCode.TLS}
)
# Failures that waiting may cure. The rest are the receiver's considered answer.
RETRYABLE = TRANSPORT_ERRORS | {
    ErrorCode.HTTP_429,
    ErrorCode.HTTP_5XX,
    ErrorCode.BODY_MISMATCH,
}
# Never retried, whatever the policy: the target is forbidden or is gone for good.
FATAL = frozenset({ErrorCode.REFUSED_TARGET, ErrorCode.HTTP_410})


class Outcome(enum.StrEnum):
    DELIVERED = "delivered"
    RETRY = "retry"
    DEAD = "dead"


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Delays (seconds) after attempt 1, 2, …; the last entry repeats if attempts remain."""

    schedule: tuple[float, ...] = (5, 30, 120, 600, 1800, 7200, 21600)
    max_attempts: int = 8
    jitter: float = 0.2
    retry_on_4xx: bool = False
    max_retry_after: float = 86400

    def __post_init__(self) -> None:
        if not self.schedule or any(not (0 <= d < math.inf) for d in self.schedule):
            raise ValueError("schedule must be a non-empty tuple of finite delays >= 0")
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if not 0 <= self.jitter <= 1:
            raise ValueError("jitter must be between 0 and 1, or delays could go negative")
        if not 0 <= self.max_retry_after < math.inf:
            raise ValueError("max_retry_after must be a finite number of seconds >= 0")


@dataclass(frozen=True, slots=True)
class Decision:
    """``delay`` is set only for RETRY; ``reason`` is the ErrorCode value ("" if delivered)."""

    outcome: Outcome
    delay: float | None
    reason: str


def classify(status: int | None, error_code: str | None, body_ok: bool = True) -> ErrorCode:
    """The error code for one attempt: a transport error code wins over any status."""
    if error_code:
        return ErrorCode(error_code)  # ValueError for a code outside the vocabulary
    if status is None:
        raise ValueError("an attempt needs either a status or an error code")
    if 200 <= status < 300:
        return ErrorCode.OK if body_ok else ErrorCode.BODY_MISMATCH
    if status == 410:
        return ErrorCode.HTTP_410
    if status == 429:
        return ErrorCode.HTTP_429
    if 400 <= status < 500:
        return ErrorCode.HTTP_4XX
    if 500 <= status < 600:
        return ErrorCode.HTTP_5XX
    return ErrorCode.HTTP_OTHER


def decide(
    policy: RetryPolicy,
    attempt: int,
    status: int | None,
    error_code: str | None,
    *,
    body_ok: bool = True,
    retry_after: str | None = None,
    rng: random.Random,
    now: datetime,
) -> Decision:
    """What to do after ``attempt`` (1-based count of attempts made so far) ended so."""
    if attempt < 1:
        raise ValueError("attempt counts from 1")
    code = classify(status, error_code, body_ok)
    if code is ErrorCode.OK:
        return Decision(Outcome.DELIVERED, None, code.value)
    if not _retryable(policy, code) or attempt >= policy.max_attempts:
        return Decision(Outcome.DEAD, None, code.value)
    return Decision(Outcome.RETRY, _delay(policy, attempt, retry_after, rng, now), code.value)


def _retryable(policy: RetryPolicy, code: ErrorCode) -> bool:
    if code in FATAL:
        return False
    if code in RETRYABLE:
        return True
    return policy.retry_on_4xx and code is ErrorCode.HTTP_4XX


def _delay(
    policy: RetryPolicy, attempt: int, retry_after: str | None, rng: random.Random, now: datetime
) -> float:
    """The receiver's Retry-After wins (capped, no jitter); otherwise the jittered schedule."""
    asked = parse_retry_after(retry_after, now)
    if asked is not None:
        return min(asked, policy.max_retry_after)
    base = policy.schedule[min(attempt - 1, len(policy.schedule) - 1)]
    # Jitter spreads retries of a burst of failures so they do not return as one burst.
    return base * (1 + policy.jitter * rng.uniform(-1, 1))


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds to wait per a Retry-After header (RFC 9110 §10.2.3); None if absent or bad.

    A date in the past means "now" (0). ``now`` must be timezone-aware.
    """
    if value is None:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return float(value)  # absurdly long values become inf, which the cap then bounds
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:  # asctime dates carry no zone; HTTP dates are always GMT
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())
