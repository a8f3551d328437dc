"""Posting filters (seed 001): decide, purely, whether an outbound postback may fire.

    FilterConfig   zip, state, hours, conditions, caps — each a module of its own
    Facts          lead/event/money fields, now, the organization's timezone
    evaluate()     one Decision per enabled filter, for the dry run
    first_skip()   the Skip a delivery records, or None

Caps are counted by the caller (see `caps.window_keys` / `CapsFilter.counted_windows`).
"""

from .base import Decision, Facts, FilterName, Skip
from .caps import CAP_KINDS, CapLimit, CapsFilter, cap_skip, next_windows, window_keys, windows
from .conditions import ConditionsFilter, Rule
from .hours import WEEKDAYS, DayWindow, HoursFilter
from .registry import FILTER_ORDER, FilterConfig, evaluate, first_skip
from .state import StateFilter
from .zip import ZipFilter

__all__ = [
    "CAP_KINDS",
    "FILTER_ORDER",
    "WEEKDAYS",
    "CapLimit",
    "CapsFilter",
    "ConditionsFilter",
    "DayWindow",
    "Decision",
    "Facts",
    "FilterConfig",
    "FilterName",
    "HoursFilter",
    "Rule",
    "Skip",
    "StateFilter",
    "ZipFilter",
    "cap_skip",
    "evaluate",
    "first_skip",
    "next_windows",
    "window_keys",
    "windows",
]
