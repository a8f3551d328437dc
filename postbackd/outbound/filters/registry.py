"""The whole filter config of a postback and the one place filters are run, in order.

The fields of `FilterConfig` are the registry: declared in evaluation order (cheap lead
checks first, caps last because only a fire that passes everything else may use up a
cap), so adding a filter is one module plus one line here.
"""

from __future__ import annotations

from collections.abc import Mapping

from .base import Decision, Facts, Filter, FilterModel, Skip
from .caps import CapsFilter
from .conditions import ConditionsFilter
from .hours import HoursFilter
from .state import StateFilter
from .zip import ZipFilter


class FilterConfig(FilterModel):
    """Posting filters of one outbound postback (seed 001); all off by default."""

    zip: ZipFilter = ZipFilter()
    state: StateFilter = StateFilter()
    hours: HoursFilter = HoursFilter()
    conditions: ConditionsFilter = ConditionsFilter()
    caps: CapsFilter = CapsFilter()

    def filters(self) -> list[Filter]:
        """Every filter, enabled or not, in evaluation order."""
        return [getattr(self, name) for name in type(self).model_fields]


FILTER_ORDER: tuple[str, ...] = tuple(FilterConfig.model_fields)


def evaluate(
    config: FilterConfig, facts: Facts, cap_counts: Mapping[str, int] | None = None
) -> list[Decision]:
    """One decision per enabled filter, in `FILTER_ORDER`: the dry run's "why (not)".

    Without `cap_counts` the caps are reported as not checked rather than guessed.
    """
    return [f.decide(facts, cap_counts) for f in config.filters() if f.enabled]


def first_skip(
    config: FilterConfig, facts: Facts, cap_counts: Mapping[str, int] | None = None
) -> Skip | None:
    """The skip the dispatcher records, or None when the postback may fire."""
    return next((d.skip for d in evaluate(config, facts, cap_counts) if d.skip), None)
