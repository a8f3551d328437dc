"""Admin API: the organization, its API keys, campaigns, event definitions and sources."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from fastapi import APIRouter

from postbackd.api import schemas
from postbackd.api.deps import OrgId, ServicesDep
from postbackd.errors import Conflict, NotFound
from postbackd.store import campaigns, orgs
from postbackd.store.rows import get_scoped, page, update_scoped
from postbackd.store.tables import campaigns as campaigns_t
from postbackd.store.tables import event_definitions as events_t
from postbackd.store.tables import sources as sources_t
from postbackd.store.tables import utcnow

router = APIRouter(prefix="/api/v1")


def _page(items: list, cursor: str | None) -> dict[str, Any]:
    return {"data": items, "next_cursor": cursor}


@router.get("/organization", tags=["organization"])
def read_organization(org_id: OrgId, svc: ServicesDep):
    return svc.read(orgs.get_org, org_id)


@router.patch("/organization", tags=["organization"])
def update_organization(body: schemas.OrganizationUpdate, org_id: OrgId, svc: ServicesDep):
    return svc.write(
        orgs.update_org, org_id, body.model_dump(exclude_unset=True, exclude_none=True)
    )


@router.post("/api-keys", status_code=201, tags=["organization"])
def mint_api_key(body: schemas.ApiKeyCreate, org_id: OrgId, svc: ServicesDep):
    """A new key for the caller's own organization; the key is shown only in this answer."""
    row, key = svc.write(orgs.create_key, org_id, body.name)
    return {**row, "key": key}


@router.get("/api-keys", tags=["organization"])
def list_api_keys(org_id: OrgId, svc: ServicesDep):
    return _page(svc.read(orgs.list_keys, org_id), None)


@router.delete("/api-keys/{key_id}", tags=["organization"])
def revoke_api_key(key_id: str, org_id: OrgId, svc: ServicesDep):
    if not svc.write(orgs.revoke_key, org_id, key_id):
        raise NotFound("api_key_not_found", "API key not found")
    return {"success": True, "id": key_id, "revoked": True}


# ---- campaigns ----------------------------------------------------------------------------


def _campaign(svc, org_id: str, cid: str):
    row = svc.read(get_scoped, campaigns_t, org_id, cid)
    if row is None:
        raise NotFound("campaign_not_found", "campaign not found")
    return row


@router.post("/campaigns", status_code=201, tags=["campaigns"])
def create_campaign(body: schemas.CampaignCreate, org_id: OrgId, svc: ServicesDep):
    return svc.write(campaigns.create_campaign, org_id, body.model_dump())


@router.get("/campaigns", tags=["campaigns"])
def list_campaigns(
    org_id: OrgId,
    svc: ServicesDep,
    archived: bool = False,
    limit: int = 50,
    cursor: str | None = None,
):
    where = [campaigns_t.c.org_id == org_id, campaigns_t.c.archived.is_(archived)]
    return _page(*svc.read(lambda c: page(c, campaigns_t, where, limit=limit, cursor=cursor)))


@router.get("/campaigns/{cid}", tags=["campaigns"])
def read_campaign(cid: str, org_id: OrgId, svc: ServicesDep):
    return _campaign(svc, org_id, cid)


@router.patch("/campaigns/{cid}", tags=["campaigns"])
def update_campaign(cid: str, body: schemas.CampaignUpdate, org_id: OrgId, svc: ServicesDep):
    _campaign(svc, org_id, cid)
    values = {**body.model_dump(exclude_unset=True, exclude_none=True), "updated_at": utcnow()}
    return svc.write(update_scoped, campaigns_t, org_id, cid, values)


@router.post("/campaigns/{cid}/archive", tags=["campaigns"])
def archive_campaign(cid: str, org_id: OrgId, svc: ServicesDep):
    _campaign(svc, org_id, cid)
    return svc.write(
        update_scoped, campaigns_t, org_id, cid, {"archived": True, "updated_at": utcnow()}
    )


# ---- event definitions -----------------------------------------------------------------


def _child(svc, table: sa.Table, org_id: str, cid: str, child_id: str, what: str):
    row = svc.read(get_scoped, table, org_id, child_id)
    if row is None or row["campaign_id"] != cid:
        raise NotFound(f"{what}_not_found", f"{what.replace('_', ' ')} not found")
    return row


def _check_names(conn: sa.Connection, cid: str, names: list[str], exclude: str | None) -> None:
    if clash := campaigns.event_id_taken(conn, cid, names, exclude):
        raise Conflict(
            "event_id_taken", f"{clash!r} is already an event id or alias in this campaign"
        )


# Units for the writer (module-level: the SQLite server's writer runs in another process).


