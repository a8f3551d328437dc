"""The one write path: lead / conversion / history changes plus the deliveries they trigger.

Every function here runs inside one writer transaction (store/writer.py) and takes the
connection first; the HTTP layer answers only after the commit. Rules live here and in
inbound/ and outbound/; SQL lives in store/.
"""

from __future__ import annotations

import zlib
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from postbackd import ids, jsontext
from postbackd.errors import DuplicateEvent, Forbidden, InputError, NotFound, NotFoundInput
from postbackd.inbound.events import EventCommand
from postbackd.inbound.leads import LeadCommand
from postbackd.inbound.values import MAX_AMOUNT
from postbackd.model import DeliveryState, EventType, LeadStatus, Trigger
from postbackd.outbound import context, filters, plan
from postbackd.outbound.occurrence import Occurrence
from postbackd.store import (
    campaigns,
    caps,
    claims,
    conversions,
    fast,
    leads,
    orgs,
    outbox,
    postbacks,
)
from postbackd.store.cache import CONFIG
from postbackd.store.rows import get_scoped
from postbackd.store.tables import campaigns as campaigns_table
from postbackd.store.tables import conversions as conversions_table
from postbackd.store.tables import event_definitions, utcnow
from postbackd.store.tables import leads as leads_table
from postbackd.store.tables import sources as sources_table

# ---- lead entry -------------------------------------------------------------------------


def enter_lead(conn: sa.Connection, cmd: LeadCommand) -> dict:
    """Create a lead (session start, and form completion if it came with form data); the
    result carries the campaign's landing URL for the click's redirect."""
    campaign = _campaign(conn, cmd.cid)
    if cmd.transaction_id and (lead := leads.by_transaction_id(conn, cmd.transaction_id)):
        if lead["campaign_id"] != campaign["id"]:
            raise InputError("transaction_id_taken", "transaction_id belongs to another campaign")
        return {**complete_lead(conn, lead, cmd), "landing_url": campaign["landing_url"]}
    source = _active_source(conn, campaign["id"], cmd.pid)
    now = utcnow()
    lead = leads.insert_lead(
        conn,
        {
            "id": ids.new_id("lead"),
            "org_id": campaign["org_id"],
            "campaign_id": campaign["id"],
            "source_id": source["id"],
            "transaction_id": cmd.transaction_id or ids.transaction_id(),
            "status": LeadStatus.COMPLETED if cmd.form_complete else LeadStatus.NEW,
            "fields": cmd.fields,
            "session_data": cmd.session_data,
            "form_completed_at": now if cmd.form_complete else None,
            **cmd.tracking,
            **cmd.request,
        },
    )
    org = _org(conn, campaign["org_id"])
    planned = plan_deliveries(conn, Occurrence(Trigger.SESSION_START, org, lead, source, at=now))
    if cmd.form_complete:
        planned += plan_deliveries(
            conn, Occurrence(Trigger.FORM_COMPLETE, org, lead, source, at=now)
        )
    return {
        "lead": lead,
        "deliveries": planned,
        "created": True,
        "landing_url": campaign["landing_url"],
    }


def complete_lead(conn: sa.Connection, lead: dict, cmd: LeadCommand) -> dict:
    """Form completion of an existing lead: merge fields and session data."""
    now = utcnow()
    lead = leads.update_lead(
        conn,
        lead,
        {
            "fields": {**lead["fields"], **cmd.fields},
            "session_data": {**lead["session_data"], **cmd.session_data},
            "status": LeadStatus.COMPLETED,
            "form_completed_at": now,
            **cmd.tracking,
        },
    )
    org = _org(conn, lead["org_id"])
    source = get_scoped(conn, sources_table, lead["org_id"], lead["source_id"])
    planned = plan_deliveries(conn, Occurrence(Trigger.FORM_COMPLETE, org, lead, source, at=now))
    return {"lead": lead, "deliveries": planned, "created": False}


