"""Demo data for the first README command: an organization, a campaign, events, sources,
leads, and outbound postbacks to an echo receiver on loopback, so a newcomer sees real
deliveries within a minute."""

from __future__ import annotations

from dataclasses import dataclass, field

import sqlalchemy as sa
from rich.console import Console

from postbackd.inbound.leads import LeadCommand
from postbackd.record import enter_lead
from postbackd.settings import Settings
from postbackd.store import campaigns, orgs
from postbackd.store.tables import organizations
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


def load(writer: Writer, settings: Settings) -> DemoInfo:
    """Create the demo organization once; every run mints a fresh key to print."""
    org_id = writer.run_sync(_ensure_org, settings)
    _row, key = writer.run_sync(orgs.create_key, org_id, "demo")
    campaign_id = writer.run_sync(_campaign_id, org_id)
    txids = [
        writer.run_sync(enter_lead, cmd)["lead"]["transaction_id"] for cmd in _leads(campaign_id)
    ]
    return DemoInfo(org_id, key, campaign_id, txids)


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
    from postbackd.store.tables import campaigns as campaigns_t

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
    console.print("See it:")
    console.print(f"  curl -s -H 'Authorization: Bearer {info.api_key}' {base}/api/v1/conversions")
    console.rule()
