"""Caps: how many times a postback may fire per lifetime, month, week, day and hour.

Caps count fires, not leads (seed 001). The store counts; this module says which calendar
window "now" falls in, in the organization's timezone, and whether a count reached its
limit. Windows start at local midnight (weeks on Monday, months on the 1st) and at the
top of the local hour.

DST: a day whose midnight does not exist starts when the clock jumps. An hourly window is
one local clock hour at one UTC offset, so the repeated fall-back hour is two windows with
two keys ("hourly:2026-11-01T01-04:00", then "...T01-05:00"), and a clock change inside
an hour (Lord Howe's half hour, Chatham's 02:45) starts a new window at the change.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Any, ClassVar

from pydantic import Field, field_validator, model_validator

from .base import Decision, Facts, FilterModel, Skip, require_aware, zone

# Longest window first: when several caps are reached, report the one shut longest.
CAP_KINDS = ("lifetime", "monthly", "weekly", "daily", "hourly")
# The lifetime window never resets; it starts at a fixed epoch.
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Every UTC offset in use is a multiple of 15 minutes, so window edges fall on this grid.
_GRID = timedelta(minutes=15)


class CapLimit(FilterModel):
    """One cap: when enabled, at most `limit` fires per window; 0 means never fire."""

    enabled: bool = False
    limit: int = Field(0, ge=0)

    @field_validator("limit", mode="before")
    @classmethod
    def _no_bool(cls, value: Any) -> Any:
        if isinstance(value, bool):
            raise ValueError("limit must be a number, not true/false")
        return value


class CapsFilter(FilterModel):
    """The five caps of seed 001; the filter is on when any cap is."""

    name: ClassVar[str] = "caps"

    lifetime: CapLimit = CapLimit()
    monthly: CapLimit = CapLimit()
    weekly: CapLimit = CapLimit()
    daily: CapLimit = CapLimit()
    hourly: CapLimit = CapLimit()

    @model_validator(mode="before")
    @classmethod
    def _global_is_lifetime(cls, data: Any) -> Any:
        """Seed 001 calls the lifetime cap "Global Cap"; accept that name on input."""
        if isinstance(data, dict) and "global" in data:
            if "lifetime" in data:
                raise ValueError("give either 'global' or 'lifetime', not both")
            data = {("lifetime" if k == "global" else k): v for k, v in data.items()}
        return data

    @property
    def enabled(self) -> bool:
        return bool(self.limits())

    def limits(self) -> dict[str, int]:
        """Enabled cap kind -> limit, longest window first."""
        caps = {kind: getattr(self, kind) for kind in CAP_KINDS}
        return {kind: cap.limit for kind, cap in caps.items() if cap.enabled}

    def counted_windows(self, now: datetime, tz: str) -> dict[str, str]:
        """The window keys the caller must count fires in, for the enabled caps only."""
        keys = window_keys(now, tz)
        return {kind: keys[kind] for kind in self.limits()}

    def decide(self, facts: Facts, counts: Mapping[str, int] | None) -> Decision:
        if counts is None:
            return Decision.allow(self.name, "caps not checked: no fire counts given")
        skip = cap_skip(self, counts)
        if skip is not None:
            return Decision.stop(skip)
        used = (f"{kind} {counts.get(kind, 0)}/{limit}" for kind, limit in self.limits().items())
        return Decision.allow(self.name, "under caps: " + ", ".join(used))


def cap_skip(config: CapsFilter, counts: Mapping[str, int]) -> Skip | None:
    """The first enabled cap whose count reached its limit; a kind absent from counts is 0."""
    for kind, limit in config.limits().items():
        if counts.get(kind, 0) >= limit:
            return Skip("caps", f"{kind} cap {limit} reached", str(limit))
    return None


def windows(now: datetime, tz: str) -> dict[str, datetime]:
    """Start of the window containing `now`, per cap kind, as aware UTC datetimes."""
    local = _local(now, tz)
    return {kind: _start(kind, local) for kind in CAP_KINDS}


def next_windows(now: datetime, tz: str) -> dict[str, datetime]:
    """Start of the following window (when the cap resets); lifetime never resets."""
    local = _local(now, tz)
    day, zone_ = local.date(), local.tzinfo
    month = date(day.year + day.month // 12, day.month % 12 + 1, 1)
    return {
        "monthly": _midnight(month, zone_),
        "weekly": _midnight(day + timedelta(days=7 - day.weekday()), zone_),
        "daily": _midnight(day + timedelta(days=1), zone_),
        "hourly": _next_hour(local),
    }


def window_keys(now: datetime, tz: str) -> dict[str, str]:
    """Stable per-window keys for the store, e.g. "daily:2026-11-25", "weekly:2026-W48"."""
    local = _local(now, tz)
    day, (iso_year, iso_week, _) = local.date(), local.date().isocalendar()
    return {
        "lifetime": "lifetime",
        "monthly": f"monthly:{day:%Y-%m}",
        "weekly": f"weekly:{iso_year}-W{iso_week:02d}",
        "daily": f"daily:{day.isoformat()}",
        "hourly": "hourly:" + local.isoformat(timespec="hours"),  # hour and its offset
    }


def _local(now: datetime, tz: str) -> datetime:
    require_aware(now)
    return now.astimezone(zone(tz))


def _start(kind: str, local: datetime) -> datetime:
    """Start, in UTC, of the `kind` window containing the organization-time `local`."""
    if kind == "lifetime":
        return EPOCH
    if kind == "hourly":
        return _hour_start(local)
    day = local.date()
    if kind == "weekly":
        day -= timedelta(days=day.weekday())
    elif kind == "monthly":
        day = day.replace(day=1)
    return _midnight(day, local.tzinfo)


def _midnight(day: date, zone_: tzinfo | None) -> datetime:
    """Local 00:00 of `day` in UTC; fold=0 maps a skipped midnight to the jump instant."""
    return datetime.combine(day, time(), tzinfo=zone_).astimezone(UTC)


def _hour_start(local: datetime) -> datetime:
    """First instant showing `local`'s clock hour at `local`'s UTC offset.

    The top of the hour, unless the offset changed since then: then the change itself.
    """
    now = local.astimezone(UTC)
    start = now - (local - local.replace(minute=0, second=0, microsecond=0))  # wall-clock delta
    probe = start
    while probe <= now:  # at most four probes
        if probe.astimezone(local.tzinfo).utcoffset() != local.utcoffset():
            start = probe + _GRID
        probe += _GRID
    return start


def _next_hour(local: datetime) -> datetime:
    """Start of the hourly window after `local`'s: the first grid instant outside it."""
    start = _hour_start(local)
    probe = start + _GRID
    while _hour_start(probe.astimezone(local.tzinfo)) == start:
        probe += _GRID
    return probe
