"""Shared vocabulary: states, types and the lead's well-known fields."""

from __future__ import annotations

import enum
from typing import Any

from pydantic import BaseModel, ConfigDict, model_validator


class EventType(enum.StrEnum):
    CONVERSION = "conversion"
    TRACKING = "tracking"


class SourceType(enum.StrEnum):
    ORGANIC = "organic"
    CUSTOM_SOURCE = "custom_source"
    MARKETING_PARTNER = "marketing_partner"
    MEDIA_CHANNEL = "media_channel"
    AFFILIATE = "affiliate"


class ConversionStatus(enum.StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"
    HOLD = "hold"
    PROCESSING = "processing"
    CANCELLED = "cancelled"
    TRASH = "trash"


class LeadStatus(enum.StrEnum):
    NEW = "new"
    COMPLETED = "completed"
    SOLD = "sold"
    UNSOLD = "unsold"


class Trigger(enum.StrEnum):
    """What makes an outbound postback fire (SPEC 2)."""

    SESSION_START = "session_start"
    FORM_COMPLETE = "form_complete"
    DISTRIBUTION_COMPLETE = "distribution_complete"
    EVENT = "event"
    CONVERSION_STATUS = "conversion_status"
    MANUAL = "manual"


class DeliveryState(enum.StrEnum):
    PENDING = "pending"
    SENDING = "sending"
    RETRYING = "retrying"
    DELIVERED = "delivered"
    DEAD = "dead"
    SKIPPED = "skipped"


FINAL_STATES = frozenset({DeliveryState.DELIVERED, DeliveryState.DEAD, DeliveryState.SKIPPED})

SUB_FIELDS = tuple(f"sub{i}" for i in range(1, 6))
ADV_FIELDS = tuple(f"adv{i}" for i in range(1, 6))
UTM_FIELDS = tuple(
    f"utm_{n}"
    for n in (
        "source",
        "medium",
        "campaign",
        "adgroup",
        "matchtype",
        "term",
        "content",
        "creative",
        "placement",
    )
)
# Tracking ids kept as columns: they are searched and filtered on.
TRACKING_FIELDS = SUB_FIELDS + ADV_FIELDS + UTM_FIELDS + ("external_click_id",)
# Money and consent columns of a lead, updated by inbound events.
LEAD_NUMBER_FIELDS = ("cost", "adspend", "min_price")
COST_OPERATIONS = {
    "add": "add",
    "substract": "subtract",
    "subtract": "subtract",
    "override": "override",
}

# Fixed offsets exactly as seed 000 lists them (standard time, no DST).
CONVERSION_TIMEZONES = {
    "PST": -8,
    "EST": -5,
    "CST": -6,
    "MST": -7,
    "AKST": -9,
    "SST": -11,
    "HST": -10,
    "AST": -4,
}


def no_nul(data: Any) -> Any:
    """PostgreSQL text cannot hold NUL; refuse it anywhere in a request body."""
    if isinstance(data, str) and "\x00" in data:
        raise ValueError("text must not contain NUL characters")
    if isinstance(data, dict):
        for key, value in data.items():
            no_nul(key)
            no_nul(value)
    elif isinstance(data, list):
        for value in data:
            no_nul(value)
    return data


class StrictModel(BaseModel):
    """Base of every configuration and admin request body: unknown keys and NUL refused."""

    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _no_nul(cls, data: Any) -> Any:
        return no_nul(data)
