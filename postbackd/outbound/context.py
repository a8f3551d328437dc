"""The macro context of an occurrence: every value a template may name, JSON-safe.

Snapshotted onto the delivery in the transaction that caused it, so a retry days later
sends what was true when the event happened. Seed 002: session postbacks carry no user
data (no form has been filled yet).

Stored compact (`build(stored=True)`, `expand`): without the None values of the keys the
builder always sets and without the aliases it derives, which were half of the ~1.9 KB a
delivery row carried (two rows to a 4 KB page; at 1,000 events/s SQLite wrote ~47 MB/s).
`expand` gives back a context with the same keys and values, so every template renders
the same; only the order of the keys put back differs, which a case-insensitive lookup
could notice if a lead had two fields differing only by case (`{SUB1}` with fields
`sub1` and `Sub1`).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from postbackd.model import TRACKING_FIELDS, Trigger
from postbackd.outbound.occurrence import Occurrence

LEAD_COLUMNS = (
    "transaction_id",
    "exto",
    "tcpa_consent",
    "tcpa_consent_date",
    "cost",
    "adspend",
    "min_price",
    "ip",
    "user_agent",
    "referrer",
    "landing_url",
    "distribution_status",
    "buyer",
    "price",
    *TRACKING_FIELDS,
)
CONVERSION_COLUMNS = (
    "event_id",
    "event_type",
    "clid",
    "goal",
    "revenue",
    "payout",
    "currency",
    "status",
)
# Names partners' templates use for the same values (seed 002 spellings first).
ALIASES = {
    "sessionid": "transaction_id",
    "session_id": "transaction_id",
    "click_id": "transaction_id",
    "clickid": "transaction_id",
    "ipaddress": "ip",
    "ip_address": "ip",
    "useragent": "user_agent",
    "locationurl": "landing_url",
    "campaignid": "campaign_id",
    "cid": "campaign_id",
    "publisherrevenue": "payout",
    "externalidentifier": "external_click_id",
    "sold_price": "price",
    "conversion_status": "status",
}


# Keys `build` always sets (with a conversion: also CONVERSION_KEYS), the only ones whose
# None values the stored form leaves out.
BUILT_KEYS = (
    *LEAD_COLUMNS,
    "org_id",
    "lead_id",
    "campaign_id",
    "source_id",
    "pid",
    "source_name",
    "lead_created_at",
    "trigger",
    "lead_status",
)
CONVERSION_KEYS = (
    *CONVERSION_COLUMNS,
    "conversion_id",
    "conversion_time",
    "previous_status",
    "event_name",
)
# The marker of a compact context: 1, or 2 when it was built with a conversion. Lead
# field names are identifiers (inbound/values.py), so no field can be called this.
COMPACT = "~"
_BUILT_WITH_CONVERSION = (*BUILT_KEYS, *CONVERSION_KEYS)

_PLAIN = frozenset({str, int, float, bool, type(None)})


def jsonable(value: Any) -> Any:
    if type(value) in _PLAIN:  # most values: one set lookup (this runs ~50 times an event)
        return value
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    return value


def build(occ: Occurrence, now: datetime, *, stored: bool = False) -> dict[str, Any]:
    """Every value a template may name; `stored=True` builds the compact form a delivery
    row keeps (with the marker), for which `expand` gives back the full one."""
    lead = occ.lead
    ctx: dict[str, Any] = {}
    if occ.trigger is not Trigger.SESSION_START:
        ctx.update({k: jsonable(v) for k, v in (lead.get("fields") or {}).items()})
    plain = _PLAIN  # inlined: ~45 columns, most of them None or text
    ctx.update({k: v if type(v := lead.get(k)) in plain else jsonable(v) for k in LEAD_COLUMNS})
    ctx.update(_ids(occ))
    ctx.update(_conversion(occ))
    ctx["trigger"] = occ.trigger.value
    ctx["lead_status"] = lead.get("status")
    event_at = (occ.conversion or {}).get("conversion_at") or occ.at or now
    ctx["event_time"] = int(event_at.timestamp())
    ctx["timestamp"] = int(now.timestamp())
    ctx["date"] = now.date().isoformat()
    _zip_aliases(ctx)
    if stored:
        for key in _BUILT_WITH_CONVERSION if occ.conversion else BUILT_KEYS:
            if ctx[key] is None:
                del ctx[key]
        ctx[COMPACT] = 2 if occ.conversion else 1
    else:
        for alias, name in ALIASES.items():
            ctx.setdefault(alias, ctx.get(name))
    ctx["req"] = {
        "qs": lead.get("query") or {},
        "cookie": lead.get("cookies") or {},
        "sessionData": lead.get("session_data") or {}
        if occ.trigger is not Trigger.SESSION_START
        else {},
    }
    return ctx


def expand(stored: Mapping[str, Any]) -> dict[str, Any]:
    """A new full context from a stored one; a context stored in full (rows written
    before compaction, or a context just built) comes back as a plain copy."""
    ctx = dict(stored)
    marker = ctx.pop(COMPACT, None)
    if marker is None:
        return ctx
    for key in _BUILT_WITH_CONVERSION if marker == 2 else BUILT_KEYS:
        ctx.setdefault(key, None)
    for alias, name in ALIASES.items():
        ctx.setdefault(alias, ctx.get(name))
    return ctx


def _ids(occ: Occurrence) -> dict[str, Any]:
    source = occ.source or {}
    return {
        "org_id": occ.org["id"],
        "lead_id": occ.lead["id"],
        "campaign_id": occ.campaign_id,
        "source_id": source.get("id"),
        "pid": source.get("pid"),
        "source_name": source.get("name"),
        "lead_created_at": jsonable(occ.lead.get("created_at")),
    }


def _conversion(occ: Occurrence) -> dict[str, Any]:
    conv = occ.conversion
    if not conv:
        return {}
    out = {k: jsonable(conv.get(k)) for k in CONVERSION_COLUMNS}
    out["conversion_id"] = conv["id"]
    out["conversion_time"] = jsonable(conv.get("conversion_at"))
    out["previous_status"] = occ.previous_status
    out["event_name"] = (occ.event or {}).get("name") or conv.get("event_id")
    if conv.get("exto"):
        out["exto"] = conv["exto"]
    return out


def _zip_aliases(ctx: dict[str, Any]) -> None:
    zip_value = next(
        (ctx.get(k) for k in ("zip_code", "zip", "zipcode", "postal_code") if ctx.get(k)), None
    )
    if zip_value is not None:
        ctx.setdefault("zip", zip_value)
        ctx.setdefault("zip_code", zip_value)


# Lead fields forms usually carry; templates naming them are not reported as unknown.
COMMON_LEAD_FIELDS = (
    "first_name",
    "last_name",
    "email",
    "phone",
    "address",
    "city",
    "state",
    "zip",
    "zip_code",
    "country",
    "dob",
    "gender",
    "external_id",
)
KNOWN_NAMES = frozenset(
    {
        *BUILT_KEYS,
        *CONVERSION_KEYS,
        *ALIASES,
        *COMMON_LEAD_FIELDS,
        "event_time",
        "timestamp",
        "date",
        "delivery_id",
        "idempotency_key",
    }
)


def is_known(name: str) -> bool:
    """For config validation: unknown names are reported, not refused (lead fields vary)."""
    return name in KNOWN_NAMES or name.startswith(
        ("req.qs.", "req.cookie.", "req.sessionData.", "req.session.")
    )
