"""Caps: calendar windows in the organization's timezone, keys for the store, the verdict."""

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from postbackd.outbound.filters import (
    CAP_KINDS,
    CapLimit,
    CapsFilter,
    Facts,
    Skip,
    cap_skip,
    next_windows,
    window_keys,
    windows,
)
from postbackd.outbound.filters.caps import EPOCH

NY = "America/New_York"


def utc(*args):
    return datetime(*args, tzinfo=UTC)


def caps(**limits):
    return CapsFilter(**{kind: CapLimit(enabled=True, limit=n) for kind, n in limits.items()})


# --- windows -------------------------------------------------------------------------------


def test_windows_on_an_ordinary_new_york_afternoon():
    now = utc(2026, 11, 25, 19, 30)  # Wednesday 14:30 EST
    assert windows(now, NY) == {
        "lifetime": EPOCH,
        "monthly": utc(2026, 11, 1, 4),  # Nov 1 00:00 was still EDT
        "weekly": utc(2026, 11, 23, 5),  # Monday 00:00 EST
        "daily": utc(2026, 11, 25, 5),
        "hourly": utc(2026, 11, 25, 19),
    }
    assert next_windows(now, NY) == {
        "monthly": utc(2026, 12, 1, 5),
        "weekly": utc(2026, 11, 30, 5),
        "daily": utc(2026, 11, 26, 5),
        "hourly": utc(2026, 11, 25, 20),
    }
    assert window_keys(now, NY) == {
        "lifetime": "lifetime",
        "monthly": "monthly:2026-11",
        "weekly": "weekly:2026-W48",
        "daily": "daily:2026-11-25",
        "hourly": "hourly:2026-11-25T14-05:00",
    }


def test_windows_returned_as_aware_utc():
    for start in windows(utc(2026, 6, 1, 12), "Asia/Tokyo").values():
        assert start.utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    ("now", "tz", "daily", "weekly", "monthly"),
    [
        # Sunday evening in New York is still last week there, Monday in UTC.
        (utc(2026, 11, 30, 3), NY, "daily:2026-11-29", "weekly:2026-W48", "monthly:2026-11"),
        (utc(2026, 11, 30, 3), "UTC", "daily:2026-11-30", "weekly:2026-W49", "monthly:2026-11"),
        # New Year's Eve in Los Angeles is January in UTC.
        (utc(2027, 1, 1, 5), "America/Los_Angeles", "daily:2026-12-31", "weekly:2026-W53", "monthly:2026-12"),
        (utc(2027, 1, 1, 5), "UTC", "daily:2027-01-01", "weekly:2026-W53", "monthly:2027-01"),
        # ISO week-year differs from the calendar year.
        (utc(2024, 12, 30, 12), "UTC", "daily:2024-12-30", "weekly:2025-W01", "monthly:2024-12"),
        # Tokyo is ahead: 20:00 UTC Sunday is Monday morning there.
        (utc(2026, 11, 29, 20), "Asia/Tokyo", "daily:2026-11-30", "weekly:2026-W49", "monthly:2026-11"),
    ],
)  # fmt: skip
def test_keys_follow_the_local_calendar(now, tz, daily, weekly, monthly):
    keys = window_keys(now, tz)
    assert (keys["daily"], keys["weekly"], keys["monthly"]) == (daily, weekly, monthly)


def test_half_hour_zone_hour_starts_on_the_local_hour():
    now = utc(2026, 11, 25, 9, 10)  # 14:40 IST (+05:30)
    assert windows(now, "Asia/Kolkata")["hourly"] == utc(2026, 11, 25, 8, 30)
    assert next_windows(now, "Asia/Kolkata")["hourly"] == utc(2026, 11, 25, 9, 30)
    assert window_keys(now, "Asia/Kolkata")["hourly"] == "hourly:2026-11-25T14+05:30"


# --- DST -----------------------------------------------------------------------------------


def test_spring_forward_day_is_23_hours_from_local_midnight():
    now = utc(2026, 3, 8, 7, 30)  # 03:30 EDT, an hour after the clocks jumped
    assert windows(now, NY)["daily"] == utc(2026, 3, 8, 5)  # 00:00 EST
    assert next_windows(now, NY)["daily"] == utc(2026, 3, 9, 4)  # 00:00 EDT
    assert windows(now, NY)["hourly"] == utc(2026, 3, 8, 7)
    assert window_keys(now, NY)["hourly"] == "hourly:2026-03-08T03-04:00"


def test_spring_forward_hour_before_the_jump_ends_at_the_jump():
    now = utc(2026, 3, 8, 6, 59)  # 01:59 EST; next the clock reads 03:00 EDT
    assert windows(now, NY)["hourly"] == utc(2026, 3, 8, 6)
    assert next_windows(now, NY)["hourly"] == utc(2026, 3, 8, 7)
    assert window_keys(now, NY)["hourly"] == "hourly:2026-03-08T01-05:00"


