"""Body formats: exact bytes, parsing back with independent parsers, hostile text."""

from __future__ import annotations

import datetime as dt
import email.parser
import email.policy
import json
import re
import urllib.parse
import xml.etree.ElementTree as ET
from decimal import Decimal
from types import MappingProxyType

import pytest
from hypothesis import given
from hypothesis import strategies as st
from python_multipart.multipart import MultipartParser

from postbackd.outbound import formats
from postbackd.outbound.formats import BodyFormat, EncodedBody, encode, xml_name

SAMPLE = {
    "click_id": "abc123",
    "payout": Decimal("12.50"),
    "count": 3,
    "ok": True,
    "none": None,
    "rate": 0.1,
    "user": {"email": "a@b.c", "tags": ["x", "y"]},
}

HOSTILE = {
    'say "hi"': 'she said "no" & <left>',
    "line\nbreak": "a\r\nb\nc\rd",
    "emoji 😀": "🎉👩‍👩‍👧 ünïcödé ‮rtl‬ zero​width",
    "tab\there": "\t leading and trailing \t",
    "percent%22": "100% = 'quoted'; semi;colon",
    "": "empty key",
}


# -- helpers: independent parsers --------------------------------------------------------


def parse_multipart(content: bytes, boundary: str) -> list[tuple[str, bytes]]:
    """(raw name, raw value) per part, using python-multipart's streaming parser."""
    parts: list[tuple[str, bytes]] = []
    state: dict[str, bytes] = {}

    def begin() -> None:
        state.update(field=b"", value=b"", data=b"", disposition=b"")

    def header_end() -> None:
        if state["field"].lower() == b"content-disposition":
            state["disposition"] = state["value"]
        state.update(field=b"", value=b"")

    def add(key: str):
        def callback(data: bytes, start: int, end: int) -> None:
            state[key] += data[start:end]

        return callback

    def end() -> None:
        match = re.fullmatch(rb'form-data; name="(.*)"', state["disposition"], re.S)
        assert match, state["disposition"]
        parts.append((match.group(1).decode("utf-8"), state["data"]))

    callbacks = {
        "on_part_begin": begin,
        "on_header_field": add("field"),
        "on_header_value": add("value"),
        "on_header_end": header_end,
        "on_part_data": add("data"),
        "on_part_end": end,
    }
    parser = MultipartParser(boundary, callbacks)
    parser.write(content)
    parser.finalize()
    return parts


def boundary_of(content_type: str) -> str:
    return content_type.split("boundary=", 1)[1]


def xml_pairs(content: bytes) -> list[tuple[str, str]]:
    root = ET.fromstring(content)
    return [(child.tag, child.text or "") for child in root]


def mp_name(key: str) -> str:
    return key.replace('"', "%22").replace("\r", "%0D").replace("\n", "%0A")


# -- enum and container ------------------------------------------------------------------


def test_all_is_exported():
    assert set(formats.__all__) == {"BodyFormat", "EncodedBody", "encode", "xml_name"}


def test_format_values_are_the_seed_names():
    assert [f.value for f in BodyFormat] == [
        "json",
        "xml-8",
        "xml-16",
        "x-www-form-urlencoded",
        "form-data",
    ]


def test_encode_accepts_the_plain_string_value():
    assert encode("json", {"a": 1}) == EncodedBody(b'{"a":1}', "application/json")  # type: ignore[arg-type]


def test_unknown_format_is_refused():
    with pytest.raises(ValueError):
        encode("yaml", {})  # type: ignore[arg-type]


# -- exact bytes -------------------------------------------------------------------------


def test_json_exact_bytes():
    out = encode(BodyFormat.JSON, SAMPLE)
    assert out.content_type == "application/json"
    assert out.content == (
        b'{"click_id":"abc123","payout":12.50,"count":3,"ok":true,"none":null,'
        b'"rate":0.1,"user":{"email":"a@b.c","tags":["x","y"]}}'
    )


def test_xml_utf8_exact_bytes():
    out = encode(BodyFormat.XML_UTF8, SAMPLE)
    assert out.content_type == "application/xml; charset=utf-8"
    assert out.content == (
        b'<?xml version="1.0" encoding="UTF-8"?><postback><click_id>abc123</click_id>'
        b"<payout>12.50</payout><count>3</count><ok>true</ok><none></none><rate>0.1</rate>"
        b"<user><email>a@b.c</email><tags>x</tags><tags>y</tags></user></postback>"
    )