def distribute_lead(
    conn: sa.Connection, org_id: str, lead_id: str, sold: bool, buyer: str | None, price
) -> dict:

    lead = get_scoped(conn, leads_table, org_id, lead_id)
    if lead is None:
        raise NotFoundInput("lead_not_found", "lead not found")
    now = utcnow()
    status = LeadStatus.SOLD if sold else LeadStatus.UNSOLD
    lead = leads.update_lead(
        conn,
        lead,
        {
            "distribution_status": status,
            "status": status,
            "buyer": buyer,
            "price": price,
            "distributed_at": now,
        },
    )
    org = _org(conn, org_id)
    source = get_scoped(conn, sources_table, org_id, lead["source_id"])
    planned = plan_deliveries(
        conn, Occurrence(Trigger.DISTRIBUTION_COMPLETE, org, lead, source, at=now)
    )
    return {"lead": lead, "deliveries": planned}


# ---- inbound events (seed 000) ------------------------------------------------------------


def fire_event(
    conn: sa.Connection,
    org_id: str | None,
    cmd: EventCommand,
    lease: claims.Handoff | None = None,
) -> dict:
    """Record a conversion or tracking event on a lead; raises the seed's coded errors.

    With a `lease` (the in-process worker's token and seconds) the deliveries to send are
    written already leased to it and returned under `handoff`, for the caller to hand over
    after the commit: no claim, no poll."""
    lead = _lead_for_event(conn, org_id, cmd)
    evd = campaigns.find_event_definition(conn, lead["campaign_id"], cmd.event_id, cached=True)
    if evd is None:
        raise InputError(
            "invalid_event_id",
            f"event_id {cmd.event_id!r} is not configured for this lead's campaign",
        )
    is_conversion = evd["type"] == EventType.CONVERSION
    if is_conversion and cmd.revenue is None:
        raise InputError("missing_revenue", "revenue is required for conversion events")
    source = _active_source(conn, lead["campaign_id"], cmd.pid)
    _event_lock(conn, lead["id"], evd["id"])
    dedupe_key = None if evd["allow_duplicates"] else f"{lead['id']}:{evd['id']}"
    if dedupe_key and conversions.exists_dedupe(conn, dedupe_key):
        raise DuplicateEvent(
            "duplicate_event", f"event {evd['event_id']!r} was already fired for this lead"
        )
    if changes := _lead_changes(lead, cmd):
        lead = leads.update_lead(conn, lead, changes)
    conversion = _insert_conversion(conn, lead, evd, source, cmd, dedupe_key)
    org = _org(conn, lead["org_id"])
    occ = Occurrence(Trigger.EVENT, org, lead, source, conversion, evd)
    planned = plan_deliveries(conn, occ, lease=lease)
    kind = "conversion" if is_conversion else "tracking"
    handoff = [claims.handed(d) for d in planned if d["state"] == DeliveryState.SENDING]
    return {
        "handoff": handoff,
        "code": f"{kind}_event_fired",
        "message": f"{kind.capitalize()} event fired successfully",
        "data": {
            "conversion_id": conversion["id"],
            "lead_id": lead["id"],
            "transaction_id": lead["transaction_id"],
            "event_id": evd["event_id"],
            "event_type": evd["type"],
            "campaign_id": lead["campaign_id"],
            "revenue": _num(conversion["revenue"]),
            "status": conversion["status"],
            "deliveries": len([d for d in planned if d["state"] in _TO_SEND]),
        },
    }


def _lead_for_event(conn: sa.Connection, org_id: str | None, cmd: EventCommand) -> dict:
    lead = leads.by_transaction_id(conn, cmd.transaction_id)
    if cmd.cid is not None and _campaign_or_none(conn, cmd.cid) is None:
        raise InputError("invalid_cid", f"campaign {cmd.cid!r} not found")
    wrong_org = lead is not None and org_id is not None and lead["org_id"] != org_id
    wrong_campaign = lead is not None and cmd.cid is not None and lead["campaign_id"] != cmd.cid
    if lead is None or wrong_org or wrong_campaign:
        raise NotFoundInput("lead_not_found", f"no lead with transaction_id {cmd.transaction_id!r}")
    return lead