def test_fall_back_repeated_hour_is_two_windows_with_two_keys():
    first, second = utc(2026, 11, 1, 5, 30), utc(2026, 11, 1, 6, 30)  # 01:30 EDT, 01:30 EST
    assert window_keys(first, NY)["hourly"] == "hourly:2026-11-01T01-04:00"
    assert window_keys(second, NY)["hourly"] == "hourly:2026-11-01T01-05:00"
    assert windows(first, NY)["hourly"] == utc(2026, 11, 1, 5)
    assert windows(second, NY)["hourly"] == utc(2026, 11, 1, 6)
    assert next_windows(first, NY)["hourly"] == utc(2026, 11, 1, 6)
    for now in (first, second):
        assert window_keys(now, NY)["daily"] == "daily:2026-11-01"
        assert windows(now, NY)["daily"] == utc(2026, 11, 1, 4)  # 00:00 EDT
        assert next_windows(now, NY)["daily"] == utc(2026, 11, 2, 5)  # 25 hours later


def test_skipped_midnight_starts_the_day_at_the_jump():
    # Santiago moved clocks from 00:00 (-04) to 01:00 (-03) on 2022-09-11.
    now = utc(2022, 9, 11, 15)
    start = windows(now, "America/Santiago")["daily"]
    assert start == utc(2022, 9, 11, 4)
    assert start.astimezone(Facts({}, now, "America/Santiago").local_now.tzinfo).hour == 1


LORD_HOWE, CHATHAM = "Australia/Lord_Howe", "Pacific/Chatham"


@pytest.mark.parametrize(
    ("tz", "now", "start", "end", "key"),
    [
        # Lord Howe 2026-04-05 02:00 (+11) -> 01:30 (+10:30): two 01 hours, 60 and 30 minutes.
        (LORD_HOWE, "2026-04-04 14:45", "2026-04-04 14:00", "2026-04-04 15:00", "2026-04-05T01+11:00"),
        (LORD_HOWE, "2026-04-04 15:15", "2026-04-04 15:00", "2026-04-04 15:30", "2026-04-05T01+10:30"),
        # Chatham 2022-04-03 03:45 (+13:45) -> 02:45 (+12:45): the second 02 hour is 15 minutes.
        (CHATHAM, "2022-04-02 14:07", "2022-04-02 14:00", "2022-04-02 14:15", "2022-04-03T02+12:45"),
        (CHATHAM, "2022-04-02 13:50", "2022-04-02 13:15", "2022-04-02 14:00", "2022-04-03T03+13:45"),
        # Chatham 2022-09-25 02:45 (+12:45) -> 03:45 (+13:45): hour 03 starts at the jump.
        (CHATHAM, "2022-09-24 14:07", "2022-09-24 14:00", "2022-09-24 14:15", "2022-09-25T03+13:45"),
        (CHATHAM, "2022-09-24 13:59", "2022-09-24 13:15", "2022-09-24 14:00", "2022-09-25T02+12:45"),
    ],
)  # fmt: skip
def test_clock_change_inside_an_hour_starts_a_new_hourly_window(tz, now, start, end, key):
    now, start, end = (datetime.fromisoformat(t).replace(tzinfo=UTC) for t in (now, start, end))
    assert windows(now, tz)["hourly"] == start
    assert next_windows(now, tz)["hourly"] == end
    assert window_keys(now, tz)["hourly"] == f"hourly:{key}"


def test_naive_now_and_unknown_timezone_are_refused():
    with pytest.raises(ValueError, match="naive"):
        windows(datetime(2026, 1, 1), NY)
    with pytest.raises(ValueError, match="unknown timezone 'Mars/Olympus'"):
        window_keys(utc(2026, 1, 1), "Mars/Olympus")


ZONES = [
    "UTC",
    NY,
    "Europe/London",
    "America/Santiago",
    "America/Havana",
    "America/St_Johns",
    "Australia/Lord_Howe",
    "Asia/Kolkata",
    "Asia/Kathmandu",
    "Pacific/Chatham",
]
instants = st.datetimes(
    min_value=datetime(1995, 1, 1), max_value=datetime(2060, 1, 1), timezones=st.just(UTC)
)


@given(instants, st.sampled_from(ZONES))
def test_now_lies_in_its_window_and_keys_change_exactly_at_the_edge(now, tz):
    starts, ends, keys = windows(now, tz), next_windows(now, tz), window_keys(now, tz)
    for kind in ("monthly", "weekly", "daily", "hourly"):
        assert starts[kind] <= now < ends[kind], kind
        assert window_keys(starts[kind], tz)[kind] == keys[kind]
        assert window_keys(ends[kind] - timedelta(microseconds=1), tz)[kind] == keys[kind]
        assert window_keys(ends[kind], tz)[kind] != keys[kind]
    assert starts["lifetime"] == EPOCH
    assert starts["hourly"] >= starts["daily"] >= max(starts["weekly"], starts["monthly"])


