"""Admin API: outbound postbacks (configure, test, fire) and their deliveries (list, show, replay)."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Body, Query
from pydantic import AwareDatetime, Field, ValidationError

from postbackd import record
from postbackd.api.admin_data import aware
from postbackd.api.deps import OrgId, ServicesDep
from postbackd.api.schemas import Body as RequestBody
from postbackd.delivery.dispatcher import Redactor
from postbackd.errors import InputError, NotFound
from postbackd.model import DeliveryState
from postbackd.outbound import context, filters, macros, request
from postbackd.outbound.config import PostbackConfig, split_secrets
from postbackd.outbound.signing import generate_secret
from postbackd.store import outbox, postbacks
from postbackd.store.rows import get_scoped
from postbackd.store.tables import campaigns as campaigns_t
from postbackd.store.tables import sources as sources_t
from postbackd.store.tables import utcnow

router = APIRouter(prefix="/api/v1")


class LeadRef(RequestBody):
    lead_id: str = Field(..., description="lead id or transaction id")
    conversion_id: str | None = None


class ReplayFilter(RequestBody):
    state: DeliveryState | None = None
    postback_id: str | None = None
    lead_id: str | None = None
    created_after: AwareDatetime | None = None
    created_before: AwareDatetime | None = None
    limit: int = Field(1000, ge=1, le=10000)


def public(row: dict) -> dict:
    """A postback as the API shows it: config merged in, secrets only as flags."""
    out = {k: v for k, v in row.items() if k not in ("config", "secrets")}
    out.update(row["config"])
    sealed = bool(row.get("secrets"))
    out["auth"] = {
        **row["config"].get("auth", {}),
        "has_secret": sealed and row["config"]["auth"]["type"] != "none",
    }
    return out


def warnings_for(cfg: PostbackConfig) -> list[str]:
    """Unknown macros are allowed (lead fields vary) but reported."""
    templates = [cfg.url, cfg.body, cfg.fields, cfg.params, cfg.headers]
    names = sorted({n for t in templates if t for n in macros.unknown_names(t, context.is_known)})
    return [f"unknown macro {{{n}}}: renders empty unless the lead has such a field" for n in names]


def _check_scope(conn, org_id: str, cfg: PostbackConfig) -> None:
    if cfg.campaign_id and not get_scoped(conn, campaigns_t, org_id, cfg.campaign_id):
        raise InputError(
            "invalid_campaign_id", "campaign_id names no campaign of this organization"
        )
    if cfg.source_id:
        source = get_scoped(conn, sources_t, org_id, cfg.source_id)
        if source is None or (cfg.campaign_id and source["campaign_id"] != cfg.campaign_id):
            raise InputError(
                "invalid_source_id", "source_id names no source of this organization/campaign"
            )


def _store_unit(
    conn, org_id: str, cfg: PostbackConfig, existing_id: str | None, values: dict
) -> dict:
    """The writer unit of create/replace (module-level: it may run in the writer process)."""
    _check_scope(conn, org_id, cfg)
    if existing_id is None:
        return postbacks.insert(conn, org_id, values)
    postbacks.update(conn, existing_id, values)
    return postbacks.get(conn, org_id, existing_id)


def _store(
    svc, org_id: str, cfg: PostbackConfig, old_secrets: dict, existing_id: str | None = None
) -> dict:
    columns, config, secrets = split_secrets(cfg)
    secrets = {**old_secrets, **secrets}
    for name in ("password", "token"):
        if cfg.auth.type == "none":
            secrets.pop(name, None)
    new_signing = None
    if cfg.sign and not secrets.get("signing_secret"):
        new_signing = secrets["signing_secret"] = generate_secret()
    values = {**columns, "config": config, "secrets": svc.box.seal(secrets)}

    out = public(svc.write(_store_unit, org_id, cfg, existing_id, values))
    out["warnings"] = warnings_for(cfg)
    if new_signing:
        out["signing_secret"] = new_signing  # shown once
    return out


def _postback(svc, org_id: str, postback_id: str) -> dict:
    row = svc.read(postbacks.get, org_id, postback_id)
    if row is None:
        raise NotFound("postback_not_found", "postback not found")
    return row


@router.post("/postbacks", status_code=201, tags=["postbacks"])
def create_postback(body: PostbackConfig, org_id: OrgId, svc: ServicesDep):
    """Create an outbound postback. Unknown macros come back as `warnings`; a signing
    secret (when `sign` is on) is returned only in this answer."""
    return _store(svc, org_id, body, {})


@router.get("/postbacks", tags=["postbacks"])
def list_postbacks(
    org_id: OrgId,
    svc: ServicesDep,
    campaign_id: str | None = None,
    trigger: str | None = None,
    enabled: bool | None = None,
    archived: bool = False,
    limit: int = Query(50, ge=1, le=500),
    cursor: str | None = None,
):
    filters_ = {
        "campaign_id": campaign_id,
        "trigger": trigger,
        "enabled": enabled,
        "archived": archived,
    }
    items, next_cursor = svc.read(
        lambda c: postbacks.search(c, org_id, filters_, limit=limit, cursor=cursor)
    )
    return {"data": [public(r) for r in items], "next_cursor": next_cursor}


@router.get("/postbacks/{postback_id}", tags=["postbacks"])
def read_postback(postback_id: str, org_id: OrgId, svc: ServicesDep):
    return public(_postback(svc, org_id, postback_id))


@router.patch("/postbacks/{postback_id}", tags=["postbacks"])
def update_postback(
    postback_id: str, org_id: OrgId, svc: ServicesDep, changes: dict[str, Any] = Body(...)
):
    """Change any part of the configuration (JSON Merge Patch, RFC 7396: nested objects
    such as `filters` merge key by key, null removes); omitted secrets are kept."""
    current = public(_postback(svc, org_id, postback_id))
    base = {k: current.get(k) for k in PostbackConfig.model_fields}
    base["auth"] = {k: v for k, v in current["auth"].items() if k != "has_secret"}
    merged = merge_patch(base, changes)
    try:
        cfg = PostbackConfig.model_validate(merged)
    except ValidationError as exc:
        raise _invalid(exc) from None
    row = _postback(svc, org_id, postback_id)
    result = _store(svc, org_id, cfg, svc.box.open(row["secrets"]), postback_id)
    if cfg.enabled and not row["enabled"]:
        svc.write(
            postbacks.update, postback_id, {"consecutive_failures": 0, "disabled_reason": None}
        )
        result["disabled_reason"] = None
    return result


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7396 JSON Merge Patch: objects merge key by key, null removes, the rest replaces.

    So `{"filters": {"zip": {...}}}` changes the ZIP filter and leaves caps alone.
    """
    if not isinstance(patch, dict):
        return patch
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


