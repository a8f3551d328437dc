"""Annotated dependencies that make admin routes read like prose."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from postbackd.api.services import Services
from postbackd.errors import Unauthorized
from postbackd.store import orgs

_bearer = HTTPBearer(auto_error=False, description="API key as a bearer token")
_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="API key header")


def services(request: Request) -> Services:
    return request.app.state.services


ServicesDep = Annotated[Services, Depends(services)]


def current_org(
    svc: ServicesDep,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    header: Annotated[str | None, Depends(_header)],
) -> str:
    """The organization the API key belongs to; every admin query is scoped by it."""
    key = (bearer.credentials if bearer else None) or header
    if not key:
        raise Unauthorized(
            "missing_api_key", "send an API key: Authorization: Bearer <key> or X-API-Key"
        )
    org_id = svc.read(orgs.org_for_key, key)
    if org_id is None:
        raise Unauthorized("invalid_api_key", "unknown or revoked API key")
    return org_id


OrgId = Annotated[str, Depends(current_org)]
