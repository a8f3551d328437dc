"""The configuration of one outbound postback, validated (pydantic, unknown keys refused).

Secrets (Basic password, token, signing secret) arrive here but are stored encrypted in
a separate column and never returned: see `split_secrets`.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, Field, model_validator

from postbackd.model import ConversionStatus, StrictModel, Trigger
from postbackd.outbound import macros
from postbackd.outbound.filters import FilterConfig
from postbackd.outbound.formats import BodyFormat

HEADER_NAME = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,100}$")
# Headers we set ourselves; a configured value would make the request ambiguous.
RESERVED_HEADERS = {"content-length", "host", "transfer-encoding", "connection"}
Template = Annotated[str, Field(max_length=4000)]


def _url(value: str) -> str:
    """An http(s) URL with a host (and a valid port); macros may fill in path and query."""
    value = value.strip()
    if any(ord(ch) <= 0x20 or ord(ch) == 0x7F for ch in value):
        raise ValueError("must not contain spaces or control characters (percent-encode them)")
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an absolute http:// or https:// URL with a host")
    try:
        parts.port  # noqa: B018 - raises ValueError for a port that is not 0-65535
    except ValueError:
        raise ValueError("has an invalid port") from None
    _macro_syntax(value)
    return value


def _macro_syntax(value: Any) -> Any:
    if problems := macros.validate(value):
        raise ValueError("; ".join(problems))
    return value


def _headers(value: dict[str, str]) -> dict[str, str]:
    for name, template in value.items():
        if not HEADER_NAME.match(name):
            raise ValueError(f"{name!r} is not a valid HTTP header name")
        if name.lower() in RESERVED_HEADERS:
            raise ValueError(f"header {name!r} is set by postbackd itself")
        if "\r" in template or "\n" in template:
            raise ValueError(f"header {name!r} contains a line break")
    return _macro_syntax(value)


class Model(StrictModel):
    """A part of a postback's configuration."""


class Auth(Model):
    type: Literal["none", "basic", "token"] = "none"
    login: Annotated[str, Field(max_length=200)] | None = None
    password: Annotated[str, Field(max_length=500)] | None = Field(None, description="write-only")
    token: Annotated[str, Field(max_length=2000)] | None = Field(None, description="write-only")
    header: Annotated[str, Field(max_length=100)] = Field(
        "Authorization", description="header the token goes in"
    )
    scheme: Annotated[str, Field(max_length=30)] = Field(
        "Bearer", description="prefix before the token; empty for none"
    )

    @model_validator(mode="after")
    def _complete(self) -> Auth:
        if self.type == "basic" and (not self.login or ":" in self.login):
            raise ValueError("basic auth needs a login without ':'")
        if not HEADER_NAME.match(self.header):
            raise ValueError(f"{self.header!r} is not a valid HTTP header name")
        if self.header.lower() in RESERVED_HEADERS:
            raise ValueError(f"header {self.header!r} is set by postbackd itself")
        return self


class Retry(Model):
    schedule: list[Annotated[float, Field(ge=0, le=604800)]] = Field(
        default_factory=lambda: [5, 30, 120, 600, 1800, 7200, 21600], min_length=1, max_length=20
    )
    max_attempts: Annotated[int, Field(ge=1, le=50)] = 8
    retry_on_4xx: bool = False


class Success(Model):
    """What a successful answer looks like beyond a 2xx (SPEC 2b response rules)."""

    body_contains: Annotated[str, Field(max_length=500)] | None = None
    body_not_contains: Annotated[str, Field(max_length=500)] | None = None
    json_field: Annotated[str, Field(max_length=200)] | None = Field(
        None, description="dotted path, e.g. result.ok"
    )
    json_equals: str | int | float | bool | None = None


class PostbackConfig(Model):
    name: Annotated[str, Field(min_length=1, max_length=200)]
    campaign_id: str | None = None
    source_id: str | None = None
    goal: Annotated[str, Field(max_length=100)] | None = Field(
        None, description="event id (or alias) it is narrowed to"
    )
    trigger: Trigger
    trigger_events: list[Annotated[str, Field(max_length=100)]] = Field(
        default_factory=list, max_length=100
    )
    trigger_statuses: list[ConversionStatus] = Field(default_factory=list)
    method: Literal["GET", "POST", "PUT"] = "POST"
    url: Annotated[str, Field(max_length=4000), AfterValidator(_url)]
    format: BodyFormat = BodyFormat.JSON
    body: Annotated[Any, AfterValidator(_macro_syntax)] = Field(
        None,
        description="body template: a JSON-like structure or a string; replaces fields/static_fields",
    )
    fields: Annotated[dict[str, Template], AfterValidator(_macro_syntax)] = Field(
        default_factory=dict,
        description="their key -> our field or template, e.g. {'click': '{transaction_id}'}",
    )
    static_fields: dict[str, str | int | float | bool | None] = Field(default_factory=dict)
    params: Annotated[dict[str, Template], AfterValidator(_macro_syntax)] = Field(
        default_factory=dict, description="query parameters added to the URL"
    )
    headers: Annotated[dict[str, Template], AfterValidator(_headers)] = Field(default_factory=dict)
    auth: Auth = Field(default_factory=Auth)
    sign: bool = Field(False, description="add Standard Webhooks signature headers")
    timeout: Annotated[float, Field(gt=0, le=30)] = 10.0
    retry: Retry = Field(default_factory=Retry)
    success: Success | None = None
    filters: FilterConfig = Field(default_factory=FilterConfig)
    disable_after_failures: Annotated[int, Field(ge=0, le=10000)] = Field(
        0, description="disable after this many consecutive dead deliveries (0 = never)"
    )
    enabled: bool = True

    @model_validator(mode="after")
    def _shape(self) -> PostbackConfig:
        if self.trigger_events and self.trigger is not Trigger.EVENT:
            raise ValueError("trigger_events only applies to trigger 'event'")
        if self.trigger_statuses and self.trigger is not Trigger.CONVERSION_STATUS:
            raise ValueError("trigger_statuses only applies to trigger 'conversion_status'")
        if self.method == "GET" and self.body is not None:
            raise ValueError("a GET postback has no body; use fields or params")
        return self


# Columns of the postbacks table; everything else goes in its `config` JSON.
COLUMNS = (
    "name",
    "campaign_id",
    "source_id",
    "goal",
    "trigger",
    "trigger_events",
    "trigger_statuses",
    "enabled",
)


def split_secrets(cfg: PostbackConfig) -> tuple[dict[str, Any], dict[str, Any], dict[str, str]]:
    """(columns, config JSON without secrets, secrets) for storage."""
    data = cfg.model_dump(mode="json")
    auth = data["auth"]
    secrets = {k: v for k in ("password", "token") if (v := auth.pop(k, None))}
    columns = {k: data.pop(k) for k in COLUMNS}
    return columns, data, secrets