def test_xml_utf16_is_the_utf8_document_reencoded_with_bom():
    out = encode(BodyFormat.XML_UTF16, SAMPLE)
    utf8 = encode(BodyFormat.XML_UTF8, SAMPLE).content.decode("utf-8")
    assert out.content_type == "application/xml; charset=utf-16"
    assert out.content[:2] == b"\xff\xfe"
    assert out.content == b"\xff\xfe" + utf8.replace("UTF-8", "UTF-16").encode("utf-16-le")
    assert out.content.decode("utf-16").startswith('<?xml version="1.0" encoding="UTF-16"?>')


def test_form_exact_bytes():
    out = encode(BodyFormat.FORM, SAMPLE)
    assert out.content_type == "application/x-www-form-urlencoded"
    assert out.content == (
        b"click_id=abc123&payout=12.50&count=3&ok=true&none=&rate=0.1"
        b"&user%5Bemail%5D=a%40b.c&user%5Btags%5D=x&user%5Btags%5D=y"
    )


def test_multipart_exact_bytes():
    out = encode(BodyFormat.MULTIPART, {"a": "1", 'q"n': "x\r\ny", "none": None}, boundary="B0")
    assert out.content_type == "multipart/form-data; boundary=B0"
    assert out.content == (
        b"--B0\r\n"
        b'Content-Disposition: form-data; name="a"\r\n'
        b"\r\n"
        b"1\r\n"
        b"--B0\r\n"
        b'Content-Disposition: form-data; name="q%22n"\r\n'
        b"\r\n"
        b"x\r\ny\r\n"
        b"--B0\r\n"
        b'Content-Disposition: form-data; name="none"\r\n'
        b"\r\n"
        b"\r\n"
        b"--B0--\r\n"
    )


def test_multipart_empty_body_is_just_the_close_delimiter():
    assert encode(BodyFormat.MULTIPART, {}, boundary="B").content == b"--B--\r\n"


# -- leaves ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (None, ""),
        (True, "true"),
        (False, "false"),
        (0, "0"),
        (-17, "-17"),
        (10**30, "1" + "0" * 30),
        (1.0, "1.0"),
        (0.1, "0.1"),
        (1e20, "100000000000000000000"),
        (1e-7, "0.0000001"),
        (-2.5, "-2.5"),
        (Decimal("12.50"), "12.50"),
        (Decimal("1E+3"), "1000"),
        (Decimal("-0.000001"), "-0.000001"),
        ("", ""),
        ("text", "text"),
        (dt.date(2024, 2, 29), "2024-02-29"),
        (dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.UTC), "2024-01-02T03:04:05+00:00"),
    ],
)
def test_leaves_render_as_plain_text(value, text):
    out = encode(BodyFormat.FORM, {"v": value})
    assert urllib.parse.parse_qsl(out.content.decode(), keep_blank_values=True) == [("v", text)]
    assert xml_pairs(encode(BodyFormat.XML_UTF8, {"v": value}).content) == [("v", text)]


@pytest.mark.parametrize("fmt", [BodyFormat.XML_UTF8, BodyFormat.FORM, BodyFormat.MULTIPART])
@pytest.mark.parametrize("value", [float("nan"), float("inf"), Decimal("NaN"), Decimal("-Inf")])
def test_non_finite_numbers_are_refused_in_text_formats(fmt, value):
    with pytest.raises(ValueError, match="non-finite"):
        encode(fmt, {"v": value})


def test_json_decimal_stays_a_number_without_exponent_surprises():
    out = encode(BodyFormat.JSON, {"a": Decimal("0.10"), "b": Decimal("1E+2")})
    assert out.content == b'{"a":0.10,"b":100}'
    assert json.loads(out.content) == {"a": 0.1, "b": 100}


def test_json_accepts_any_mapping_and_top_level_lists():
    assert encode(BodyFormat.JSON, MappingProxyType({"a": 1})).content == b'{"a":1}'
    assert encode(BodyFormat.JSON, [1, "a", None]).content == b'[1,"a",null]'


@pytest.mark.parametrize("fmt", list(BodyFormat))
def test_non_string_keys_are_refused(fmt):
    with pytest.raises(TypeError):
        encode(fmt, {1: "x"}, boundary="B")


