"""Global / campaign event postback parameters (seed 000) -> an EventCommand."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import date, datetime
from decimal import Decimal
from operator import attrgetter
from typing import Any

from postbackd.errors import InputError
from postbackd.inbound import values as v
from postbackd.model import COST_OPERATIONS, TRACKING_FIELDS, ConversionStatus

MAX_EXTRA_FIELDS = 100
# Accepted spellings of the external click id besides its own name.
ALIASES = {"ext_click_id": "external_click_id", "externalclickid": "external_click_id"}
KNOWN = frozenset(
    {
        "event_id",
        "transaction_id",
        "revenue",
        "pid",
        "clid",
        "cid",
        "conversion_date",
        "conversion_timezone",
        "tcpa_consent",
        "tcpa_consent_date",
        "cost",
        "cost_operation",
        "adspend",
        "min_price",
        "status",
        *TRACKING_FIELDS,
        *ALIASES,
    }
)


@dataclass(slots=True)  # not frozen: its __init__ would cost 5 µs of object.__setattr__
class EventCommand:
    event_id: str
    transaction_id: str
    cid: str | None = None
    revenue: Decimal | None = None
    pid: str = "organic"
    clid: str | None = None
    status: str | None = None
    conversion_at: datetime | None = None
    tracking: dict[str, str] = field(default_factory=dict)
    lead_fields: dict[str, Any] = field(default_factory=dict)
    tcpa_consent: bool | None = None
    tcpa_consent_date: date | None = None
    cost: Decimal | None = None
    cost_operation: str = "override"
    adspend: Decimal | None = None
    min_price: Decimal | None = None

    def __reduce__(self):
        """Pickled as its field values: every event crosses to the SQLite writer process,
        and the slots dataclass default walks `fields()` on each pickle and unpickle."""
        return (EventCommand, _field_values(self))


_field_values = attrgetter(*(f.name for f in fields(EventCommand)))


def parse_event(params: Mapping[str, Any], *, require_cid: bool = False) -> EventCommand:
    """Validate every parameter of seed 000; the first problem found is raised."""
    event_id = v.text("event_id", params.get("event_id"), max_len=100)
    if event_id is None:
        raise InputError("missing_event_id", "event_id is required")
    transaction_id = v.text("transaction_id", params.get("transaction_id"), max_len=64)
    if transaction_id is None:
        raise InputError("missing_transaction_id", "transaction_id is required")
    cid = v.text("cid", params.get("cid"), max_len=40)
    if require_cid and cid is None:
        raise InputError("missing_cid", "cid is required")
    return EventCommand(
        event_id=event_id,
        transaction_id=transaction_id,
        cid=cid,
        revenue=v.amount("revenue", params.get("revenue")),
        pid=v.text("pid", params.get("pid"), max_len=100) or "organic",
        clid=v.text("clid", params.get("clid"), max_len=200),
        status=_status(params.get("status")),
        conversion_at=v.conversion_time(
            params.get("conversion_date"), params.get("conversion_timezone")
        ),
        tracking=_tracking(params),
        lead_fields=_lead_fields(params),
        tcpa_consent=v.flag("tcpa_consent", params.get("tcpa_consent")),
        tcpa_consent_date=v.day("tcpa_consent_date", params.get("tcpa_consent_date")),
        cost=v.amount("cost", params.get("cost")),
        cost_operation=_cost_operation(params.get("cost_operation")),
        adspend=v.amount("adspend", params.get("adspend")),
        min_price=v.amount("min_price", params.get("min_price")),
    )


def _status(value: Any) -> str | None:
    raw = v.text("status", value, max_len=20)
    if raw is None:
        return None
    try:
        return ConversionStatus(raw.lower()).value
    except ValueError:
        allowed = ", ".join(s.value for s in ConversionStatus)
        raise InputError("invalid_status", f"status must be one of {allowed}") from None


def _cost_operation(value: Any) -> str:
    raw = v.text("cost_operation", value, max_len=20)
    if raw is None:
        return "override"
    if raw.lower() not in COST_OPERATIONS:
        raise InputError(
            "invalid_cost_operation", "cost_operation must be add, substract or override"
        )
    return COST_OPERATIONS[raw.lower()]


_TRACKING_NAMES = (*TRACKING_FIELDS, *ALIASES)  # in this order: an alias wins


def _tracking(params: Mapping[str, Any]) -> dict[str, str]:
    out: dict[str, str] = {}
    for name in _TRACKING_NAMES:
        if name in params and (value := v.text(name, params[name], max_len=500)) is not None:
            out[ALIASES.get(name, name)] = value
    return out


def _lead_fields(params: Mapping[str, Any]) -> dict[str, Any]:
    """Every other parameter is a lead field (first_name, email, state …)."""
    extra = {k: val for k, val in params.items() if k not in KNOWN}
    if len(extra) > MAX_EXTRA_FIELDS:
        raise InputError("too_many_fields", f"at most {MAX_EXTRA_FIELDS} lead fields per request")
    # Blank values are skipped: a URL template with an empty macro must not wipe a field.
    return {v.field_name(k): lead_value(k, val) for k, val in extra.items() if not v.blank(val)}


def lead_value(name: str, value: Any) -> Any:
    """Lead fields hold scalars; nested objects belong in session data."""
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        v.amount(name, value)  # rejects NaN, infinities and absurd magnitudes
        return value
    return v.text(name, value)
