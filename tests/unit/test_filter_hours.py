"""Hours: per-weekday windows on the organization's wall clock, overnight and DST."""

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from postbackd.outbound.filters import WEEKDAYS, DayWindow, Facts, HoursFilter, Skip

NY = "America/New_York"


def hours(**days):
    return HoursFilter(enabled=True, days={d: {"start": s, "end": e} for d, (s, e) in days.items()})


def at(local: str, tz: str = NY) -> Facts:
    """Facts at a New York wall time like "2026-11-27 22:00" (a Friday)."""
    naive = datetime.fromisoformat(local)
    return Facts({}, naive.replace(tzinfo=ZoneInfo(tz)).astimezone(UTC), tz)


OFFICE = hours(**{d: ("09:00", "18:00") for d in ("mon", "tue", "wed", "thu", "fri")})
FRIDAY_NIGHT = hours(fri=("22:00", "02:00"), sat=("10:00", "12:00"))
SUNDAY_ALL_DAY = hours(sun=("00:00", "00:00"))
SUNDAY_INTO_MONDAY = hours(sun=("23:00", "01:00"))
UNTIL_MIDNIGHT = hours(wed=("09:00", "00:00"))


@pytest.mark.parametrize(
    ("config", "local", "open_"),
    [
        (OFFICE, "2026-11-25 08:59:59", False),  # Wednesday
        (OFFICE, "2026-11-25 09:00", True),
        (OFFICE, "2026-11-25 12:00", True),
        (OFFICE, "2026-11-25 17:59:59", True),
        (OFFICE, "2026-11-25 18:00", False),  # end is exclusive
        (OFFICE, "2026-11-28 12:00", False),  # Saturday: no hours
        (OFFICE, "2026-11-29 12:00", False),  # Sunday
        (FRIDAY_NIGHT, "2026-11-27 21:59", False),
        (FRIDAY_NIGHT, "2026-11-27 22:00", True),
        (FRIDAY_NIGHT, "2026-11-27 23:59:59", True),
        (FRIDAY_NIGHT, "2026-11-28 00:00", True),  # Saturday, Friday's window still open
        (FRIDAY_NIGHT, "2026-11-28 01:00", True),
        (FRIDAY_NIGHT, "2026-11-28 01:59:59", True),
        (FRIDAY_NIGHT, "2026-11-28 02:00", False),
        (FRIDAY_NIGHT, "2026-11-28 09:59", False),
        (FRIDAY_NIGHT, "2026-11-28 10:30", True),  # Saturday's own window
        (FRIDAY_NIGHT, "2026-11-28 22:30", False),  # Saturday has no overnight
        (FRIDAY_NIGHT, "2026-11-26 23:00", False),  # Thursday
        (FRIDAY_NIGHT, "2026-11-29 01:00", False),  # Sunday: Saturday's window is not overnight
        (SUNDAY_ALL_DAY, "2026-11-29 00:00", True),
        (SUNDAY_ALL_DAY, "2026-11-29 23:59:59", True),
        (SUNDAY_ALL_DAY, "2026-11-30 00:00", False),
        (SUNDAY_ALL_DAY, "2026-11-28 23:59:59", False),
        (SUNDAY_INTO_MONDAY, "2026-11-30 00:30", True),  # Monday wraps back to Sunday
        (SUNDAY_INTO_MONDAY, "2026-11-30 01:00", False),
        (SUNDAY_INTO_MONDAY, "2026-11-29 00:30", False),  # Saturday had no window
        (UNTIL_MIDNIGHT, "2026-11-25 23:59:59", True),
        (UNTIL_MIDNIGHT, "2026-11-26 00:00", False),
        (UNTIL_MIDNIGHT, "2026-11-25 08:00", False),
        (hours(), "2026-11-25 12:00", False),  # enabled with no days never fires
    ],
)
def test_open_at(config, local, open_):
    assert config.decide(at(local)).passed is open_


def test_timezone_is_the_organizations():
    facts = Facts({}, datetime(2026, 11, 25, 15, tzinfo=UTC), NY)  # 10:00 in New York
    assert OFFICE.decide(facts).passed
    assert not OFFICE.decide(Facts({}, facts.now, "Asia/Tokyo")).passed  # 00:00 Thursday
    assert OFFICE.decide(Facts({}, facts.now, "Europe/London")).passed  # 15:00