def _event_lock(conn: sa.Connection, lead_id: str, evd_id: str) -> None:
    """Across processes on PostgreSQL: a second request for the same lead+event gets 403.

    (In one process the API layer holds an in-memory lock; SQLite has one writer.)
    """
    if conn.dialect.name != "postgresql":
        return
    key = zlib.crc32(f"{lead_id}:{evd_id}".encode()) - 2**31
    locked = fast.execute(conn, "SELECT pg_try_advisory_xact_lock(%(k)s)", {"k": key}).fetchone()
    if not locked[0]:
        raise Forbidden(
            "event_locked", "another request for this lead and event is being processed"
        )


def _lead_changes(lead: dict, cmd: EventCommand) -> dict[str, Any]:
    """What the event changes on the lead; values it already holds are left out, so a
    buyer re-posting the same sub ids does not rewrite the row (nor bump updated_at)."""
    changes = _wanted_changes(lead, cmd)
    return {k: val for k, val in changes.items() if lead.get(k) != val}


def _wanted_changes(lead: dict, cmd: EventCommand) -> dict[str, Any]:
    changes: dict[str, Any] = dict(cmd.tracking)
    if cmd.lead_fields:
        changes["fields"] = {**lead["fields"], **cmd.lead_fields}
    if cmd.tcpa_consent is not None:
        changes["tcpa_consent"] = cmd.tcpa_consent
    if cmd.tcpa_consent_date is not None:
        changes["tcpa_consent_date"] = cmd.tcpa_consent_date
    if cmd.cost is not None:
        changes["cost"] = apply_cost(lead.get("cost"), cmd.cost, cmd.cost_operation)
    for name in ("adspend", "min_price"):
        if getattr(cmd, name) is not None:
            changes[name] = getattr(cmd, name)
    return changes


def apply_cost(current: Decimal | None, cost: Decimal, operation: str) -> Decimal:
    """Seed 000 cost_operation: add, substract (subtract) or override."""
    base = Decimal(str(current)) if current is not None else Decimal(0)
    result = {"add": base + cost, "subtract": base - cost}.get(operation, cost)
    if abs(result) >= MAX_AMOUNT:
        raise InputError(
            "invalid_cost", f"the lead's cost would leave the range of ±{MAX_AMOUNT:,.0f}"
        )
    return result


def _insert_conversion(conn, lead, evd, source, cmd: EventCommand, dedupe_key) -> dict:
    row = {
        "id": ids.new_id("conversion"),
        "org_id": lead["org_id"],
        "campaign_id": lead["campaign_id"],
        "lead_id": lead["id"],
        "event_definition_id": evd["id"],
        "event_id": evd["event_id"],
        "event_type": evd["type"],
        "source_id": source["id"],
        "clid": cmd.clid,
        "goal": evd["event_id"],
        "exto": lead.get("exto"),
        "revenue": cmd.revenue,
        "payout": evd.get("payout"),
        "currency": None,
        "status": cmd.status or "approved",
        "conversion_at": cmd.conversion_at or utcnow(),
        "dedupe_key": dedupe_key,
    }
    try:
        return conversions.insert_conversion(conn, row)
    except fast.INTEGRITY_ERRORS:
        # Lost a race with another writer (PostgreSQL): the unique key decides.
        raise DuplicateEvent(
            "duplicate_event", f"event {evd['event_id']!r} was already fired for this lead"
        ) from None