@given(instants, st.sampled_from(ZONES))
def test_day_windows_start_at_local_midnight_unless_it_was_skipped(now, tz):
    local_now = Facts({}, now, tz).local_now
    for kind in ("monthly", "weekly", "daily"):
        local = windows(now, tz)[kind].astimezone(local_now.tzinfo)
        skipped = local.utcoffset() != (local - timedelta(microseconds=1)).utcoffset()
        assert local.time().hour == 0 or skipped
    assert windows(now, tz)["weekly"].astimezone(local_now.tzinfo).weekday() == 0


# --- limits and the verdict ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("limits", "counts", "skip"),
    [
        ({"daily": 10}, {"daily": 9}, None),
        ({"daily": 10}, {"daily": 10}, Skip("caps", "daily cap 10 reached", "10")),
        ({"daily": 10}, {"daily": 11}, Skip("caps", "daily cap 10 reached", "10")),
        ({"daily": 10}, {}, None),
        ({"daily": 0}, {}, Skip("caps", "daily cap 0 reached", "0")),
        ({"hourly": 1}, {"hourly": 1}, Skip("caps", "hourly cap 1 reached", "1")),
        ({"lifetime": 100}, {"lifetime": 100}, Skip("caps", "lifetime cap 100 reached", "100")),
        ({"monthly": 5}, {"monthly": 4, "daily": 99}, None),
        ({"weekly": 5, "daily": 2}, {"weekly": 4, "daily": 2}, Skip("caps", "daily cap 2 reached", "2")),
        # Several reached: the longest window is reported, it stays shut longest.
        ({"hourly": 1, "monthly": 3}, {"hourly": 1, "monthly": 3}, Skip("caps", "monthly cap 3 reached", "3")),
        ({}, {"daily": 1000}, None),
    ],
)  # fmt: skip
def test_cap_skip(limits, counts, skip):
    assert cap_skip(caps(**limits), counts) == skip


def test_disabled_cap_is_ignored_whatever_its_limit():
    config = CapsFilter(daily=CapLimit(enabled=False, limit=0))
    assert not config.enabled
    assert cap_skip(config, {"daily": 5}) is None


def test_limits_and_counted_windows_cover_enabled_caps_only():
    config = caps(hourly=2, lifetime=50)
    assert config.limits() == {"lifetime": 50, "hourly": 2}
    assert config.counted_windows(utc(2026, 11, 25, 19, 30), NY) == {
        "lifetime": "lifetime",
        "hourly": "hourly:2026-11-25T14-05:00",
    }


def test_decide():
    config, now = caps(daily=10, hourly=2), Facts({}, utc(2026, 11, 25, 19), NY)
    under = config.decide(now, {"daily": 3})
    assert (under.passed, under.detail) == (True, "under caps: daily 3/10, hourly 0/2")
    over = config.decide(now, {"daily": 3, "hourly": 2})
    assert over.skip == Skip("caps", "hourly cap 2 reached", "2")
    assert not over.passed
    unchecked = config.decide(now, None)
    assert (unchecked.passed, unchecked.detail) == (True, "caps not checked: no fire counts given")


@pytest.mark.parametrize(
    ("payload", "error"),
    [
        ({"daily": {"enabled": True, "limit": -1}}, "greater than or equal to 0"),
        ({"daily": {"enabled": True, "limit": True}}, "limit must be a number"),
        ({"daily": {"enabled": True, "limit": 1.5}}, "fractional part"),
        ({"daily": {"enabled": True, "limit": "ten"}}, "valid integer"),
        ({"daily": {"enabled": True, "max": 3}}, "Extra inputs"),
        ({"yearly": {"enabled": True, "limit": 3}}, "Extra inputs"),
    ],
)
def test_bad_caps_are_refused(payload, error):
    with pytest.raises(ValidationError, match=error):
        CapsFilter.model_validate(payload)


def test_limit_from_a_form_string_is_accepted():
    assert CapsFilter.model_validate({"daily": {"enabled": True, "limit": "10"}}).limits() == {
        "daily": 10
    }


limits = st.dictionaries(st.sampled_from(CAP_KINDS), st.integers(0, 20))
counts = st.dictionaries(st.sampled_from(CAP_KINDS), st.integers(0, 25))


@given(limits, counts)
def test_skipped_iff_some_enabled_count_reached_its_limit(limits, counts):
    reached = any(counts.get(kind, 0) >= limit for kind, limit in limits.items())
    assert (cap_skip(caps(**limits), counts) is not None) is reached