@pytest.mark.parametrize("fmt", list(BodyFormat))
def test_unknown_leaf_types_are_refused(fmt):
    with pytest.raises(TypeError):
        encode(fmt, {"a": object()}, boundary="B")


@pytest.mark.parametrize("fmt", [BodyFormat.FORM, BodyFormat.MULTIPART])
@pytest.mark.parametrize("body", [[1, 2], "text", None])
def test_form_bodies_must_be_mappings(fmt, body):
    with pytest.raises(TypeError, match="mapping"):
        encode(fmt, body, boundary="B")


# -- XML structure -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "name"),
    [
        ("plain", "plain"),
        ("with space", "with_space"),
        ("1st", "_1st"),
        ("-x", "_-x"),
        (".x", "_.x"),
        ("", "_"),
        ("a:b", "a_b"),
        ("prénom", "pr_nom"),
        ("😀", "_"),
        ("a.b-c_d", "a.b-c_d"),
        ('<"&>', "____"),
        ("_ok", "_ok"),
    ],
)
def test_xml_name_sanitizing_is_deterministic(key, name):
    assert xml_name(key) == name
    assert ET.fromstring(f"<{name}/>").tag == name


def test_xml_lists_repeat_named_elements_and_wrap_unnamed_ones():
    body = {"n": [[1, 2], [3]], "d": [{"k": "a"}, {"k": "b"}], "empty": [], "m": {}}
    out = encode(BodyFormat.XML_UTF8, body, xml_root="lead").content.decode()
    assert out.split("?>", 1)[1] == (
        "<lead><n><item>1</item><item>2</item></n><n><item>3</item></n>"
        "<d><k>a</k></d><d><k>b</k></d><m></m></lead>"
    )


def test_xml_top_level_list_and_scalar():
    assert encode(BodyFormat.XML_UTF8, ["a", {"b": 1}]).content.endswith(
        b"<postback><item>a</item><item><b>1</b></item></postback>"
    )
    assert encode(BodyFormat.XML_UTF8, "x").content.endswith(b"<postback>x</postback>")


def test_xml_root_is_sanitized():
    assert b"<_1_root></_1_root>" in encode(BodyFormat.XML_UTF8, {}, xml_root="1 root").content


def test_xml_escapes_and_replaces_illegal_characters():
    out = encode(BodyFormat.XML_UTF8, {"v": "a&b<c>d]]>e\rf\x00g\x1fh\ufffei"}).content
    assert b"<v>a&amp;b&lt;c&gt;d]]&gt;e&#13;f\xef\xbf\xbdg\xef\xbf\xbdh\xef\xbf\xbdi</v>" in out
    assert xml_pairs(out) == [("v", "a&b<c>d]]>e\rf\ufffdg\ufffdh\ufffdi")]


def test_xml_nested_parses_back():
    root = ET.fromstring(encode(BodyFormat.XML_UTF16, SAMPLE).content)
    assert root.tag == "postback"
    assert root.findtext("user/email") == "a@b.c"
    assert [t.text for t in root.findall("user/tags")] == ["x", "y"]


# -- form structure ----------------------------------------------------------------------


def test_form_flattens_nested_mappings_and_repeats_list_keys():
    body = {"a": {"b": {"c": 1}}, "l": [1, [2, 3]], "dl": [{"k": "x"}, {"k": "y"}], "e": []}
    pairs = urllib.parse.parse_qsl(encode(BodyFormat.FORM, body).content.decode())
    assert pairs == [
        ("a[b][c]", "1"),
        ("l", "1"),
        ("l", "2"),
        ("l", "3"),
        ("dl[k]", "x"),
        ("dl[k]", "y"),
    ]


def test_form_spaces_and_reserved_characters():
    out = encode(BodyFormat.FORM, {"a b": "c+d&e=f/g?h#é"}).content
    assert out == b"a+b=c%2Bd%26e%3Df%2Fg%3Fh%23%C3%A9"


# -- multipart structure -----------------------------------------------------------------


def test_multipart_random_boundary_is_fresh_hex():
    first = encode(BodyFormat.MULTIPART, {"a": "1"})
    second = encode(BodyFormat.MULTIPART, {"a": "1"})
    assert re.fullmatch(r"[0-9a-f]{32}", boundary_of(first.content_type))
    assert first.content_type != second.content_type
    assert parse_multipart(first.content, boundary_of(first.content_type)) == [("a", b"1")]