def _invalid(exc: ValidationError) -> InputError:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"])
    err = InputError(
        "validation_error", f"{where}: {first['msg']}", details=exc.errors(include_url=False)
    )
    err.status = 422
    return err


@router.post("/postbacks/{postback_id}/archive", tags=["postbacks"])
def archive_postback(postback_id: str, org_id: OrgId, svc: ServicesDep):
    _postback(svc, org_id, postback_id)
    svc.write(postbacks.update, postback_id, {"archived": True, "enabled": False})
    return public(_postback(svc, org_id, postback_id))


@router.post("/postbacks/{postback_id}/fire", status_code=202, tags=["postbacks"])
def fire_postback(postback_id: str, body: LeadRef, org_id: OrgId, svc: ServicesDep):
    """Manual fire for one lead (and optionally one of its conversions), through the outbox."""
    row = _postback(svc, org_id, postback_id)
    delivery = svc.write(record.fire_manually, org_id, row, body.lead_id, body.conversion_id)
    svc.after_write(1)
    return {"delivery_id": delivery["id"], "state": delivery["state"]}


@router.post("/postbacks/{postback_id}/test", tags=["postbacks"])
async def test_postback(postback_id: str, body: LeadRef, org_id: OrgId, svc: ServicesDep):
    """Send a sample request now (not recorded as a delivery) and show request, response and
    which posting filters would pass or stop this lead."""
    row = await asyncio.to_thread(_postback, svc, org_id, postback_id)
    occ = await asyncio.to_thread(
        svc.read, record.occurrence_for, org_id, body.lead_id, body.conversion_id
    )
    now = utcnow()
    ctx = context.build(occ, now)
    secrets = svc.box.open(row["secrets"])
    req = request.build(
        row["config"], secrets, ctx, f"test_{int(time.time() * 1000)}", int(time.time())
    )
    sender = svc.sender()
    resp = await sender.send(
        req,
        timeout=row["config"].get("timeout", 10),
        policy=sender.policy_for(occ.org.get("allowed_targets") or []),
        keep=svc.settings.attempt_body_limit,
    )
    redact = Redactor(secrets, row["config"])
    return {
        "request": {
            "method": req.method,
            "url": redact.text(req.url),
            "headers": redact.headers(req.headers),
            "body": redact.text(request.body_text(req.body)),
            "missing": list(req.missing),
        },
        "response": {
            "status": resp.status,
            "headers": redact.headers(resp.headers),
            "body": redact.text(resp.body.decode("utf-8", "replace")),
            "latency_ms": resp.latency_ms,
            "error": resp.error.value if resp.error else None,
            "detail": resp.detail,
        },
        "filters": explain(svc, row, ctx, now, occ.org.get("timezone") or "UTC"),
    }


