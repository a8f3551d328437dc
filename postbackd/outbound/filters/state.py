"""Exclude U.S. states: the postback does not fire for a lead from a listed state.

Operators may type codes or full names; the config stores USPS codes so the saved list
reads the same however it was entered, and an unknown name is refused instead of never
matching.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from pydantic import field_validator

from .base import Decision, Facts, FilterModel, Skip, is_blank
from .us_states import state_code

STATE_FIELD = "state"


class StateFilter(FilterModel):
    """Skip the postback when the lead's `state` (code or name) is in `states`.

    A lead with no state, or one that names no U.S. state, passes.
    """

    name: ClassVar[str] = "state"

    enabled: bool = False
    states: list[str] = []

    @field_validator("states")
    @classmethod
    def _to_codes(cls, states: list[str]) -> list[str]:
        codes = []
        for entry in states:
            code = state_code(entry)
            if code is None:
                raise ValueError(f"{entry!r} is not a U.S. state, DC or territory")
            codes.append(code)
        return list(dict.fromkeys(codes))

    def decide(self, facts: Facts, counts: Mapping[str, int] | None = None) -> Decision:
        raw: Any = facts.fields.get(STATE_FIELD)
        if is_blank(raw):
            return Decision.allow(self.name, "lead has no state; not excluded")
        code = state_code(str(raw))
        if code is None:
            return Decision.allow(self.name, f"state {str(raw).strip()!r} is not a U.S. state")
        if code in self.states:
            return Decision.stop(Skip(self.name, f"state {code} excluded", code))
        return Decision.allow(self.name, f"state {code} not excluded")
