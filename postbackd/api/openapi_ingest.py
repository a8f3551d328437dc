"""OpenAPI description of the hand-written ingest routes (they bypass FastAPI for speed)."""

from __future__ import annotations

from postbackd.model import CONVERSION_TIMEZONES, TRACKING_FIELDS

_ERROR = {
    "type": "object",
    "required": ["success", "code", "message"],
    "properties": {
        "success": {"type": "boolean"},
        "code": {"type": "string"},
        "message": {"type": "string"},
    },
}
_TEXT = {"type": "string", "maxLength": 500}


def _event_body(with_cid: bool) -> dict:
    props = {
        "event_id": {
            "type": "string",
            "description": "event id or alias configured on the campaign",
        },
        "transaction_id": {
            "type": "string",
            "description": "the lead's transaction id from the click script",
        },
        "revenue": {"type": ["number", "string"], "description": "required for conversion events"},
        "pid": {"type": "string", "description": "source pid; organic when omitted"},
        "clid": {"type": "string"},
        "status": {"type": "string"},
        "conversion_date": {"type": "string", "description": "YYYY-MM-DD or YYYY-MM-DD HH:MM:SS"},
        "conversion_timezone": {"type": "string", "enum": list(CONVERSION_TIMEZONES)},
        "tcpa_consent": {"type": ["integer", "string"], "enum": [0, 1, "0", "1"]},
        "tcpa_consent_date": {"type": "string", "format": "date"},
        "cost": {"type": ["number", "string"]},
        "cost_operation": {"type": "string", "enum": ["add", "substract", "subtract", "override"]},
        "adspend": {"type": ["number", "string"]},
        "min_price": {"type": ["number", "string"]},
        **{name: _TEXT for name in TRACKING_FIELDS},
    }
    required = ["event_id", "transaction_id"]
    if with_cid:
        props["cid"] = {"type": "string", "description": "campaign id"}
        required.append("cid")
    return {
        "type": "object",
        "required": required,
        "properties": props,
        "additionalProperties": {"type": ["string", "number", "boolean", "null"]},
        "description": "Other properties are lead fields (first_name, email, state …) and update the lead.",
    }


def _responses(ok: str) -> dict:
    err = {"application/json": {"schema": _ERROR}}
    return {
        "200": {"description": ok, "content": {"application/json": {"schema": {"type": "object"}}}},
        "400": {
            "description": "missing/invalid/unknown parameter, lead not found, duplicate",
            "content": err,
        },
        "403": {"description": "source inactive or concurrent event lock", "content": err},
        "413": {"description": "body too large", "content": err},
        "415": {"description": "unsupported body type", "content": err},
    }


def _event_op(summary: str, with_cid: bool, path_params: list[dict]) -> dict:
    body = _event_body(with_cid)
    op = {
        "tags": ["inbound"],
        "summary": summary,
        "parameters": path_params,
        "responses": _responses("event fired"),
    }
    post = {
        **op,
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": body},
                "application/x-www-form-urlencoded": {"schema": body},
            },
        },
    }
    return {"post": post, "get": {**op, "description": "The same parameters as a query string."}}


ORG = {"name": "org_id", "in": "path", "required": True, "schema": {"type": "string"}}


def paths() -> dict:
    return {
        "/api/event/global/{org_id}": _event_op("Global event postback (seed 000)", False, [ORG]),
        "/api/event/trigger": _event_op("Campaign event postback (cid in the body)", True, []),
        "/api/leads": {
            "post": {
                "tags": ["inbound"],
                "summary": "Create a lead with form data, or complete one by transaction_id",
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["cid"],
                                "properties": {
                                    "cid": {"type": "string"},
                                    "pid": {"type": "string"},
                                    "transaction_id": {"type": "string"},
                                    "session_data": {"type": "object"},
                                },
                                "additionalProperties": {
                                    "type": ["string", "number", "boolean", "null"]
                                },
                            }
                        }
                    },
                },
                "responses": _responses("lead completed")
                | {"201": {"description": "lead created"}},
            }
        },
        "/c/{cid}": {
            "get": {
                "tags": ["inbound"],
                "summary": "Click script: create a lead and redirect to the campaign's landing URL",
                "parameters": [
                    {"name": "cid", "in": "path", "required": True, "schema": {"type": "string"}}
                ],
                "responses": {"302": {"description": "redirect to the landing URL"}}
                | _responses("lead created"),
            }
        },
    }
