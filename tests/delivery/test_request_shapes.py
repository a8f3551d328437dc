"""Outbound requests byte for byte, as a real receiver on 127.0.0.1 gets them.

Every method x body format with field mapping, static fields, request params and headers;
body templates (structures keep native types, strings are JSON/XML-escaped); hostile
values escaped for where they land; request-context macros from the click script and the
form post; missing macros; the delivery id as idempotency key on every attempt.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import json
import time
import xml.etree.ElementTree as ET
from urllib.parse import parse_qsl, quote, quote_plus

import pytest
from aiohttp import web

from tests.helpers import (
    add_postback,
    fire_event,
    new_lead,
    setup_campaign,
    wait_final,
    wait_state,
)
from tests.receiver import Answer, Received, Receiver

# Hostile values: quotes, &, <, >, CR/LF, unicode, emoji, spaces, '+', '/', '%', '=', '?', '#'.
NOTE = "He said \"hi\" & <b>bye</b>\r\nline2 + a/b 100% 'ok' =;"
WHO = "Zoë 🚀"
SUB = "a b+c/d%e&f=g?h#i"

FORMATS = ["json", "xml-8", "xml-16", "x-www-form-urlencoded", "form-data"]
CONTENT_TYPES = {
    "json": "application/json",
    "xml-8": "application/xml; charset=utf-8",
    "xml-16": "application/xml; charset=utf-16",
    "x-www-form-urlencoded": "application/x-www-form-urlencoded",
}
MAPPING = {
    "click": "{transaction_id}",
    "amount": "{revenue}",
    "who": "{first_name}",
    "note": "{note}",
    "gone": "{no_such_field}",
}
STATIC = {"network": "post&back", "n": 7, "flag": True, "none": None}
PARAMS = {"p": "{sub1}", "lit": "x y"}
HEADERS = {"X-Note": "{note}", "X-Sub": "{sub1}", "X-Static": "plain", "X-Gone": "{gone_header}"}
URL_QUERY = "?u={note}&w={first_name}&g={gone_in_url}"


class RawReceiver(Receiver):
    """The shared receiver, recording the query string and path exactly as sent (aiohttp's
    `query_string` and `path` are partly percent-decoded by yarl)."""

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        got = Received(
            request.method,
            request.rel_url.raw_path,
            request.rel_url.raw_query_string,
            dict(request.headers),
            await request.read(),
            time.monotonic(),
        )
        self.requests.append(got)
        answer = self.script(got, len(self.requests))
        if answer.delay:
            await asyncio.sleep(answer.delay)
        return web.Response(status=answer.status, body=answer.body, headers=answer.headers)


@pytest.fixture
def receiver():
    r = RawReceiver().start()
    yield r
    r.stop()


@pytest.fixture
def world(live) -> dict:
    """A campaign and a lead carrying the hostile values (no postbacks yet)."""
    campaign = setup_campaign(live)
    lead = new_lead(live, campaign["id"], pid="fb", first_name=WHO, note=NOTE, sub1=SUB)
    return {"cid": campaign["id"], **lead}


def text_values(tid: str) -> dict[str, str]:
    """Mapping then static fields, as the text formats must carry them."""
    return {
        "click": tid,
        "amount": "12.5",
        "who": WHO,
        "note": NOTE,
        "gone": "",
        "network": "post&back",
        "n": "7",
        "flag": "true",
        "none": "",
    }


def json_values(tid: str) -> dict:
    return {"click": tid, "amount": 12.5, "who": WHO, "note": NOTE, "gone": None, **STATIC}


def text_pairs(tid: str, order: list[str] | None = None) -> list[tuple[str, str]]:
    values = text_values(tid)
    return [(k, values[k]) for k in order or values]


def stored_order(client, postback_id: str) -> list[str]:
    """Field order as the API shows the stored config (see test_field_mapping_order_is_kept,
    which checks that this is the configured order)."""
    cfg = client.get(f"/api/v1/postbacks/{postback_id}").json()
    return [*cfg["fields"], *cfg["static_fields"]]


def xml_text(value: str) -> str:
    """Element text as the XML body encoder documents it: & < > escaped, CR as &#13;."""
    return (
        value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("\r", "&#13;")
    )