def explain(svc, row: dict, ctx: dict, now: datetime, tz: str) -> list[dict]:
    cfg = filters.FilterConfig.model_validate(row["config"].get("filters") or {})
    counts = svc.read(record.cap_counts, row["id"], cfg, now, tz)
    facts = filters.Facts(fields=ctx, now=now, timezone=tz)
    return [
        {
            "filter": d.filter,
            "passed": d.passed,
            "detail": d.detail,
            "reason": d.skip.reason if d.skip else None,
        }
        for d in filters.evaluate(cfg, facts, counts)
    ]


# ---- deliveries ---------------------------------------------------------------------------


@router.get("/deliveries", tags=["deliveries"])
def list_deliveries(
    org_id: OrgId,
    svc: ServicesDep,
    state: DeliveryState | None = None,
    postback_id: str | None = None,
    lead_id: str | None = None,
    conversion_id: str | None = None,
    skip_filter: str | None = None,
    created_after: datetime | None = None,
    created_before: datetime | None = None,
    limit: int = Query(50, ge=1, le=500),
    cursor: str | None = None,
):
    filters_ = {
        "state": state.value if state else None,
        "postback_id": postback_id,
        "lead_id": lead_id,
        "conversion_id": conversion_id,
        "skip_filter": skip_filter,
        "created_after": aware(created_after, "created_after"),
        "created_before": aware(created_before, "created_before"),
    }
    items, next_cursor = svc.read(
        lambda c: outbox.search(c, org_id, filters_, limit=limit, cursor=cursor)
    )
    return {"data": [_delivery_out(d) for d in items], "next_cursor": next_cursor}


def _delivery_out(row: dict) -> dict:
    return {k: v for k, v in row.items() if k != "context"}


@router.get("/deliveries/{delivery_id}", tags=["deliveries"])
def read_delivery(delivery_id: str, org_id: OrgId, svc: ServicesDep):
    """One delivery with every attempt (request and response, secrets redacted)."""
    row = svc.read(outbox.get, org_id, delivery_id)
    if row is None:
        raise NotFound("delivery_not_found", "delivery not found")
    return {**_delivery_out(row), "attempts": svc.read(outbox.attempts_of, delivery_id)}


@router.post("/deliveries/{delivery_id}/replay", status_code=202, tags=["deliveries"])
def replay_delivery(delivery_id: str, org_id: OrgId, svc: ServicesDep):
    read_delivery(delivery_id, org_id, svc)
    ids_ = svc.write(outbox.requeue, org_id, {"id": delivery_id}, 1)
    svc.after_write(len(ids_))
    return {"replayed": len(ids_), "ids": ids_}


@router.post("/deliveries/replay", status_code=202, tags=["deliveries"])
def replay_deliveries(body: ReplayFilter, org_id: OrgId, svc: ServicesDep):
    """Replay a filtered set (e.g. every dead delivery of one postback in a time window)."""
    filters_ = body.model_dump(exclude={"limit"}, mode="python")
    filters_["state"] = body.state.value if body.state else None
    for name in ("created_after", "created_before"):
        filters_[name] = aware(filters_[name], name)
    ids_ = svc.write(outbox.requeue, org_id, filters_, body.limit)
    svc.after_write(len(ids_))
    return {"replayed": len(ids_)}


@router.get("/stats/deliveries", tags=["deliveries"])
def delivery_stats(org_id: OrgId, svc: ServicesDep, postback_id: str | None = None):
    """Deliveries by state, and skipped ones by the filter that stopped them."""
    return svc.read(outbox.stats, org_id, postback_id)