def set_conversion_status(
    conn: sa.Connection, org_id: str, conversion_id: str, status: str, note: str
) -> dict:

    conv = get_scoped(conn, conversions_table, org_id, conversion_id)
    if conv is None:
        raise NotFoundInput("conversion_not_found", "conversion not found")
    if conv["status"] == status:
        return {"conversion": conv, "deliveries": []}
    previous = conv["status"]
    conv = conversions.set_status(conn, conv, status, note)
    lead = get_scoped(conn, leads_table, org_id, conv["lead_id"])
    evd = get_scoped(conn, event_definitions, org_id, conv["event_definition_id"])
    source = (
        get_scoped(conn, sources_table, org_id, conv["source_id"]) if conv["source_id"] else None
    )
    org = orgs.get_org(conn, org_id)
    occ = Occurrence(
        Trigger.CONVERSION_STATUS, org, lead, source, conv, evd, previous_status=previous
    )
    return {"conversion": conv, "deliveries": plan_deliveries(conn, occ)}


# ---- shared -------------------------------------------------------------------------------


_TO_SEND = (DeliveryState.PENDING, DeliveryState.SENDING)


def plan_deliveries(
    conn: sa.Connection,
    occ: Occurrence,
    only: list[dict] | None = None,
    *,
    screened: bool = True,
    lease: claims.Handoff | None = None,
) -> list[dict]:
    """Write one delivery per matching postback, pending or skipped with its reason; with a
    `lease` (token, seconds), those to send are written leased to that worker instead."""
    candidates = only
    if candidates is None:
        triggers = [t.value for t in plan.TRIGGERS_OF[occ.trigger]]
        key = ("postbacks", occ.org["id"], occ.campaign_id, *triggers)
        candidates = (
            CONFIG.get(
                conn,
                key,
                lambda c: postbacks.active_for(c, occ.org["id"], occ.campaign_id, triggers),
            )
            if triggers
            else []
        )
        candidates = [pb for pb in candidates if plan.matches(pb, occ)]
    if not candidates:
        return []
    now = utcnow()
    # built compact and serialized once, for every postback's row and the handoff; posting
    # filters (rarely enabled) see the full context
    ctx = context.build(occ, now, stored=True)
    stored = jsontext.JsonText(jsontext.dumps(ctx))
    if screened and any(_filter_config(pb) is not None for pb in candidates):
        ctx = context.expand(ctx)
    out = []
    for pb in candidates:
        values = {
            "org_id": occ.org["id"],
            "postback_id": pb["id"],
            "lead_id": occ.lead["id"],
            "conversion_id": (occ.conversion or {}).get("id"),
            "trigger": occ.trigger.value,
            "state": DeliveryState.PENDING.value,
            "context": stored,
        }
        if screened:
            values.update(screen(conn, pb, ctx, now, occ.org.get("timezone") or "UTC"))
        handed = lease and pb["id"] not in lease.passed_over
        if handed and values["state"] == DeliveryState.PENDING:
            values.update(
                state=DeliveryState.SENDING.value,
                leased_by=lease.token,
                lease_until=now + timedelta(seconds=lease.seconds),
            )
        out.append(outbox.insert_delivery(conn, values))
    if any(d["state"] == DeliveryState.PENDING for d in out):
        outbox.announce(conn)
    return out


def screen(
    conn: sa.Connection, postback: dict, ctx: dict, now: datetime, tz: str
) -> dict[str, Any]:
    """Posting filters decide pending vs skipped-with-reason; an empty dict means send.

    Caps go last and count the fire in the same transaction, so only a delivery that
    passed every other filter uses up a cap.
    """
    cfg = _filter_config(postback)
    if cfg is None:
        return {}
    skip = filters.first_skip(cfg, filters.Facts(fields=ctx, now=now, timezone=tz))
    if skip is None and cfg.caps.enabled:
        limits = cfg.caps.limits()
        reached = caps.take(conn, postback["id"], cfg.caps.counted_windows(now, tz), limits)
        if reached:
            skip = filters.Skip(
                "caps", f"{reached} cap {limits[reached]} reached", str(limits[reached])
            )
    if skip is None:
        return {}
    return {
        "state": DeliveryState.SKIPPED.value,
        "skip_filter": skip.filter,
        "skip_reason": skip.reason,
    }


