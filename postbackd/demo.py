"""Demo data for the first README command: an organization, a campaign, events, sources,
leads, and outbound postbacks to an echo receiver on loopback, so a newcomer sees real
deliveries within a minute."""

from __future__ import annotations

from dataclasses import dataclass, field

import sqlalchemy as sa
from rich.console import Console

from postbackd.crypto import SecretBox
from postbackd.inbound.events import parse_event
from postbackd.inbound.leads import LeadCommand
from postbackd.outbound.config import PostbackConfig, split_secrets
from postbackd.outbound.signing import generate_secret
from postbackd.record import enter_lead, fire_event
from postbackd.settings import Settings
from postbackd.store import campaigns, orgs, postbacks
from postbackd.store.tables import campaigns as campaigns_t
from postbackd.store.tables import organizations
from postbackd.store.tables import postbacks as postbacks_t
from postbackd.store.writer import Writer

DEMO_ORG = "postbackd demo"
EVENTS = [
    {"event_id": "sale_completed", "name": "Sale completed", "type": "conversion", "payout": 12},
    {
        "event_id": "lead_approved",
        "name": "Lead approved",
        "type": "conversion",
        "aliases": ["approve", "approved"],
    },
    {"event_id": "page_view", "name": "Page view", "type": "tracking", "allow_duplicates": True},
]
SOURCES = [
    {"pid": "fb_ads", "name": "Facebook Ads", "type": "marketing_partner", "active": True},
    {"pid": "aff_42", "name": "Affiliate 42", "type": "affiliate", "active": True},
    {"pid": "paused", "name": "Paused partner", "type": "custom_source", "active": False},
]


@dataclass
class DemoInfo:
    org_id: str
    api_key: str
    campaign_id: str
    transaction_ids: list[str] = field(default_factory=list)


def load(writer: Writer, settings: Settings, box: SecretBox, receiver_url: str) -> DemoInfo:
    """Create the demo organization once (every run mints a fresh key to print), point its
    postbacks at this run's echo receiver, and queue some leads and conversions so the
    worker has real deliveries to make as soon as the server starts."""
    org_id = writer.run_sync(_ensure_org, settings)
    _row, key = writer.run_sync(orgs.create_key, org_id, "demo")
    campaign_id = writer.run_sync(_campaign_id, org_id)
    writer.run_sync(_replace_postbacks, org_id, campaign_id, receiver_url, box)
    txids = [
        writer.run_sync(enter_lead, cmd)["lead"]["transaction_id"] for cmd in _leads(campaign_id)
    ]
    events = [("sale_completed", "42.50"), ("approve", "15"), ("sale_completed", "8")]
    for tid, (event_id, revenue) in zip(txids, events, strict=True):
        cmd = parse_event({"event_id": event_id, "transaction_id": tid, "revenue": revenue})
        writer.run_sync(fire_event, org_id, cmd)
    return DemoInfo(org_id, key, campaign_id, txids)


def postback_configs(campaign_id: str, receiver_url: str) -> list[PostbackConfig]:
    """Several formats and triggers, one that needs retries and one that skips a state."""
    base = {"campaign_id": campaign_id, "retry": {"schedule": [2, 5, 10], "max_attempts": 4}}
    configs = [
        {
            "name": "Source JSON on conversion",
            "trigger": "event",
            "url": receiver_url + "/echo/json",
            "fields": {"click_id": "{transaction_id}", "payout": "{payout}", "event": "{event_id}"},
            "static_fields": {"network": "postbackd-demo"},
            "success": {"json_field": "success", "json_equals": True},
        },
        {
            "name": "Tracker GET on session start",
            "trigger": "session_start",
            "method": "GET",
            "url": receiver_url + "/echo/session?sid={sessionid}&src={utm_source}",
        },
        {
            "name": "Affiliate XML on approval (not in CA)",
            "trigger": "conversion_status",
            "trigger_statuses": ["approved"],
            "format": "xml-8",
            "url": receiver_url + "/echo/xml",
            "fields": {"click": "{transaction_id}", "status": "{status}", "state": "{state}"},
            "filters": {"state": {"enabled": True, "states": ["California"]}},
        },
        {
            "name": "Flaky form postback on form completion",
            "trigger": "form_complete",
            "format": "x-www-form-urlencoded",
            "url": receiver_url + "/flaky/form",
            "fields": {"email": "{email|sha256}", "zip": "{zip_code}"},
            "sign": True,
        },
    ]
    return [PostbackConfig.model_validate({**base, **c}) for c in configs]