def _create_event(conn: sa.Connection, org_id: str, cid: str, values: dict) -> dict:
    _check_names(conn, cid, [values["event_id"], *values["aliases"]], None)
    return campaigns.create_event_definition(conn, org_id, cid, values)


def _update_event(
    conn: sa.Connection, org_id: str, cid: str, evd_id: str, event_id: str, values: dict
) -> dict | None:
    if "aliases" in values:
        _check_names(conn, cid, [event_id, *values["aliases"]], evd_id)
    return update_scoped(conn, events_t, org_id, evd_id, {**values, "updated_at": utcnow()})


def _create_source(conn: sa.Connection, org_id: str, cid: str, values: dict) -> dict:
    if campaigns.find_source(conn, cid, values["pid"]):
        raise Conflict("pid_taken", f"pid {values['pid']!r} already exists in this campaign")
    return campaigns.create_source(conn, org_id, cid, values)


@router.post("/campaigns/{cid}/events", status_code=201, tags=["events"])
def create_event(cid: str, body: schemas.EventDefinitionCreate, org_id: OrgId, svc: ServicesDep):
    _campaign(svc, org_id, cid)
    return svc.write(_create_event, org_id, cid, body.model_dump())


@router.get("/campaigns/{cid}/events", tags=["events"])
def list_events(cid: str, org_id: OrgId, svc: ServicesDep, archived: bool = False):
    _campaign(svc, org_id, cid)
    where = [
        events_t.c.campaign_id == cid,
        events_t.c.org_id == org_id,
        events_t.c.archived.is_(archived),
    ]
    return _page(*svc.read(lambda c: page(c, events_t, where, limit=500)))


@router.get("/campaigns/{cid}/events/{evd_id}", tags=["events"])
def read_event(cid: str, evd_id: str, org_id: OrgId, svc: ServicesDep):
    return _child(svc, events_t, org_id, cid, evd_id, "event_definition")


@router.patch("/campaigns/{cid}/events/{evd_id}", tags=["events"])
def update_event(
    cid: str, evd_id: str, body: schemas.EventDefinitionUpdate, org_id: OrgId, svc: ServicesDep
):
    current = _child(svc, events_t, org_id, cid, evd_id, "event_definition")
    values = body.model_dump(exclude_unset=True, exclude_none=True)
    return svc.write(_update_event, org_id, cid, evd_id, current["event_id"], values)


@router.post("/campaigns/{cid}/events/{evd_id}/archive", tags=["events"])
def archive_event(cid: str, evd_id: str, org_id: OrgId, svc: ServicesDep):
    _child(svc, events_t, org_id, cid, evd_id, "event_definition")
    return svc.write(
        update_scoped, events_t, org_id, evd_id, {"archived": True, "updated_at": utcnow()}
    )


# ---- sources ------------------------------------------------------------------------------


@router.post("/campaigns/{cid}/sources", status_code=201, tags=["sources"])
def create_source(cid: str, body: schemas.SourceCreate, org_id: OrgId, svc: ServicesDep):
    _campaign(svc, org_id, cid)
    return svc.write(_create_source, org_id, cid, body.model_dump())


@router.get("/campaigns/{cid}/sources", tags=["sources"])
def list_sources(cid: str, org_id: OrgId, svc: ServicesDep, archived: bool = False):
    _campaign(svc, org_id, cid)
    where = [
        sources_t.c.campaign_id == cid,
        sources_t.c.org_id == org_id,
        sources_t.c.archived.is_(archived),
    ]
    return _page(*svc.read(lambda c: page(c, sources_t, where, limit=500)))


@router.get("/campaigns/{cid}/sources/{source_id}", tags=["sources"])
def read_source(cid: str, source_id: str, org_id: OrgId, svc: ServicesDep):
    return _child(svc, sources_t, org_id, cid, source_id, "source")


@router.patch("/campaigns/{cid}/sources/{source_id}", tags=["sources"])
def update_source(
    cid: str, source_id: str, body: schemas.SourceUpdate, org_id: OrgId, svc: ServicesDep
):
    _child(svc, sources_t, org_id, cid, source_id, "source")
    values = {**body.model_dump(exclude_unset=True, exclude_none=True), "updated_at": utcnow()}
    return svc.write(update_scoped, sources_t, org_id, source_id, values)


@router.post("/campaigns/{cid}/sources/{source_id}/archive", tags=["sources"])
def archive_source(cid: str, source_id: str, org_id: OrgId, svc: ServicesDep):
    source = _child(svc, sources_t, org_id, cid, source_id, "source")
    if source["pid"] == campaigns.ORGANIC:
        raise Conflict("organic_source", "the built-in organic source cannot be archived")
    return svc.write(
        update_scoped, sources_t, org_id, source_id, {"archived": True, "updated_at": utcnow()}
    )
