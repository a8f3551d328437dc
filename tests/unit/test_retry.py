"""Retry maths: every classification and decision branch, and the schedule's bounds."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from postbackd.delivery import retry
from postbackd.delivery.retry import (
    Decision,
    ErrorCode,
    Outcome,
    RetryPolicy,
    classify,
    decide,
    parse_retry_after,
)

NOW = datetime(2024, 3, 1, 12, 0, 0, tzinfo=UTC)
NO_JITTER = RetryPolicy(jitter=0)


def run(policy=NO_JITTER, attempt=1, status=None, error=None, **kw) -> Decision:
    kw.setdefault("rng", random.Random(0))
    kw.setdefault("now", NOW)
    return decide(policy, attempt, status, error, **kw)


def test_all_is_exported():
    assert set(retry.__all__) == {
        "Decision",
        "ErrorCode",
        "Outcome",
        "RetryPolicy",
        "classify",
        "decide",
        "parse_retry_after",
    }


def test_error_code_vocabulary_is_stable():
    assert [c.value for c in ErrorCode] == [
        "",
        "timeout",
        "dns",
        "connect",
        "reset",
        "tls",
        "http_4xx",
        "http_429",
        "http_410",
        "http_5xx",
        "http_other",
        "body_mismatch",
        "refused_target",
    ]


# -- classify ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "error", "body_ok", "code"),
    [
        (200, None, True, ""),
        (204, None, True, ""),
        (299, None, True, ""),
        (200, None, False, "body_mismatch"),
        (201, "", False, "body_mismatch"),
        (400, None, True, "http_4xx"),
        (404, None, True, "http_4xx"),
        (499, None, True, "http_4xx"),
        (410, None, True, "http_410"),
        (429, None, True, "http_429"),
        (500, None, True, "http_5xx"),
        (503, None, True, "http_5xx"),
        (599, None, True, "http_5xx"),
        (301, None, True, "http_other"),
        (100, None, True, "http_other"),
        (600, None, True, "http_other"),
        (404, None, False, "http_4xx"),  # body rules only judge successes
        (None, "timeout", True, "timeout"),
        (None, "dns", True, "dns"),
        (None, "connect", True, "connect"),
        (None, "reset", True, "reset"),
        (None, "tls", True, "tls"),
        (None, "refused_target", True, "refused_target"),
        (200, "reset", True, "reset"),  # connection dropped mid-body: the error wins
    ],
)
def test_classify(status, error, body_ok, code):
    assert classify(status, error, body_ok) == code
    assert isinstance(classify(status, error, body_ok), str)


def test_classify_refuses_unknown_codes_and_empty_attempts():
    with pytest.raises(ValueError):
        classify(None, "gremlins")
    with pytest.raises(ValueError, match="status or an error"):
        classify(None, None)
    with pytest.raises(ValueError, match="status or an error"):
        classify(None, "")


# -- decide: one row per branch ----------------------------------------------------------


@pytest.mark.parametrize(
    ("kw", "outcome", "delay", "reason"),
    [
        ({"status": 200}, Outcome.DELIVERED, None, ""),
        ({"status": 200, "attempt": 99}, Outcome.DELIVERED, None, ""),
        ({"status": 200, "body_ok": False}, Outcome.RETRY, 5, "body_mismatch"),
        ({"error": "timeout"}, Outcome.RETRY, 5, "timeout"),
        ({"error": "dns", "attempt": 2}, Outcome.RETRY, 30, "dns"),
        ({"error": "connect", "attempt": 3}, Outcome.RETRY, 120, "connect"),
        ({"error": "reset", "attempt": 4}, Outcome.RETRY, 600, "reset"),
        ({"error": "tls", "attempt": 5}, Outcome.RETRY, 1800, "tls"),
        ({"status": 500, "attempt": 6}, Outcome.RETRY, 7200, "http_5xx"),
        ({"status": 502, "attempt": 7}, Outcome.RETRY, 21600, "http_5xx"),
        ({"status": 502, "attempt": 8}, Outcome.DEAD, None, "http_5xx"),
        ({"status": 429}, Outcome.RETRY, 5, "http_429"),
        ({"status": 429, "retry_after": "90"}, Outcome.RETRY, 90, "http_429"),
        ({"status": 503, "retry_after": "7"}, Outcome.RETRY, 7, "http_5xx"),
        ({"status": 429, "retry_after": "999999"}, Outcome.RETRY, 86400, "http_429"),
        ({"status": 429, "retry_after": "soon"}, Outcome.RETRY, 5, "http_429"),
        ({"status": 429, "retry_after": "0"}, Outcome.RETRY, 0, "http_429"),
        ({"status": 429, "retry_after": "90", "attempt": 8}, Outcome.DEAD, None, "http_429"),
        ({"status": 400}, Outcome.DEAD, None, "http_4xx"),
        ({"status": 404, "retry_after": "5"}, Outcome.DEAD, None, "http_4xx"),
        ({"status": 302}, Outcome.DEAD, None, "http_other"),
        ({"status": 410}, Outcome.DEAD, None, "http_410"),
        ({"error": "refused_target"}, Outcome.DEAD, None, "refused_target"),
    ],
)
def test_decide_branches(kw, outcome, delay, reason):
    kw = {**kw}
    if "error" not in kw:
        kw["error"] = None
    assert run(**kw) == Decision(outcome, delay, reason)


def test_retry_on_4xx_retries_client_errors_but_never_410_or_refused():
    policy = RetryPolicy(jitter=0, retry_on_4xx=True)
    assert run(policy, status=400) == Decision(Outcome.RETRY, 5, "http_4xx")
    assert run(policy, status=410).outcome is Outcome.DEAD
    assert run(policy, error="refused_target").outcome is Outcome.DEAD
    assert run(policy, status=302).outcome is Outcome.DEAD
    assert run(policy, status=400, attempt=8).outcome is Outcome.DEAD


def test_last_schedule_entry_repeats_when_attempts_outnumber_it():
    policy = RetryPolicy(schedule=(1, 2), max_attempts=5, jitter=0)
    delays = [run(policy, attempt=n, status=500).delay for n in range(1, 5)]
    assert delays == [1, 2, 2, 2]
    assert run(policy, attempt=5, status=500).outcome is Outcome.DEAD


def test_single_attempt_policy_never_retries():
    assert run(RetryPolicy(max_attempts=1), status=503).outcome is Outcome.DEAD


def test_attempt_counts_from_one():
    with pytest.raises(ValueError, match="from 1"):
        run(attempt=0, status=500)


def test_jitter_is_deterministic_for_a_seeded_rng_and_spreads_delays():
    policy = RetryPolicy()
    first = [run(policy, status=500, rng=random.Random(7)).delay for _ in range(3)]
    assert len(set(first)) == 1
    spread = {run(policy, status=500, rng=random.Random(seed)).delay for seed in range(50)}
    assert len(spread) == 50
    assert all(4 <= d <= 6 for d in spread)


def test_retry_after_date_is_honoured_without_jitter():
    decision = run(RetryPolicy(), status=429, retry_after="Fri, 01 Mar 2024 12:02:00 GMT")
    assert decision == Decision(Outcome.RETRY, 120.0, "http_429")


# -- policy validation -------------------------------------------------------------------


@pytest.mark.parametrize(
    "kw",
    [
        {"schedule": ()},
        {"schedule": (5, -1)},
        {"schedule": (float("inf"),)},
        {"schedule": (float("nan"),)},
        {"max_attempts": 0},
        {"jitter": -0.1},
        {"jitter": 1.5},
        {"max_retry_after": -1},
        {"max_retry_after": float("inf")},
    ],
)
def test_policy_refuses_nonsense(kw):
    with pytest.raises(ValueError):
        RetryPolicy(**kw)


def test_policy_defaults_match_the_documented_schedule():
    policy = RetryPolicy()
    assert policy.schedule == (5, 30, 120, 600, 1800, 7200, 21600)
    assert (policy.max_attempts, policy.jitter, policy.retry_on_4xx) == (8, 0.2, False)
    assert policy.max_retry_after == 86400


# -- parse_retry_after -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (None, None),
        ("", None),
        ("   ", None),
        ("120", 120.0),
        (" 120 ", 120.0),
        ("0", 0.0),
        ("-5", None),
        ("1.5", None),
        ("+5", None),
        ("１２", None),  # full-width digits are not HTTP digits
        ("9" * 5000, float("inf")),
        ("Fri, 01 Mar 2024 12:00:30 GMT", 30.0),  # IMF-fixdate
        ("Friday, 01-Mar-24 12:01:00 GMT", 60.0),  # obsolete RFC 850
        ("Fri Mar  1 12:00:10 2024", 10.0),  # asctime, no zone: GMT
        ("Fri, 01 Mar 2024 11:00:00 GMT", 0.0),  # in the past: now
        ("Fri, 01 Mar 2024 13:00:00 +0100", 0.0),
        ("yesterday", None),
        ("Fri, 32 Mar 2024 12:00:00 GMT", None),
    ],
)
def test_parse_retry_after(value, seconds):
    assert parse_retry_after(value, NOW) == seconds


@given(st.text())
def test_parse_retry_after_never_raises_and_is_never_negative(value):
    seconds = parse_retry_after(value, NOW)
    assert seconds is None or seconds >= 0


@given(st.integers(min_value=0, max_value=10**9))
def test_parse_retry_after_dates_round_trip(offset):
    when = NOW + timedelta(seconds=offset)
    assert parse_retry_after(when.strftime("%a, %d %b %Y %H:%M:%S GMT"), NOW) == offset


# -- properties --------------------------------------------------------------------------

RETRYABLE_OUTCOMES = st.sampled_from(
    [(None, "timeout"), (None, "dns"), (None, "connect"), (None, "reset"), (None, "tls")]
    + [(429, None), (500, None), (503, None), (599, None)]
)
policies = st.builds(
    RetryPolicy,
    schedule=st.lists(st.floats(0, 1e6), min_size=1, max_size=10).map(tuple),
    max_attempts=st.integers(1, 20),
    jitter=st.floats(0, 1),
    max_retry_after=st.floats(0, 1e6),
)


@given(policies, st.integers(1, 30), RETRYABLE_OUTCOMES, st.integers(0, 2**32))
def test_delay_stays_within_the_jitter_band(policy, attempt, result, seed):
    decision = run(policy, attempt, *result, rng=random.Random(seed))
    if decision.outcome is Outcome.RETRY:
        base = policy.schedule[min(attempt - 1, len(policy.schedule) - 1)]
        assert decision.delay is not None
        assert 0 <= base * (1 - policy.jitter) <= decision.delay <= base * (1 + policy.jitter)


@given(policies, st.integers(1, 30), RETRYABLE_OUTCOMES, st.integers(0, 2**32))
def test_dead_exactly_when_attempts_are_exhausted(policy, attempt, result, seed):
    decision = run(policy, attempt, *result, rng=random.Random(seed))
    assert (decision.outcome is Outcome.DEAD) == (attempt >= policy.max_attempts)
    assert (decision.delay is None) == (decision.outcome is Outcome.DEAD)


@given(policies, st.integers(1, 30), st.one_of(st.none(), st.text()), st.integers(0, 2**32))
def test_retry_after_delay_is_never_negative_nor_above_the_cap(policy, attempt, header, seed):
    decision = run(policy, attempt, 429, None, retry_after=header, rng=random.Random(seed))
    if decision.delay is not None and parse_retry_after(header, NOW) is not None:
        assert 0 <= decision.delay <= policy.max_retry_after


@given(st.integers(100, 699), st.booleans(), policies, st.integers(1, 30))
def test_every_status_gets_a_coherent_decision(status, body_ok, policy, attempt):
    decision = run(policy, attempt, status, None, body_ok=body_ok)
    assert decision.reason == classify(status, None, body_ok)
    assert (decision.outcome is Outcome.DELIVERED) == (decision.reason == "")