def _replace_postbacks(
    conn: sa.Connection, org_id: str, campaign_id: str, receiver_url: str, box: SecretBox
) -> None:
    """The receiver's port changes every run: archive last run's postbacks, add fresh ones."""
    conn.execute(
        postbacks_t.update()
        .where(postbacks_t.c.org_id == org_id)
        .values(archived=True, enabled=False)
    )
    for cfg in postback_configs(campaign_id, receiver_url):
        columns, config, secrets = split_secrets(cfg)
        if cfg.sign:
            secrets["signing_secret"] = generate_secret()
        postbacks.insert(conn, org_id, {**columns, "config": config, "secrets": box.seal(secrets)})


def _ensure_org(conn: sa.Connection, settings: Settings) -> str:
    existing = conn.execute(
        sa.select(organizations.c.id).where(organizations.c.name == DEMO_ORG)
    ).scalar()
    if existing:
        return existing
    org = orgs.create_org(conn, DEMO_ORG, timezone="America/New_York")
    campaign = campaigns.create_campaign(
        conn,
        org["id"],
        {
            "name": "Solar quotes",
            "landing_url": f"{_base(settings)}/healthz?tid={{transaction_id}}",
        },
    )
    for event in EVENTS:
        campaigns.create_event_definition(conn, org["id"], campaign["id"], {"aliases": [], **event})
    for source in SOURCES:
        campaigns.create_source(conn, org["id"], campaign["id"], source)
    return org["id"]


def _campaign_id(conn: sa.Connection, org_id: str) -> str:
    stmt = (
        sa.select(campaigns_t.c.id).where(campaigns_t.c.org_id == org_id).order_by(campaigns_t.c.id)
    )
    return conn.execute(stmt).scalar()


def _leads(campaign_id: str) -> list[LeadCommand]:
    people = [
        ("Ada", "ada@example.com", "NY", "10001", "fb_ads"),
        ("Grace", "grace@example.com", "CA", "94105", "aff_42"),
        ("Linus", "linus@example.com", "TX", "73301", "organic"),
    ]
    return [
        LeadCommand(
            cid=campaign_id,
            pid=pid,
            fields={"first_name": name, "email": email, "state": state, "zip_code": zip_code},
            tracking={"sub1": "demo", "utm_source": pid},
            form_complete=True,
        )
        for name, email, state, zip_code, pid in people
    ]


def _base(settings: Settings) -> str:
    return settings.public_url or f"http://{settings.host}:{settings.port}"


def settings_for_demo(settings: Settings) -> Settings:
    """The demo's postbacks go to its own echo receiver on loopback, so allow loopback."""
    return settings.replace(allow_loopback_targets=True)


def print_welcome(console: Console, settings: Settings, info: DemoInfo) -> None:
    base = _base(settings)
    tid = info.transaction_ids[0]
    console.rule("[bold]postbackd demo")
    console.print(f"API docs        {base}/docs")
    console.print(f"organization    {info.org_id}")
    console.print(f"admin API key   {info.api_key}")
    console.print(f"campaign (cid)  {info.campaign_id}")
    console.print(f"a lead          transaction_id={tid}")
    console.print("\nPost a conversion (seed 000 global event postback):")
    console.print(
        f"  curl -s '{base}/api/event/global/{info.org_id}?event_id=sale_completed"
        f"&transaction_id={tid}&revenue=42.50&pid=fb_ads'"
    )
    console.print(
        "See conversions and the deliveries the worker is making (watch the receiver lines):"
    )
    console.print(f"  curl -s -H 'Authorization: Bearer {info.api_key}' {base}/api/v1/conversions")
    console.print(f"  curl -s -H 'Authorization: Bearer {info.api_key}' {base}/api/v1/deliveries")
    console.print(
        f"  curl -s -H 'Authorization: Bearer {info.api_key}' {base}/api/v1/stats/deliveries"
    )
    console.rule()
