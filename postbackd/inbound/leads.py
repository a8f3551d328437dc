"""Lead entry parameters (click script and form post) -> a LeadCommand."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from postbackd.errors import InputError
from postbackd.inbound import values as v
from postbackd.inbound.events import ALIASES, MAX_EXTRA_FIELDS, lead_value
from postbackd.model import TRACKING_FIELDS


@dataclass(frozen=True, slots=True)
class LeadCommand:
    """Create a lead (click or form post) or complete an existing one with form data."""

    cid: str
    pid: str = "organic"
    transaction_id: str | None = None
    tracking: dict[str, str] = field(default_factory=dict)
    fields: dict[str, Any] = field(default_factory=dict)
    session_data: dict[str, Any] = field(default_factory=dict)
    request: dict[str, Any] = field(default_factory=dict)
    form_complete: bool = False


RESERVED = frozenset({"cid", "pid", "transaction_id", "session_data", *TRACKING_FIELDS, *ALIASES})


def _tracking(params: Mapping[str, Any]) -> dict[str, str]:
    out = {}
    for name in (*TRACKING_FIELDS, *ALIASES):
        value = v.text(name, params.get(name), max_len=500)
        if value is not None:
            out[ALIASES.get(name, name)] = value
    return out


def parse_click(cid: str, query: Mapping[str, str], request: dict[str, Any]) -> LeadCommand:
    """A visitor's click: the query string feeds the tracking ids and `{req.qs.*}`."""
    query = dict(query)
    v.json_value("query", query, max_depth=2, max_items=400)
    return LeadCommand(
        cid=v.text("cid", cid, max_len=40) or "",
        pid=v.text("pid", query.get("pid"), max_len=100) or "organic",
        tracking=_tracking(query),
        request={**request, "query": query},
    )


def parse_form(params: Mapping[str, Any], request: dict[str, Any]) -> LeadCommand:
    """A form post: creates the lead, or completes the one named by transaction_id."""
    cid = v.text("cid", params.get("cid"), max_len=40)
    if cid is None:
        raise InputError("missing_cid", "cid is required")
    session = params.get("session_data") or {}
    if not isinstance(session, dict):
        raise InputError("invalid_session_data", "session_data must be an object")
    v.json_value("session_data", session)
    extra = {k: val for k, val in params.items() if k not in RESERVED and not v.blank(val)}
    if len(extra) > MAX_EXTRA_FIELDS:
        raise InputError("too_many_fields", f"at most {MAX_EXTRA_FIELDS} lead fields per request")
    return LeadCommand(
        cid=cid,
        pid=v.text("pid", params.get("pid"), max_len=100) or "organic",
        transaction_id=v.text("transaction_id", params.get("transaction_id"), max_len=64),
        tracking=_tracking(params),
        fields={v.field_name(k): lead_value(k, val) for k, val in extra.items()},
        session_data=session,
        request=request,
        form_complete=True,
    )