def test_multipart_random_boundary_avoids_the_content(monkeypatch):
    tokens = iter(["aaaa", "bbbb"])
    monkeypatch.setattr(formats.secrets, "token_hex", lambda n: next(tokens))
    out = encode(BodyFormat.MULTIPART, {"v": "--aaaa"})
    assert out.content_type == "multipart/form-data; boundary=bbbb"


@pytest.mark.parametrize("boundary", ["", "x" * 71, "has space", 'q"', "semi;colon", "é"])
def test_multipart_bad_boundaries_are_refused(boundary):
    with pytest.raises(ValueError, match="boundary"):
        encode(BodyFormat.MULTIPART, {"a": "1"}, boundary=boundary)


def test_multipart_boundary_inside_content_is_refused():
    with pytest.raises(ValueError, match="inside"):
        encode(BodyFormat.MULTIPART, {"a": "x--B0y"}, boundary="B0")


def test_multipart_nested_and_lists_flatten_like_form():
    out = encode(BodyFormat.MULTIPART, SAMPLE, boundary="b")
    assert parse_multipart(out.content, "b") == [
        ("click_id", b"abc123"),
        ("payout", b"12.50"),
        ("count", b"3"),
        ("ok", b"true"),
        ("none", b""),
        ("rate", b"0.1"),
        ("user[email]", b"a@b.c"),
        ("user[tags]", b"x"),
        ("user[tags]", b"y"),
    ]


def test_multipart_parses_with_the_email_package():
    out = encode(BodyFormat.MULTIPART, {"a": "1", "b": "two words"}, boundary="xyz")
    raw = f"Content-Type: {out.content_type}\r\n\r\n".encode() + out.content
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(raw)
    parts = [
        (p.get_param("name", header="content-disposition"), p.get_content())
        for p in message.iter_parts()
    ]
    assert parts == [("a", "1"), ("b", "two words")]


# -- hostile text in every format --------------------------------------------------------


def test_hostile_json():
    assert json.loads(encode(BodyFormat.JSON, HOSTILE).content) == HOSTILE


@pytest.mark.parametrize("fmt", [BodyFormat.XML_UTF8, BodyFormat.XML_UTF16])
def test_hostile_xml(fmt):
    expected = [(xml_name(k), v) for k, v in HOSTILE.items()]
    assert xml_pairs(encode(fmt, HOSTILE).content) == expected


def test_hostile_form():
    out = encode(BodyFormat.FORM, HOSTILE).content
    pairs = urllib.parse.parse_qsl(out.decode("ascii"), keep_blank_values=True)
    assert pairs == list(HOSTILE.items())


def test_hostile_multipart():
    out = encode(BodyFormat.MULTIPART, HOSTILE, boundary="hostile")
    expected = [(mp_name(k), v.encode()) for k, v in HOSTILE.items()]
    assert parse_multipart(out.content, "hostile") == expected
    assert b'name="say %22hi%22"' in out.content
    assert b'name="line%0Abreak"' in out.content


# -- round trips -------------------------------------------------------------------------

flat = st.dictionaries(st.text(), st.text(), max_size=8)


def xml_clean(text: str) -> str:
    return formats._XML_ILLEGAL.sub("\ufffd", text)


@given(flat)
def test_roundtrip_json(body):
    assert json.loads(encode(BodyFormat.JSON, body).content) == body


@given(flat, st.sampled_from([BodyFormat.XML_UTF8, BodyFormat.XML_UTF16]))
def test_roundtrip_xml(body, fmt):
    expected = [(xml_name(k), xml_clean(v)) for k, v in body.items()]
    assert xml_pairs(encode(fmt, body).content) == expected


@given(flat)
def test_roundtrip_form(body):
    out = encode(BodyFormat.FORM, body).content.decode("ascii")
    assert urllib.parse.parse_qsl(out, keep_blank_values=True) == list(body.items())


@given(flat)
def test_roundtrip_multipart(body):
    out = encode(BodyFormat.MULTIPART, body)
    parsed = parse_multipart(out.content, boundary_of(out.content_type))
    assert parsed == [(mp_name(k), v.encode()) for k, v in body.items()]
