"""Conditions: fire only when the lead's fields satisfy the operator's rules.

Rules in a group are ANDed; groups are alternatives, so the postback fires when any group
holds (seed 001 "+ Add Rule" / "+ Add Condition"); no groups at all means no condition.

Comparison, chosen so "payout > 10" and "lead_status != rejected" do what people mean:
- both sides finite decimals ("10.50", 10.5, "1e3"): compared as numbers;
- otherwise as trimmed, case-insensitive text, `<`/`>` lexicographically ("b" > "A");
- a blank field (absent, None, "" or spaces) equals only a blank rule value, so
  `status = ""` asks "is it empty" and `!=` is always the exact opposite of `=`;
  `<` and `>` are false on a blank field.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any, ClassVar, Literal

from pydantic import field_validator, model_validator

from .base import Decision, Facts, FilterModel, Skip, is_blank, lookup

Op = Literal["=", "!=", "<", ">"]
_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "=": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    ">": operator.gt,
}
_FIELD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*")
# Plain decimal notation only: Decimal() alone would also take "1_000", "NaN", "Infinity".
_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


def as_number(value: Any) -> Decimal | None:
    """`value` as a finite Decimal, or None when it is not a number (bools are not)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, float):
        value = repr(value)  # 10.5 -> "10.5", not its binary expansion
    if isinstance(value, int | Decimal):
        number = Decimal(value)
    elif isinstance(value, str) and _NUMBER.fullmatch(value.strip()):
        number = Decimal(value.strip())
    else:
        return None
    return number if number.is_finite() else None


def _text(value: Any) -> str:
    return str(value).strip().casefold()


class Rule(FilterModel):
    """`field op value`, e.g. payout > 10; `field` may be dotted (req.qs.aff)."""

    field: str
    op: Op
    value: str | int | float | Decimal

    @field_validator("field")
    @classmethod
    def _identifier(cls, field: str) -> str:
        if not _FIELD.fullmatch(field):
            raise ValueError(f"{field!r} is not a field name")
        return field

    @field_validator("value", mode="before")
    @classmethod
    def _bool_as_text(cls, value: Any) -> Any:
        return str(value).lower() if isinstance(value, bool) else value

    @model_validator(mode="after")
    def _order_needs_value(self) -> Rule:
        if self.op in ("<", ">") and is_blank(self.value):
            raise ValueError(f"{self.field} {self.op} needs a value to compare with")
        return self

    def holds(self, fields: Mapping[str, Any]) -> bool:
        actual = lookup(fields, self.field)
        if is_blank(actual) or is_blank(self.value):
            both_blank = is_blank(actual) and is_blank(self.value)
            return {"=": both_blank, "!=": not both_blank}.get(self.op, False)
        left, right = as_number(actual), as_number(self.value)
        if left is None or right is None:
            return _OPS[self.op](_text(actual), _text(self.value))
        return _OPS[self.op](left, right)

    def shown_value(self, fields: Mapping[str, Any]) -> str | None:
        actual = lookup(fields, self.field)
        return None if is_blank(actual) else str(actual).strip()

    def describe(self, fields: Mapping[str, Any]) -> str:
        """`payout 5 > 10`, with the lead's value between field and operator."""
        actual = self.shown_value(fields)
        return f"{self.field} {'(missing)' if actual is None else actual} {self.op} {self.value}"


class ConditionsFilter(FilterModel):
    """Skip the postback unless some group of rules holds for the lead."""

    name: ClassVar[str] = "conditions"

    enabled: bool = False
    groups: list[list[Rule]] = []

    @field_validator("groups")
    @classmethod
    def _no_empty_group(cls, groups: list[list[Rule]]) -> list[list[Rule]]:
        for number, group in enumerate(groups, 1):
            if not group:
                raise ValueError(f"condition group {number} has no rules")
        return groups

    def decide(self, facts: Facts, counts: Mapping[str, int] | None = None) -> Decision:
        fields = facts.fields
        if not self.groups:
            return Decision.allow(self.name, "no conditions")
        failures: list[Rule] = []
        for number, group in enumerate(self.groups, 1):
            failed = next((rule for rule in group if not rule.holds(fields)), None)
            if failed is None:
                held = " and ".join(rule.describe(fields) for rule in group)
                return Decision.allow(self.name, f"group {number} holds: {held}")
            failures.append(failed)
        why = "; ".join(f"{rule.describe(fields)} failed" for rule in failures)
        value = failures[0].shown_value(fields)
        return Decision.stop(Skip(self.name, f"conditions not met: {why}", value))
