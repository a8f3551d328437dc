"""What every posting filter sees (`Facts`), says (`Decision`) and records (`Skip`).

Filters are pure: they get the clock and the organization's timezone inside `Facts` and
the cap counts from the caller, so the dispatcher and the dry run reach the same verdict.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar, Literal, Protocol
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict

# The skip-reason vocabulary: a skipped delivery stores one of these as its filter code.
FilterName = Literal["zip", "state", "hours", "conditions", "caps"]


@dataclass(frozen=True, slots=True)
class Skip:
    """Why a postback did not fire: the filter code, a sentence for people, the value."""

    filter: str
    reason: str
    value: str | None = None


@dataclass(frozen=True, slots=True)
class Decision:
    """One filter's verdict, passed or not, with a detail the dry run can show."""

    filter: str
    passed: bool
    skip: Skip | None
    detail: str

    @classmethod
    def allow(cls, filter: str, detail: str) -> Decision:
        return cls(filter, True, None, detail)

    @classmethod
    def stop(cls, skip: Skip) -> Decision:
        return cls(skip.filter, False, skip, skip.reason)


@dataclass(frozen=True, slots=True)
class Facts:
    """Flattened lead + event + money fields, the current instant and the org's timezone.

    `now` must be aware (any offset; filters convert); `timezone` is an IANA name and is
    checked here so a typo fails when the facts are built, not inside one filter.
    """

    fields: Mapping[str, Any]
    now: datetime
    timezone: str

    def __post_init__(self) -> None:
        require_aware(self.now)
        zone(self.timezone)

    @property
    def local_now(self) -> datetime:
        """`now` on the organization's wall clock (fold set on a repeated hour)."""
        return self.now.astimezone(zone(self.timezone))


class FilterModel(BaseModel):
    """Base of every filter config: unknown keys are errors, configs are values."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Filter(Protocol):
    """What the registry needs from a filter; `counts` matters only to caps."""

    name: ClassVar[str]

    @property
    def enabled(self) -> bool: ...

    def decide(self, facts: Facts, counts: Mapping[str, int] | None) -> Decision: ...


def zone(name: str) -> ZoneInfo:
    """The IANA zone `name`, or a ValueError that names it."""
    try:
        return ZoneInfo(name)
    except (KeyError, ValueError, OSError, TypeError) as exc:
        raise ValueError(f"unknown timezone {name!r}") from exc


def require_aware(now: datetime) -> None:
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError(f"{now!r} is naive; filters need an aware datetime")


def is_blank(value: Any) -> bool:
    """None and whitespace-only strings count as "no value" for every filter."""
    return value is None or (isinstance(value, str) and not value.strip())


def lookup(fields: Mapping[str, Any], path: str) -> Any:
    """`fields[path]`, else walk a dotted path through nested mappings; None if absent."""
    if path in fields:
        return fields[path]
    node: Any = fields
    for part in path.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node