def xml_template_escape(value: str) -> str:
    """What a string XML template must do to a value: safe in elements and attributes."""
    table = {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&apos;"}
    table |= {"\t": "&#9;", "\n": "&#10;", "\r": "&#13;"}
    return value.translate(str.maketrans(table))


def expected_body(fmt: str, tid: str, boundary: str | None, order: list[str]) -> bytes:
    pairs = text_pairs(tid, order)
    if fmt == "json":
        native = {k: json_values(tid)[k] for k in order}
        return json.dumps(native, ensure_ascii=False, separators=(",", ":")).encode()
    if fmt in ("xml-8", "xml-16"):
        encoding = "UTF-8" if fmt == "xml-8" else "UTF-16"
        inner = "".join(f"<{k}>{xml_text(v)}</{k}>" for k, v in pairs)
        doc = f'<?xml version="1.0" encoding="{encoding}"?><postback>{inner}</postback>'
        return doc.encode() if fmt == "xml-8" else b"\xff\xfe" + doc.encode("utf-16-le")
    if fmt == "x-www-form-urlencoded":
        return "&".join(f"{k}={quote_plus(v)}" for k, v in pairs).encode("ascii")
    delimiter = f"--{boundary}".encode()
    parts = [
        delimiter
        + f'\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n'.encode()
        + v.encode()
        + b"\r\n"
        for k, v in pairs
    ]
    return b"".join(parts) + delimiter + b"--\r\n"


def parsed_pairs(fmt: str, content_type: str, body: bytes) -> list[tuple[str, str]]:
    """Parse a text-format body back with the standard library."""
    if fmt in ("xml-8", "xml-16"):
        root = ET.fromstring(body)
        assert root.tag == "postback"
        return [(child.tag, child.text or "") for child in root]
    if fmt == "x-www-form-urlencoded":
        return parse_qsl(body.decode("ascii"), keep_blank_values=True, strict_parsing=True)
    raw = f"Content-Type: {content_type}\r\n\r\n".encode() + body
    message = email.message_from_bytes(raw, policy=email.policy.HTTP)
    assert message.is_multipart() and not message.defects, message.defects
    return [
        (
            part.get_param("name", header="content-disposition"),
            part.get_payload(decode=True).decode(),
        )
        for part in message.iter_parts()
    ]


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_method_and_format_byte_for_byte(live, receiver, world, fmt):
    tid = world["transaction_id"]
    postbacks = {
        method: add_postback(
            live,
            receiver,
            f"/{method}/{fmt}{URL_QUERY}",
            method=method,
            format=fmt,
            fields=MAPPING,
            static_fields=STATIC,
            params=PARAMS,
            headers=HEADERS,
        )
        for method in ("GET", "POST", "PUT")
    }
    fire_event(live, tid, revenue=12.5)
    got = {r.path: r for r in receiver.wait_for(3)}
    assert sorted(got) == sorted(f"/{m}/{fmt}" for m in postbacks), got.keys()

    url_query = f"u={quote(NOTE, safe='')}&w={quote(WHO, safe='')}&g=&p={quote_plus(SUB)}&lit=x+y"
    for method, pb in postbacks.items():
        order = stored_order(live, pb["id"])
        fields_query = "&".join(f"{k}={quote_plus(v)}" for k, v in text_pairs(tid, order))
        [delivery] = wait_state(live, {"postback_id": pb["id"]}, "delivered")
        req = got[f"/{method}/{fmt}"]
        assert req.method == method
        assert req.headers["Idempotency-Key"] == delivery["id"]
        assert req.headers["User-Agent"].startswith("postbackd/")
        assert req.headers["X-Note"] == NOTE.replace("\r", " ").replace("\n", " ")
        assert (req.headers["X-Sub"], req.headers["X-Static"]) == (SUB, "plain")
        assert req.headers["X-Gone"] == ""
        assert sorted(delivery["missing"]) == ["gone_header", "gone_in_url", "no_such_field"]
        if method == "GET":
            # GET carries the fields in the query string, after the params, and no body.
            assert req.body == b"" and "Content-Type" not in req.headers
            fields_got = parse_qsl(req.query, keep_blank_values=True)[5:]
            assert fields_got == text_pairs(tid, order)
            assert req.query == f"{url_query}&{fields_query}"
            continue
        assert parse_qsl(req.query, keep_blank_values=True) == [
            ("u", NOTE),
            ("w", WHO),
            ("g", ""),
            ("p", SUB),
            ("lit", "x y"),
        ]
        assert req.query == url_query
        content_type = req.headers["Content-Type"]
        boundary = None
        if fmt == "form-data":
            prefix = "multipart/form-data; boundary="
            assert content_type.startswith(prefix), content_type
            boundary = content_type[len(prefix) :]
        else:
            assert content_type == CONTENT_TYPES[fmt]
        if fmt == "json":
            assert json.loads(req.body) == json_values(tid)
        else:
            assert parsed_pairs(fmt, content_type, req.body) == text_pairs(tid, order)
        assert req.body == expected_body(fmt, tid, boundary, order)


def test_field_mapping_order_is_kept(live, receiver, world):
    """Partners' XML schemas (xs:sequence) and fixed-order URLs need the configured order."""
    fields = {"zeta": "{transaction_id}", "b": "2", "alpha": "3", "mm": "4"}
    static = {"z2": "s", "a2": "t"}
    pb = add_postback(live, receiver, "/xml", format="xml-8", fields=fields, static_fields=static)
    add_postback(live, receiver, "/get", method="GET", fields=fields, static_fields=static)
    assert list(live.get(f"/api/v1/postbacks/{pb['id']}").json()["fields"]) == list(fields)
    fire_event(live, world["transaction_id"], revenue=1)
    got = {r.path: r for r in receiver.wait_for(2)}
    order = ["zeta", "b", "alpha", "mm", "z2", "a2"]
    assert [child.tag for child in ET.fromstring(got["/xml"].body)] == order
    assert [k for k, _v in parse_qsl(got["/get"].query)] == order


def test_simple_fields_exact_bytes(live, receiver, world):
    """The plainest case per format, spelled out literally."""
    for fmt in FORMATS:
        add_postback(
            live, receiver, f"/{fmt}", format=fmt, fields={"a": "1", "b": "x y"}, static_fields={}
        )
    fire_event(live, world["transaction_id"], revenue=1)
    got = {r.path: r for r in receiver.wait_for(len(FORMATS))}
    assert got["/json"].body == b'{"a":"1","b":"x y"}'
    xml = '<?xml version="1.0" encoding="{}"?><postback><a>1</a><b>x y</b></postback>'
    assert got["/xml-8"].body == xml.format("UTF-8").encode()
    assert got["/xml-16"].body == b"\xff\xfe" + xml.format("UTF-16").encode("utf-16-le")
    assert got["/x-www-form-urlencoded"].body == b"a=1&b=x+y"
    boundary = got["/form-data"].headers["Content-Type"].split("boundary=", 1)[1]
    assert (
        got["/form-data"].body
        == (
            f'--{boundary}\r\nContent-Disposition: form-data; name="a"\r\n\r\n1\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="b"\r\n\r\nx y\r\n'
            f"--{boundary}--\r\n"
        ).encode()
    )


def test_structure_body_templates_keep_native_types(live, receiver, world):
    tid = world["transaction_id"]
    template = {
        "data": [
            {
                "event_name": "Lead",
                "value": "{revenue}",
                "label": "{revenue} USD",
                "who": "{first_name}",
                "ok": True,
                "n": 3,
                "nothing": None,
                "nested": {"note": "{note}", "gone": "{nope}", "tid": "{transaction_id}"},
                "list": ["{sub1}", 1],
            }
        ],
        "by_{pid}": "{event_id}",
    }
    # `body` replaces the field mapping and static fields.
    ignored = {"fields": {"x": "{transaction_id}"}, "static_fields": {"y": 1}}
    add_postback(live, receiver, "/json", body=template, **ignored)
    nested = {"lead": {"who": "{first_name}", "items": ["a", "{sub1}"], "amount": "{revenue}"}}
    add_postback(live, receiver, "/xml", format="xml-8", body=nested, **ignored)
    add_postback(live, receiver, "/form", format="x-www-form-urlencoded", body=nested, **ignored)
    fire_event(live, tid, revenue=12.5)
    got = {r.path: r for r in receiver.wait_for(3)}

    assert json.loads(got["/json"].body) == {
        "data": [
            {
                "event_name": "Lead",
                "value": 12.5,
                "label": "12.5 USD",
                "who": WHO,
                "ok": True,
                "n": 3,
                "nothing": None,
                "nested": {"note": NOTE, "gone": None, "tid": tid},
                "list": [SUB, 1],
            }
        ],
        "by_organic": "sale_completed",
    }
    assert (
        got["/xml"].body
        == (
            '<?xml version="1.0" encoding="UTF-8"?><postback><lead>'
            f"<who>{WHO}</who><items>a</items><items>{xml_text(SUB)}</items>"
            "<amount>12.5</amount></lead></postback>"
        ).encode()
    )
    assert parse_qsl(got["/form"].body.decode("ascii"), strict_parsing=True) == [
        ("lead[who]", WHO),
        ("lead[items]", "a"),
        ("lead[items]", SUB),
        ("lead[amount]", "12.5"),
    ]


def test_string_body_templates_escape_json_and_xml(live, receiver, world):
    tid = world["transaction_id"]
    json_template = (
        '{"note": "{note}", "who": "{first_name}", "amount": {revenue}, '
        '"lit": "{not a token}", "sub": "{sub1}"}'
    )
    add_postback(live, receiver, "/json", body=json_template)
    add_postback(live, receiver, "/put-json", method="PUT", body=json_template)
    xml_template = (
        '<lead id="{transaction_id}"><note a="{note}">{note}</note>'
        "<who>{first_name}</who><sub>{sub1}</sub></lead>"
    )
    add_postback(live, receiver, "/xml-8", format="xml-8", body=xml_template)
    add_postback(live, receiver, "/xml-16", format="xml-16", body=xml_template)
    fire_event(live, tid, revenue=12.5)
    got = {r.path: r for r in receiver.wait_for(4)}

    for path in ("/json", "/put-json"):
        assert got[path].headers["Content-Type"] == "application/json"
        assert json.loads(got[path].body) == {
            "note": NOTE,
            "who": WHO,
            "amount": 12.5,
            "lit": "{not a token}",
            "sub": SUB,
        }
    assert got["/put-json"].method == "PUT"

    esc = xml_template_escape
    xml_expected = (
        f'<lead id="{tid}"><note a="{esc(NOTE)}">{esc(NOTE)}</note>'
        f"<who>{esc(WHO)}</who><sub>{esc(SUB)}</sub></lead>"
    )
    assert got["/xml-8"].headers["Content-Type"] == "application/xml; charset=utf-8"
    assert got["/xml-8"].body == xml_expected.encode()
    assert got["/xml-16"].headers["Content-Type"] == "application/xml; charset=utf-16"
    assert got["/xml-16"].body[:2] in (b"\xff\xfe", b"\xfe\xff")
    assert got["/xml-16"].body.decode("utf-16") == xml_expected
    for path in ("/xml-8", "/xml-16"):
        root = ET.fromstring(got[path].body)
        note = root.find("note")
        assert root.get("id") == tid
        assert (note.get("a"), note.text) == (NOTE, NOTE)
        assert (root.findtext("who"), root.findtext("sub")) == (WHO, SUB)


def test_string_form_body_template_url_encodes_values(live, receiver, world):
    """A form body is URL-encoded data: values landing in it must be percent-encoded, or
    an '&' or '=' in a lead field splits or corrupts the partner's parameters."""
    add_postback(
        live,
        receiver,
        "/form",
        format="x-www-form-urlencoded",
        body="note={note}&who={first_name}&sub={sub1}&fixed=1",
    )
    fire_event(live, world["transaction_id"], revenue=1)
    [req] = receiver.wait_for(1)
    assert req.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert parse_qsl(req.body.decode("utf-8"), keep_blank_values=True) == [
        ("note", NOTE),
        ("who", WHO),
        ("sub", SUB),
        ("fixed", "1"),
    ]


def test_request_context_macros_from_click_cookies_and_session_data(live, receiver):
    campaign = setup_campaign(live)
    fields = {
        "qs": "{req.qs.clickid}",
        "weird": "{req.qs.weird}",
        "case": "{req.qs.CaseKey}",
        "lower": "{req.qs.casekey}",  # query names are case-sensitive
        "fbc": "{req.cookie._fbc}",
        "ttclid": "{req.cookie.ttclid}",
        "deep": "{req.sessionData.a.b}",
        "alias": "{req.session.contact.firstName}",
        "obj": "{req.sessionData.contact}",
        "email": "{email}",
        "ip": "{ipaddress}",
        "ua": "{useragent}",
        "sub1": "{sub1}",
    }
    query = "?c={req.qs.clickid}&w={req.qs.weird}"
    form_pb = add_postback(live, receiver, "/form" + query, trigger="form_complete", fields=fields)
    session_pb = add_postback(live, receiver, "/session", trigger="session_start", fields=fields)

    weird = "a b&c=d/é+%"
    r = live.get(
        f"/c/{campaign['id']}",
        params={"pid": "fb", "clickid": "CLK-1", "weird": weird, "CaseKey": "K", "sub1": "s1"},
        headers={"cookie": "_fbc=fb.1.123.abc; ttclid=TT-9", "user-agent": "UA/1.0"},
        follow_redirects=False,
    )
    assert r.status_code == 302, r.text
    tid = r.headers["location"].split("t=", 1)[1]
    session_data = {
        "contact": {"firstName": "Ada", "email": "ada@example.com"},
        "a": {"b": 'deep & "quoted" <x>'},
    }
    r = live.post(
        "/api/leads",
        json={
            "cid": campaign["id"],
            "transaction_id": tid,
            "email": "ada@example.com",
            "session_data": session_data,
        },
    )
    assert r.status_code == 200 and r.json()["code"] == "lead_completed", r.text
    got = {req.path: req for req in receiver.wait_for(2)}

    assert got["/form"].query == f"c=CLK-1&w={quote(weird, safe='')}"
    assert json.loads(got["/form"].body) == {
        "qs": "CLK-1",
        "weird": weird,
        "case": "K",
        "lower": None,
        "fbc": "fb.1.123.abc",
        "ttclid": "TT-9",
        "deep": 'deep & "quoted" <x>',
        "alias": "Ada",
        "obj": session_data["contact"],
        "email": "ada@example.com",
        "ip": "testclient",
        "ua": "UA/1.0",
        "sub1": "s1",
    }
    [form_delivery] = wait_state(live, {"postback_id": form_pb["id"]}, "delivered")
    assert form_delivery["missing"] == ["req.qs.casekey"]

    # Session start (seed 002): the entry URL and cookies, no form or session data yet.
    assert json.loads(got["/session"].body) == {
        "qs": "CLK-1",
        "weird": weird,
        "case": "K",
        "lower": None,
        "fbc": "fb.1.123.abc",
        "ttclid": "TT-9",
        "deep": None,
        "alias": None,
        "obj": None,
        "email": None,
        "ip": "testclient",
        "ua": "UA/1.0",
        "sub1": "s1",
    }
    [session_delivery] = wait_state(live, {"postback_id": session_pb["id"]}, "delivered")
    assert sorted(session_delivery["missing"]) == sorted(
        [
            "req.qs.casekey",
            "req.sessionData.a.b",
            "req.session.contact.firstName",
            "req.sessionData.contact",
            "email",
        ]
    )


def test_missing_macros_render_empty_everywhere_and_are_listed(live, receiver, world):
    pb = add_postback(
        live,
        receiver,
        "/m/{nope_path}x?q={nope_query}&ok={transaction_id}",
        params={"p": "{nope_param}"},
        headers={"X-Nope": "[{nope_header}]"},
        body='{"a": "{nope_body}", "b": "{nope_body}"}',
    )
    fire_event(live, world["transaction_id"], revenue=1)
    [req] = receiver.wait_for(1)
    assert req.path == "/m/x"
    assert req.query == f"q=&ok={world['transaction_id']}&p="
    assert req.headers["X-Nope"] == "[]"
    assert json.loads(req.body) == {"a": "", "b": ""}
    [delivery] = wait_state(live, {"postback_id": pb["id"]}, "delivered")
    assert sorted(delivery["missing"]) == [
        "nope_body",
        "nope_header",
        "nope_param",
        "nope_path",
        "nope_query",
    ]
    full = wait_final(live, delivery["id"])
    assert full["missing"] == delivery["missing"]


def test_delivery_id_macro_is_the_idempotency_key_on_every_attempt(live, receiver, world):
    receiver.script = lambda _req, n: Answer(status=503) if n == 1 else Answer()
    add_postback(
        live,
        receiver,
        "/id?d={delivery_id}",
        fields={"id": "{delivery_id}", "key": "{idempotency_key}"},
        headers={"X-Delivery": "{delivery_id}"},
        retry={"schedule": [0], "max_attempts": 3},
    )
    fire_event(live, world["transaction_id"], revenue=1)
    [delivery] = wait_state(live, {}, "delivered")
    assert delivery["idempotency_key"] == delivery["id"]
    attempts = receiver.wait_for(2)
    assert len(attempts) == 2
    for req in attempts:
        assert req.query == f"d={delivery['id']}"
        assert json.loads(req.body) == {"id": delivery["id"], "key": delivery["id"]}
        assert req.headers["Idempotency-Key"] == req.headers["X-Delivery"] == delivery["id"]