def test_skip_names_the_day_window_and_local_time():
    skip = OFFICE.decide(at("2026-11-25 18:30")).skip
    reason = "outside posting hours (wed 09:00–18:00) at wed 18:30 America/New_York"
    assert skip == Skip("hours", reason, "wed 18:30")
    saturday = OFFICE.decide(at("2026-11-28 10:00")).skip
    assert saturday is not None
    assert saturday.reason.startswith("outside posting hours (none on sat)")
    inside = OFFICE.decide(at("2026-11-25 10:00"))
    assert inside.detail == "inside posting hours (wed 10:00 America/New_York)"


def minutes_open(config, start_utc, hours_long):
    steps = (start_utc + timedelta(minutes=m) for m in range(hours_long * 60))
    return sum(config.decide(Facts({}, t, NY)).passed for t in steps)


def test_spring_forward_window_is_open_only_until_the_clock_jumps():
    config = hours(sun=("01:30", "03:00"))  # 2026-03-08: 02:00 EST -> 03:00 EDT
    assert config.decide(at("2026-03-08 01:29")).passed is False
    assert config.decide(at("2026-03-08 01:45")).passed is True
    assert config.decide(Facts({}, datetime(2026, 3, 8, 7, tzinfo=UTC), NY)).passed is False
    assert minutes_open(config, datetime(2026, 3, 8, 4, tzinfo=UTC), 6) == 30


def test_fall_back_repeated_hour_is_open_on_both_passes():
    config = hours(sun=("01:00", "02:00"))  # 2026-11-01: 02:00 EDT -> 01:00 EST
    first = Facts({}, datetime(2026, 11, 1, 5, 30, tzinfo=UTC), NY)  # 01:30 EDT
    second = Facts({}, datetime(2026, 11, 1, 6, 30, tzinfo=UTC), NY)  # 01:30 EST
    assert config.decide(first).passed and config.decide(second).passed
    assert minutes_open(config, datetime(2026, 11, 1, 3, tzinfo=UTC), 6) == 120


def test_day_names_are_normalized():
    config = HoursFilter.model_validate(
        {
            "enabled": True,
            "days": {
                "Monday": {"start": "09:00", "end": "17:00"},
                " TUE ": {"start": "09:00:00", "end": "17:00"},
                "sun": {"start": time(8), "end": time(8)},
            },
        }
    )
    assert list(config.days) == ["mon", "tue", "sun"]
    assert config.days["mon"] == DayWindow(start=time(9), end=time(17))


@pytest.mark.parametrize(
    ("days", "error"),
    [
        ({"funday": {"start": "09:00", "end": "17:00"}}, "'funday' is not a weekday"),
        ({"mon": {"start": "09:00", "end": "17:00"}, "Monday": {"start": "01:00", "end": "02:00"}},
         "'Monday' repeats 'mon'"),
        ({"mon": {"start": "25:00", "end": "17:00"}}, "valid time"),
        ({"mon": {"start": "09:00"}}, "Field required"),
        ({"mon": {"start": "09:00", "end": "17:00", "tz": "UTC"}}, "Extra inputs"),
        ({"mon": {"start": "09:00+02:00", "end": "17:00"}}, "wall time without offset"),
        ({3: {"start": "09:00", "end": "17:00"}}, "3 is not a weekday"),
    ],
)  # fmt: skip
def test_bad_days_are_refused(days, error):
    with pytest.raises(ValidationError, match=error):
        HoursFilter.model_validate({"enabled": True, "days": days})


local_instants = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2060, 1, 1))
times = st.times()


@given(local_instants)
def test_every_day_all_day_is_always_open(local):
    config = hours(**{d: ("07:15", "07:15") for d in WEEKDAYS})
    assert config.open_at(local)


@given(local_instants, st.sampled_from(WEEKDAYS), times, times)
def test_a_window_is_its_same_day_part_plus_its_next_day_part(local, day, start, end):
    config = HoursFilter(enabled=True, days={day: DayWindow(start=start, end=end)})
    index, t = WEEKDAYS.index(day), local.time()
    if start == end:
        expected = local.weekday() == index
    elif start < end:
        expected = local.weekday() == index and start <= t < end
    else:
        today = local.weekday() == index and t >= start
        expected = today or (local.weekday() == (index + 1) % 7 and t < end)
    assert config.open_at(local) is expected
