"""The hot inbound routes: event postbacks (seed 000), click script and lead form post.

Plain Starlette endpoints (no FastAPI dependency injection or pydantic on the way): this
is where requests per second matter. Each answers only after the writer committed.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, quote

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from postbackd import jsontext, record
from postbackd.api.errors import error_response, json_response
from postbackd.errors import Forbidden, InputError, PostbackdError, Unsupported
from postbackd.inbound.events import parse_event
from postbackd.inbound.leads import parse_click, parse_form


class InflightLocks:
    """Seed 000's "concurrent event lock": one request per lead+event at a time per process."""

    def __init__(self) -> None:
        self._held: set[tuple] = set()

    def take(self, key: tuple) -> set[tuple]:
        """Hold `key`; the caller discards it from the returned set when done (a plain
        try/finally: a generator context manager cost ~2 µs per event)."""
        if key in self._held:
            raise Forbidden(
                "event_locked", "another request for this lead and event is being processed"
            )
        self._held.add(key)
        return self._held


async def read_params(request: Request) -> dict[str, Any]:
    """Query string, then the body (JSON object, urlencoded or multipart form) on top."""
    params: dict[str, Any] = dict(request.query_params)
    if request.method == "GET":
        return params
    body = await request.body()
    if not body.strip():
        return params
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if is_json_type(ctype):
        params.update(_json_object(body))
    elif ctype == "application/x-www-form-urlencoded":
        params.update(_form(body))
    elif ctype == "multipart/form-data":
        params.update(await _multipart(request))
    else:
        raise Unsupported(
            "unsupported_media_type", f"cannot read a {ctype} body; send JSON or a form"
        )
    return params


def is_json_type(ctype: str) -> bool:
    """A body read as JSON: JSON, any `+json` type, or no type at all."""
    return ctype in ("application/json", "") or ctype.endswith("+json")


async def _multipart(request: Request) -> dict[str, str]:
    try:
        form = await request.form()
    except PostbackdError:
        raise
    except Exception as exc:  # the multipart parser's errors are not one family
        raise InputError("invalid_form", f"body is not valid multipart form data: {exc}") from None
    return {k: val for k, val in form.items() if isinstance(val, str)}


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        data = jsontext.loads(body)
    except jsontext.DecodeError as exc:
        raise InputError("invalid_json", f"body is not valid JSON: {exc.msg}") from None
    if not isinstance(data, dict):
        raise InputError("invalid_json", "body must be a JSON object")
    return data


def _form(body: bytes) -> dict[str, str]:
    try:
        return dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False))
    except (UnicodeDecodeError, ValueError):
        raise InputError("invalid_form", "body is not valid UTF-8 form data") from None


def request_context(request: Request) -> dict[str, Any]:
    """What SPEC 1.4 keeps of the visitor's request."""
    return {
        "ip": request.client.host if request.client else None,
        "user_agent": request.headers.get("user-agent", "")[:1000],
        "referrer": request.headers.get("referer", "")[:2000] or None,
        "cookies": dict(request.cookies),
    }


async def fire(
    services, params: dict[str, Any], org_id: str | None, require_cid: bool
) -> tuple[int, dict]:
    """An event postback's parameters -> (status, answer body), after the commit. Shared
    by the Starlette endpoints below and the bare ASGI route (api/event_asgi.py)."""
    try:
        cmd = parse_event(params, require_cid=require_cid)
        lease = services.handoff_lease()
        key = (org_id or cmd.cid, cmd.transaction_id, cmd.event_id)
        held = services.locks.take(key)
        try:
            result = await services.writer.run(
                record.fire_event, org_id, cmd, lease, key=cmd.transaction_id
            )
        finally:
            held.discard(key)
    except PostbackdError as exc:
        return exc.status, exc.body()
    handoff = result.pop("handoff")
    if handoff:
        services.dispatcher.take(handoff)
    services.after_write(result["data"]["deliveries"] - len(handoff))
    return 200, {"success": True, **result}


async def _fire(request: Request, org_id: str | None, require_cid: bool) -> Response:
    try:
        params = await read_params(request)
    except PostbackdError as exc:
        return error_response(exc)
    status, body = await fire(request.app.state.services, params, org_id, require_cid)
    return json_response(body, status)


async def event_global(request: Request) -> Response:
    return await _fire(request, request.path_params["org_id"], require_cid=False)


async def event_trigger(request: Request) -> Response:
    return await _fire(request, None, require_cid=True)


async def click(request: Request) -> Response:
    services = request.app.state.services
    try:
        cmd = parse_click(
            request.path_params["cid"], request.query_params, request_context(request)
        )
        result = await services.writer.run(record.enter_lead, cmd)
    except PostbackdError as exc:
        return error_response(exc)
    services.after_write(len(result["deliveries"]))
    lead = result["lead"]
    landing = result["landing_url"]  # read with the campaign in the same unit
    if not landing:
        return json_response({"success": True, "code": "lead_created", "data": _lead_out(lead)})
    target = landing.replace("{transaction_id}", quote(lead["transaction_id"], safe=""))
    return RedirectResponse(target, status_code=302)


async def lead_form(request: Request) -> Response:
    services = request.app.state.services
    try:
        cmd = parse_form(await read_params(request), request_context(request))
        result = await services.writer.run(record.enter_lead, cmd)
    except PostbackdError as exc:
        return error_response(exc)
    services.after_write(len(result["deliveries"]))
    code = "lead_created" if result["created"] else "lead_completed"
    return json_response(
        {"success": True, "code": code, "data": _lead_out(result["lead"])},
        201 if result["created"] else 200,
    )


def _lead_out(lead: dict) -> dict:
    return {
        "lead_id": lead["id"],
        "transaction_id": lead["transaction_id"],
        "campaign_id": lead["campaign_id"],
    }
