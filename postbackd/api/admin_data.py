"""Admin API: leads (read, search, distribution) and conversions (read, list, status)."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, Query, Request

from postbackd import record
from postbackd.api import schemas
from postbackd.api.deps import OrgId, ServicesDep
from postbackd.errors import Invalid, NotFound
from postbackd.model import TRACKING_FIELDS
from postbackd.store import conversions, leads
from postbackd.store.rows import get_scoped
from postbackd.store.tables import conversions as conversions_t
from postbackd.store.tables import leads as leads_t

router = APIRouter(prefix="/api/v1")


def aware(value: datetime | None, name: str) -> datetime | None:
    """Time filters need an offset, and must convert to UTC (year 1 at +14:00 does not)."""
    if value is None:
        return None
    if value.tzinfo is None:
        raise Invalid(message=f"{name}: needs a UTC offset, e.g. 2026-11-25T00:00:00Z")
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise Invalid(message=f"{name}: out of range") from None


@router.get("/leads", tags=["leads"])
def search_leads(
    request: Request,
    org_id: OrgId,
    svc: ServicesDep,
    transaction_id: str | None = None,
    campaign_id: str | None = None,
    source_id: str | None = None,
    status: str | None = None,
    exto: str | None = None,
    created_after: datetime | None = None,
    created_before: datetime | None = None,
    limit: int = Query(50, ge=1, le=500),
    cursor: str | None = None,
):
    """Search by transaction id, tracking ids (`sub1=…`, `utm_source=…`) and lead fields
    (`field.email=a@b.c`), newest first."""
    q = request.query_params
    filters = {
        "transaction_id": transaction_id,
        "campaign_id": campaign_id,
        "source_id": source_id,
        "status": status,
        "exto": exto,
        "created_after": aware(created_after, "created_after"),
        "created_before": aware(created_before, "created_before"),
        **{name: q[name] for name in TRACKING_FIELDS if name in q},
        "fields": {k[6:]: v for k, v in q.items() if k.startswith("field.") and len(k) > 6},
    }
    items, next_cursor = svc.read(
        lambda c: leads.search(c, org_id, filters, limit=limit, cursor=cursor)
    )
    return {"data": items, "next_cursor": next_cursor}


def _lead(svc, org_id: str, lead_id: str):
    row = svc.read(get_scoped, leads_t, org_id, lead_id)
    if row is None:
        row = svc.read(leads.by_transaction_id, lead_id)
        row = row if row and row["org_id"] == org_id else None
    if row is None:
        raise NotFound("lead_not_found", "lead not found")
    return row


@router.get("/leads/{lead_id}", tags=["leads"])
def read_lead(lead_id: str, org_id: OrgId, svc: ServicesDep):
    """By lead id or by transaction id."""
    return _lead(svc, org_id, lead_id)


@router.post("/leads/{lead_id}/distribution", tags=["leads"])
def complete_distribution(
    lead_id: str, body: schemas.Distribution, org_id: OrgId, svc: ServicesDep
):
    """Mark the lead's distribution complete (sold / unsold, buyer, price): fires form-data postbacks."""
    lead = _lead(svc, org_id, lead_id)
    result = svc.write(
        record.distribute_lead, org_id, lead["id"], body.status == "sold", body.buyer, body.price
    )
    svc.after_write(len(result["deliveries"]))
    return {"lead": result["lead"], "deliveries": [d["id"] for d in result["deliveries"]]}


@router.get("/conversions", tags=["conversions"])
def list_conversions(
    org_id: OrgId,
    svc: ServicesDep,
    lead_id: str | None = None,
    campaign_id: str | None = None,
    event_id: str | None = None,
    event_type: str | None = None,
    status: str | None = None,
    source_id: str | None = None,
    created_after: datetime | None = None,
    created_before: datetime | None = None,
    limit: int = Query(50, ge=1, le=500),
    cursor: str | None = None,
):
    filters = {
        "lead_id": lead_id,
        "campaign_id": campaign_id,
        "event_id": event_id,
        "event_type": event_type,
        "status": status,
        "source_id": source_id,
        "created_after": aware(created_after, "created_after"),
        "created_before": aware(created_before, "created_before"),
    }
    items, next_cursor = svc.read(
        lambda c: conversions.search(c, org_id, filters, limit=limit, cursor=cursor)
    )
    for item in items:
        item.pop("dedupe_key", None)
    return {"data": items, "next_cursor": next_cursor}


@router.get("/conversions/{conversion_id}", tags=["conversions"])
def read_conversion(conversion_id: str, org_id: OrgId, svc: ServicesDep):
    row = svc.read(get_scoped, conversions_t, org_id, conversion_id)
    if row is None:
        raise NotFound("conversion_not_found", "conversion not found")
    row.pop("dedupe_key", None)
    return {**row, "history": svc.read(conversions.history, row)}


@router.post("/conversions/{conversion_id}/status", tags=["conversions"])
def change_conversion_status(
    conversion_id: str, body: schemas.ConversionStatusChange, org_id: OrgId, svc: ServicesDep
):
    """Change the status (approved, rejected …); status-change postbacks fire (seed 003)."""
    read_conversion(conversion_id, org_id, svc)
    result = svc.write(
        record.set_conversion_status, org_id, conversion_id, body.status.value, body.note
    )
    svc.after_write(len(result["deliveries"]))
    return read_conversion(conversion_id, org_id, svc) | {
        "deliveries": [d["id"] for d in result["deliveries"]]
    }
