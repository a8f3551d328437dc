"""Hours: fire only inside per-weekday windows of the organization's local wall time.

Partners say "9 AM to 6 PM, Monday to Friday" and mean their clock, so windows are read
on the local wall clock: on a spring-forward day a 01:30–03:00 window is open only
01:30–02:00 (then the clock reads 03:00), and on a fall-back day a window covering
01:00–02:00 is open during both passes of that hour.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, time
from typing import Any, ClassVar, Literal

from pydantic import field_validator

from .base import Decision, Facts, FilterModel, Skip

Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_FULL_NAMES = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_DAY_NAMES = dict(zip(WEEKDAYS, WEEKDAYS, strict=True)) | dict(
    zip(_FULL_NAMES, WEEKDAYS, strict=True)
)


class DayWindow(FilterModel):
    """Firing hours of one weekday, `start` inclusive, `end` exclusive.

    start == end: open all day. end < start: overnight, open from `start` to midnight and
    on the next day until `end` (fri 22:00–02:00 allows Saturday 01:00).
    """

    start: time
    end: time

    @field_validator("start", "end")
    @classmethod
    def _wall_time(cls, value: time) -> time:
        if value.tzinfo is not None:
            raise ValueError("use a wall time without offset; the organization timezone applies")
        return value

    def opens_same_day(self, t: time) -> bool:
        if self.start == self.end:
            return True
        if self.start < self.end:
            return self.start <= t < self.end
        return t >= self.start

    def spills_into_next_day(self, t: time) -> bool:
        return self.end < self.start and t < self.end

    def __str__(self) -> str:
        return f"{self.start:%H:%M}–{self.end:%H:%M}"


class HoursFilter(FilterModel):
    """Skip the postback outside `days`; a weekday absent from `days` has no firing hours."""

    name: ClassVar[str] = "hours"

    enabled: bool = False
    days: dict[Weekday, DayWindow] = {}

    @field_validator("days", mode="before")
    @classmethod
    def _short_names(cls, days: Any) -> Any:
        if not isinstance(days, Mapping):
            return days
        out: dict[Any, Any] = {}
        for key, window in days.items():
            day = _DAY_NAMES.get(key.strip().casefold()) if isinstance(key, str) else None
            if day is None:
                raise ValueError(f"{key!r} is not a weekday (use mon..sun or full names)")
            if day in out:
                raise ValueError(f"{key!r} repeats {day!r}")
            out[day] = window
        return out

    def open_at(self, local: datetime) -> bool:
        """Whether the local wall time `local` falls in today's window or yesterday's overnight."""
        t = local.time()
        today = self.days.get(WEEKDAYS[local.weekday()])
        yesterday = self.days.get(WEEKDAYS[local.weekday() - 1])
        if today is not None and today.opens_same_day(t):
            return True
        return yesterday is not None and yesterday.spills_into_next_day(t)

    def decide(self, facts: Facts, counts: Mapping[str, int] | None = None) -> Decision:
        local = facts.local_now
        day = WEEKDAYS[local.weekday()]
        at = f"{day} {local:%H:%M}"
        where = f"{at} {facts.timezone}"
        if self.open_at(local):
            return Decision.allow(self.name, f"inside posting hours ({where})")
        today = self.days.get(day)
        hours = f"{day} {today}" if today else f"none on {day}"
        return Decision.stop(Skip(self.name, f"outside posting hours ({hours}) at {where}", at))
