"""Admin API request bodies; unknown fields are refused (extra="forbid")."""

from __future__ import annotations

import ipaddress
import re
from decimal import Decimal
from typing import Annotated, Literal
from zoneinfo import available_timezones

from pydantic import (
    AfterValidator,
    Field,
    StringConstraints,
)

from postbackd.model import ConversionStatus, EventType, SourceType, StrictModel

SLUG = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,99}$"
Slug = Annotated[str, StringConstraints(pattern=SLUG, strip_whitespace=True)]
Name = Annotated[str, StringConstraints(min_length=1, max_length=200, strip_whitespace=True)]
Amount = Annotated[Decimal, Field(ge=-1_000_000_000, le=1_000_000_000, allow_inf_nan=False)]
_ZONES = available_timezones()


def _zone(value: str) -> str:
    if value not in _ZONES:
        raise ValueError(f"{value!r} is not an IANA timezone (e.g. America/New_York)")
    return value


def _http_url(value: str) -> str:
    if value and not re.match(r"^https?://[^\s/?#]+[^\s]*$", value):
        raise ValueError("must be an http(s) URL")
    return value


def _target(value: str) -> str:
    if value == "loopback":
        return value
    try:
        return str(ipaddress.ip_network(value, strict=False))
    except ValueError:
        raise ValueError(f"{value!r} is neither a CIDR network nor 'loopback'") from None


Zone = Annotated[str, AfterValidator(_zone)]
HttpUrl = Annotated[
    str, StringConstraints(max_length=4000, strip_whitespace=True), AfterValidator(_http_url)
]
Currency = Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]


class Body(StrictModel):
    """An admin API request body."""


class OrganizationUpdate(Body):
    name: Name | None = None
    timezone: Zone | None = None
    currency: Currency | None = None
    allowed_targets: list[Annotated[str, AfterValidator(_target)]] | None = Field(
        None, description="networks (CIDR) or 'loopback' this organization's postbacks may reach"
    )


class ApiKeyCreate(Body):
    name: Name = "api key"


class CampaignCreate(Body):
    name: Name
    landing_url: HttpUrl = Field(
        "", description="where the click script redirects; {transaction_id} is filled in"
    )


class CampaignUpdate(Body):
    name: Name | None = None
    landing_url: HttpUrl | None = None


class EventDefinitionCreate(Body):
    event_id: Slug
    name: Annotated[str, StringConstraints(max_length=200)] = ""
    type: EventType = EventType.CONVERSION
    allow_duplicates: bool = False
    aliases: list[Slug] = Field(default_factory=list, max_length=50)
    payout: Amount | None = Field(None, description="what the source earns per conversion")


class EventDefinitionUpdate(Body):
    name: Annotated[str, StringConstraints(max_length=200)] | None = None
    type: EventType | None = None
    allow_duplicates: bool | None = None
    aliases: list[Slug] | None = Field(None, max_length=50)
    payout: Amount | None = None


class SourceCreate(Body):
    pid: Slug
    name: Annotated[str, StringConstraints(max_length=200)] = ""
    type: Literal[
        SourceType.CUSTOM_SOURCE,
        SourceType.MARKETING_PARTNER,
        SourceType.MEDIA_CHANNEL,
        SourceType.AFFILIATE,
    ] = SourceType.CUSTOM_SOURCE
    active: bool = True


class SourceUpdate(Body):
    name: Annotated[str, StringConstraints(max_length=200)] | None = None
    active: bool | None = None


class Distribution(Body):
    status: Literal["sold", "unsold"]
    buyer: Annotated[str, StringConstraints(max_length=200)] | None = None
    price: Amount | None = None


class ConversionStatusChange(Body):
    status: ConversionStatus
    note: Annotated[str, StringConstraints(max_length=500)] = ""