_PARSED_FILTERS: dict[str, tuple[dict, filters.FilterConfig | None]] = {}


def _filter_config(postback: dict) -> filters.FilterConfig | None:
    """A postback's filters, validated once per config object (config rows are cached and
    shared, so the same dict comes back for every event until the postback changes);
    None when none is enabled, the common case, which then costs one lookup."""
    config = postback["config"]
    hit = _PARSED_FILTERS.get(postback["id"])
    if hit is None or hit[0] is not config:
        cfg = filters.FilterConfig.model_validate(config.get("filters") or {})
        hit = (config, cfg if any(f.enabled for f in cfg.filters()) else None)
        _PARSED_FILTERS[postback["id"]] = hit
    return hit[1]


def cap_counts(
    conn: sa.Connection, postback_id: str, cfg, now: datetime, tz: str
) -> dict[str, int]:
    """Fires counted in the current windows, for the dry run."""
    return caps.counts(conn, postback_id, cfg.caps.counted_windows(now, tz))


def _campaign_or_none(conn: sa.Connection, cid: str) -> dict | None:
    """Cached like the other configuration rows (every click and trigger reads one; admin
    writes clear the cache): a Core select cost ~90-100 µs of the writer's time.
    """
    return CONFIG.get(conn, ("campaign", cid), lambda c: _load_campaign(c, cid))


def _load_campaign(conn: sa.Connection, cid: str) -> dict | None:
    row = conn.execute(sa.select(campaigns_table).where(campaigns_table.c.id == cid)).first()
    return None if row is None else dict(row._mapping)


def _campaign(conn: sa.Connection, cid: str) -> dict:
    campaign = _campaign_or_none(conn, cid)
    if campaign is None or campaign["archived"]:
        raise InputError("invalid_cid", f"campaign {cid!r} not found")
    return campaign


def _org(conn: sa.Connection, org_id: str) -> dict:
    return CONFIG.get(conn, ("org", org_id), lambda c: orgs.get_org(c, org_id))


def _active_source(conn: sa.Connection, campaign_id: str, pid: str) -> dict:
    source = CONFIG.get(
        conn, ("source", campaign_id, pid), lambda c: campaigns.find_source(c, campaign_id, pid)
    )
    if source is None or source["archived"]:
        raise InputError("invalid_pid", f"source {pid!r} is not configured for this campaign")
    if not source["active"]:
        raise Forbidden("source_inactive", f"source {pid!r} is inactive")
    return source


def _num(value: Any) -> float | None:
    return None if value is None else float(value)


def occurrence_for(
    conn: sa.Connection, org_id: str, lead_id: str, conversion_id: str | None = None
) -> Occurrence:
    """An occurrence rebuilt from stored rows, for the test endpoint and manual fires."""

    lead = get_scoped(conn, leads_table, org_id, lead_id) or leads.by_transaction_id(conn, lead_id)
    if lead is None or lead["org_id"] != org_id:
        raise NotFound("lead_not_found", "lead not found")
    conv = evd = None
    if conversion_id:
        conv = get_scoped(conn, conversions_table, org_id, conversion_id)
        if conv is None or conv["lead_id"] != lead["id"]:
            raise NotFound("conversion_not_found", "conversion not found for this lead")
        evd = get_scoped(conn, event_definitions, org_id, conv["event_definition_id"])
    source = (
        get_scoped(conn, sources_table, org_id, lead["source_id"]) if lead["source_id"] else None
    )
    return Occurrence(Trigger.MANUAL, orgs.get_org(conn, org_id), lead, source, conv, evd)


def fire_manually(
    conn: sa.Connection, org_id: str, postback: dict, lead_id: str, conversion_id: str | None
) -> dict:
    """Queue one delivery of `postback` for a lead now; posting filters do not apply."""
    occ = occurrence_for(conn, org_id, lead_id, conversion_id)
    return plan_deliveries(conn, occ, only=[postback], screened=False)[0]
