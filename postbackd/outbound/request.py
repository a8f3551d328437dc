"""Render one outbound HTTP request from a postback's config and a delivery's context (pure).

Escaping follows where a value lands: percent-encoding in the URL, the body format's own
encoder for field mappings, JSON / XML escaping for string body templates, raw in headers
(line breaks removed). The idempotency key and `webhook-id` are the delivery id, the same
on every attempt.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

from postbackd import __version__
from postbackd.outbound import context as outbound_context
from postbackd.outbound import macros, signing
from postbackd.outbound.formats import BodyFormat, encode

USER_AGENT = f"postbackd/{__version__}"
TEMPLATE_ESCAPE = {
    BodyFormat.JSON: macros.Escape.JSON,
    BodyFormat.XML_UTF8: macros.Escape.XML,
    BodyFormat.XML_UTF16: macros.Escape.XML,
    BodyFormat.FORM: macros.Escape.URL,
}
CONTENT_TYPES = {
    BodyFormat.JSON: "application/json",
    BodyFormat.XML_UTF8: "application/xml; charset=utf-8",
    BodyFormat.XML_UTF16: "application/xml; charset=utf-16",
    BodyFormat.FORM: "application/x-www-form-urlencoded",
}


@dataclass(frozen=True, slots=True)
class OutboundRequest:
    method: str
    url: str
    headers: dict[str, str]
    body: bytes
    missing: tuple[str, ...]


class _Missing:
    """Collects the names of macros that rendered empty, in order, once each."""

    def __init__(self) -> None:
        self.names: dict[str, None] = {}  # a dict keeps first-seen order and dedupes in O(1)

    def add(self, names: tuple[str, ...]) -> None:
        if names:
            self.names.update(dict.fromkeys(names))  # a known name keeps its first place

    def text(self, template: str, ctx: Mapping[str, Any], escape=macros.Escape.RAW) -> str:
        out = macros.render(template, ctx, escape)
        self.add(out.missing)
        return out.text

    def value(self, template: Any, ctx: Mapping[str, Any]) -> Any:
        out, missing = macros.render_value(template, ctx)
        self.add(missing)
        return out


def build(
    config: Mapping[str, Any],
    secrets: Mapping[str, str],
    context: Mapping[str, Any],
    delivery_id: str,
    now: int,
) -> OutboundRequest:
    """The exact request a delivery sends (`now` is the unix time used for signing)."""
    ctx = outbound_context.expand(context)
    ctx["delivery_id"] = ctx["idempotency_key"] = delivery_id
    seen = _Missing()
    fmt = BodyFormat(config.get("format") or BodyFormat.JSON)
    method = config.get("method", "POST")
    fields = _fields(config, ctx, seen)
    query = {k: seen.text(v, ctx) for k, v in (config.get("params") or {}).items()}
    if method == "GET":
        query.update({k: _text(v) for k, v in fields.items()})
    url = _with_query(seen.text(config["url"], ctx, macros.Escape.URL), query)
    headers = {"User-Agent": USER_AGENT, "Idempotency-Key": delivery_id}
    body = b""
    if method != "GET":
        body, headers["Content-Type"] = _body(config, fmt, fields, ctx, seen)
    headers.update(
        {k: _one_line(seen.text(v, ctx)) for k, v in (config.get("headers") or {}).items()}
    )
    headers.update(_auth(config.get("auth") or {}, secrets))
    if config.get("sign") and secrets.get("signing_secret"):
        headers.update(signing.sign(secrets["signing_secret"], delivery_id, now, body))
    return OutboundRequest(method, url, headers, body, tuple(seen.names))


def _fields(config: Mapping[str, Any], ctx: Mapping[str, Any], seen: _Missing) -> dict[str, Any]:
    """Field mapping (their key -> our template) plus static fields, in that order."""
    out: dict[str, Any] = {}
    for key, template in (config.get("fields") or {}).items():
        out[key] = seen.value(template, ctx)
    out.update(config.get("static_fields") or {})
    return out


def _body(
    config, fmt: BodyFormat, fields: dict[str, Any], ctx, seen: _Missing
) -> tuple[bytes, str]:
    template = config.get("body")
    if isinstance(template, str):
        text = seen.text(template, ctx, TEMPLATE_ESCAPE.get(fmt, macros.Escape.RAW))
        data = text.encode("utf-16" if fmt is BodyFormat.XML_UTF16 else "utf-8")
        return data, CONTENT_TYPES.get(fmt, "text/plain; charset=utf-8")
    payload = seen.value(template, ctx) if template is not None else fields
    encoded = encode(fmt, payload)
    return encoded.content, encoded.content_type


def _with_query(url: str, query: Mapping[str, Any]) -> str:
    if not query:
        return url
    parts = urlsplit(url)
    extra = urlencode({k: _text(v) for k, v in query.items()})
    joined = f"{parts.query}&{extra}" if parts.query else extra
    return urlunsplit(parts._replace(query=joined))


def _text(value: Any) -> str:
    """A GET field or query value as text, exactly as the macro language renders it."""
    if type(value) is str:
        return value  # what rendering "{v}" gives for plain text, without the round trip
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return macros.render("{v}", {"v": value}).text


def _one_line(value: str) -> str:
    return value.replace("\r", " ").replace("\n", " ")


def _auth(auth: Mapping[str, Any], secrets: Mapping[str, str]) -> dict[str, str]:
    if auth.get("type") == "basic":
        return {
            "Authorization": signing.basic_auth_header(auth["login"], secrets.get("password", ""))
        }
    if auth.get("type") == "token" and secrets.get("token"):
        scheme = auth.get("scheme") or ""
        return {auth.get("header") or "Authorization": f"{scheme} {secrets['token']}".strip()}
    return {}


def body_text(body: bytes) -> str:
    """A request body as text for logs and the test endpoint (xml-16 carries a BOM)."""
    if body.startswith((b"\xff\xfe", b"\xfe\xff")):
        return body.decode("utf-16", "replace")
    return body.decode("utf-8", "replace")


def secret_headers(config: Mapping[str, Any]) -> list[str]:
    """Headers that carry a secret whatever their value looks like (the token's header)."""
    auth = config.get("auth") or {}
    return [auth.get("header") or "Authorization"] if auth.get("type") == "token" else []


def secret_values(secrets: Mapping[str, str]) -> list[str]:
    """Every secret a log line must never show."""
    return [v for v in secrets.values() if v]
