"""One thing that happened to a lead which outbound postbacks may react to."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from postbackd.model import Trigger


@dataclass(frozen=True, slots=True)
class Occurrence:
    trigger: Trigger
    org: dict[str, Any]
    lead: dict[str, Any]
    source: dict[str, Any] | None = None
    conversion: dict[str, Any] | None = None
    event: dict[str, Any] | None = None
    previous_status: str | None = None
    at: datetime | None = None

    @property
    def campaign_id(self) -> str:
        return self.lead["campaign_id"]

    @property
    def source_ids(self) -> set[str]:
        """The lead's traffic source and, for a conversion, the source it was posted for."""
        out = {self.lead.get("source_id")}
        if self.conversion:
            out.add(self.conversion.get("source_id"))
        return {s for s in out if s}
