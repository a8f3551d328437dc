"""The macro language: parsing, lookup, value text, modifiers, escaping, structures."""

import hashlib
import json
import re
import xml.etree.ElementTree as ET
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from urllib.parse import unquote

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from postbackd.outbound import macros
from postbackd.outbound.macros import (
    Escape,
    MacroSyntaxError,
    Rendered,
    Token,
    render,
    render_value,
    tokens,
    unknown_names,
    validate,
)

MOMENT = datetime(2024, 7, 1, 12, 30, 5, tzinfo=UTC)
CONTEXT = {
    "sessionid": "sess_1",
    "status": "Approved",
    "revenue": Decimal("12.50"),
    "payout": 10.0,
    "count": 3,
    "flag": True,
    "empty": "",
    "nothing": None,
    "email": "  Jane.Doe@Example.COM ",
    "Phone": "+1 (555) 010-9999",
    "zip": "90210-1234",
    "created": MOMENT,
    "created_iso": "2024-07-01T14:30:05+02:00",
    "epoch": 1719837005,
    "tags": ["a", "b"],
    "meta": {"k": Decimal("1.50"), "when": MOMENT},
    "req": {
        "qs": {"clickid": "ck-1", "ScCid": "snap 1"},
        "cookie": {"_fbp": "fb.1.2", "my-cookie": "yum"},
        "sessionData": {"contact": {"firstName": "Zoë", "email": "z@x.io"}, "items": ["i0", "i1"]},
    },
}
AWKWARD = "Zoë \"q\" 's' & <b> 100% a+b c/d\n\t\r\x00 😀 \u2028\u2029 \\"


def text(template, escape=Escape.RAW, context=CONTEXT):
    return render(template, context, escape).text


# --- parsing -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{a}", [Token("a")]),
        ("x{a}y{b_2}z", [Token("a"), Token("b_2")]),
        ("{req.qs.clickid}", [Token("req.qs.clickid")]),
        ("{req.cookie.my-cookie}", [Token("req.cookie.my-cookie")]),
        ("{req.qs.2nd}", [Token("req.qs.2nd")]),
        ("{status:approved=sale|upper}", [Token("status", ":approved=sale|upper")]),
        ("{d|date:%Y-%m-%d %H:%M}", [Token("d", "|date:%Y-%m-%d %H:%M")]),
        ("{{a}}", [Token("a")]),
        ('{"session_id": "{sessionid}"}', [Token("sessionid")]),
        ("{}", []),
        ("{ a }", []),
        ("{1a}", []),
        ("{a.}", []),
        ("{a..b}", []),
        ("{-a}", []),
        ("{a b}", []),
        ("{a|lower\n}", []),
        ("{a", []),
        ("a}", []),
        ('{\n  "a": 1\n}', []),
    ],
)
def test_tokens(template, expected):
    assert tokens(template) == expected


def test_token_text_is_its_source():
    assert [t.text for t in tokens("{a}-{b:x=y|upper}")] == ["{a}", "{b:x=y|upper}"]


@pytest.mark.parametrize(
    "template",
    [
        '{"session_id": "{sessionid}", "nested": {"k": [1, {"x": null}]}}',
        "{{sessionid}}",
        "<a>{sessionid}</a>{",
    ],
)
def test_literal_braces_stay(template):
    assert text(template) == template.replace("{sessionid}", "sess_1")


# --- resolution ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{sessionid}", "sess_1"),
        ("{SessionID}", "sess_1"),
        ("{phone}", "+1 (555) 010-9999"),
        ("{req.qs.clickid}", "ck-1"),
        ("{req.qs.ScCid}", "snap 1"),
        ("{req.cookie._fbp}", "fb.1.2"),
        ("{req.cookie.my-cookie}", "yum"),
        ("{req.sessionData.contact.firstName}", "Zoë"),
        ("{req.session.contact.firstName}", "Zoë"),
        ("{req.session.contact.FIRSTNAME}", "Zoë"),
        ("{req.sessionData.items.1}", "i1"),
        ("{REQ.QS.clickid}", "ck-1"),
    ],
)
def test_lookup(template, expected):
    assert render(template, CONTEXT) == Rendered(expected, ())


@pytest.mark.parametrize(
    "name",
    [
        "unknown",
        "nothing",
        "req.qs.CLICKID",
        "req.qs.scCid",
        "req.cookie._FBP",
        "req.qs.missing",
        "req.sessionData.contact.zip",
        "req.sessionData.items.7",
        "req.sessionData.items.x",
        "sessionid.deeper",
        "req.nope.x",
    ],
)
def test_lookup_misses_render_empty_and_are_reported(name):
    assert render("a={" + name + "};", CONTEXT) == Rendered("a=;", (name,))


def test_exact_key_wins_over_other_case_then_first_key_in_order():
    assert text("{id}{ID}{Id}", context={"ID": "upper", "id": "lower"}) == "lowerupperupper"


def test_empty_string_is_a_value_not_missing():
    assert render("[{empty}]", CONTEXT) == Rendered("[]", ())


def test_missing_is_deduplicated_in_order():
    result = render("{b}{a}{b}{sessionid}{c}{a}", CONTEXT)
    assert result.missing == ("b", "a", "c")


# --- value to text -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("plain", "plain"),
        (True, "true"),
        (False, "false"),
        (0, "0"),
        (-42, "-42"),
        (10**20, "100000000000000000000"),
        (12.5, "12.5"),
        (10.0, "10"),
        (-0.0, "0"),
        (1e-7, "0.0000001"),
        (1e16, "10000000000000000"),
        (0.1 + 0.2, "0.30000000000000004"),
        (Decimal("12.50"), "12.5"),
        (Decimal("100"), "100"),
        (Decimal("1E+2"), "100"),
        (Decimal("0.000"), "0"),
        (MOMENT, "2024-07-01T12:30:05Z"),
        (datetime(2024, 7, 1, 12, 30, 5), "2024-07-01T12:30:05Z"),
        (
            datetime(2024, 7, 1, 14, 30, 5, tzinfo=timezone(timedelta(hours=2))),
            "2024-07-01T12:30:05Z",
        ),
        (datetime(2024, 7, 1, 12, 0, 0, 250000, tzinfo=UTC), "2024-07-01T12:00:00.250000Z"),
        (date(2024, 7, 1), "2024-07-01"),
        ({"a": 1, "b": [True, None]}, '{"a":1,"b":[true,null]}'),
        (["x", 1.5], '["x",1.5]'),
        ({"m": Decimal("1.50"), "t": MOMENT}, '{"m":1.5,"t":"2024-07-01T12:30:05Z"}'),
        ({"é": "😀"}, '{"é":"😀"}'),
    ],
)
def test_value_text(value, expected):
    assert render("{v}", {"v": value}) == Rendered(expected, ())


# --- escaping ------------------------------------------------------------------------------

URL_CASES = [
    ("a b", "a%20b"),
    ("a+b", "a%2Bb"),
    ("100%", "100%25"),
    ("a/b?c=d&e#f", "a%2Fb%3Fc%3Dd%26e%23f"),
    ("AZaz09-._~", "AZaz09-._~"),
    ("Zoë", "Zo%C3%AB"),
    ("😀", "%F0%9F%98%80"),
    ("\"'<>", "%22%27%3C%3E"),
    ("\n\x00", "%0A%00"),
]
JSON_CASES = [
    ('say "hi"', 'say \\"hi\\"'),
    ("back\\slash", "back\\\\slash"),
    ("line\nbreak\ttab\r", "line\\nbreak\\ttab\\r"),
    ("\x00\x1f", "\\u0000\\u001f"),
    ("\u2028\u2029", "\\u2028\\u2029"),
    ("Zoë 😀 & <b> '", "Zoë 😀 & <b> '"),
    ("100% a+b c/d", "100% a+b c/d"),
]
XML_CASES = [
    ("a & b", "a &amp; b"),
    ("<b>", "&lt;b&gt;"),
    ("\"q\" 's'", "&quot;q&quot; &apos;s&apos;"),
    ("a\x00b\x08c\x1fd\ufffee\uffff", "abcde"),
    ("tab\tnl\ncr\r", "tab&#9;nl&#10;cr&#13;"),
    ("Zoë 😀 100% a+b c/d", "Zoë 😀 100% a+b c/d"),
    ("&amp;", "&amp;amp;"),
]
RAW_CASES = [(AWKWARD, AWKWARD), ("100% a+b", "100% a+b")]


@pytest.mark.parametrize(
    ("escape", "value", "expected"),
    [(Escape.URL, *case) for case in URL_CASES]
    + [(Escape.JSON, *case) for case in JSON_CASES]
    + [(Escape.XML, *case) for case in XML_CASES]
    + [(Escape.RAW, *case) for case in RAW_CASES],
)
def test_escape(escape, value, expected):
    assert text("{v}", escape, {"v": value}) == expected


@pytest.mark.parametrize("escape", list(Escape))
def test_literal_text_is_never_escaped(escape):
    template = '<x a="&"> {"k": "100% a+b\\n"} {v} </x>'
    assert text(template, escape, {"v": "ok"}) == template.replace("{v}", "ok")


def test_escape_accepts_its_string_value():
    assert text("{v}", "url", {"v": "a b"}) == "a%20b"


def test_escape_runs_after_modifiers():
    assert text("{v|upper}", Escape.XML, {"v": "a&b"}) == "A&amp;B"
    assert text("{v:x=<y>}", Escape.XML, {"v": "X"}) == "&lt;y&gt;"


def test_explicit_urlencode_is_encoded_again_in_urls():
    assert text("{v|urlencode}", Escape.URL, {"v": "a b"}) == "a%2520b"


@pytest.mark.parametrize("value", [AWKWARD, "", "\x7f\x1b\u0085", '{"nested": "json"}'])
def test_json_body_stays_valid_json(value):
    template = '{"session_id": "{sessionid}", "v": "{v}", "list": ["{v}", 1], "n": {count}}'
    context = {**CONTEXT, "v": value}
    body = json.loads(text(template, Escape.JSON, context))
    assert body == {"session_id": "sess_1", "v": value, "list": [value, 1], "n": 3}


def test_json_escapes_lone_surrogates():
    rendered = text('"{v}"', Escape.JSON, {"v": "a\ud800b"})
    assert rendered == '"a\\ud800b"'
    assert json.loads(rendered) == "a\ud800b"


def test_lone_surrogates_never_break_rendering():
    context = {"v": "a\ud800"}
    assert text("{v}", Escape.URL, context) == "a%3F"
    assert text("{v}", Escape.XML, context) == "a"
    assert text("{v|sha256}", context=context) == hashlib.sha256(b"a?").hexdigest()


def test_xml_body_parses_back():
    template = '<?xml version="1.0"?><lead id="{v}"><name>{v}</name></lead>'
    root = ET.fromstring(text(template, Escape.XML, {"v": AWKWARD}))
    expected = AWKWARD.replace("\x00", "")
    assert (root.get("id"), root.find("name").text) == (expected, expected)


def test_url_escaping_round_trips():
    rendered = text(
        "https://t.example/p?v={v}&s={sessionid}", Escape.URL, {**CONTEXT, "v": AWKWARD}
    )
    query = rendered.split("?", 1)[1]
    assert [unquote(p.split("=", 1)[1]) for p in query.split("&")] == [AWKWARD, "sess_1"]


# --- modifiers -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        # value mapping
        ("{status:approved=sale,rejected=void}", "sale"),
        ("{status:APPROVED=sale}", "sale"),
        ("{status:rejected=void}", "Approved"),
        ("{status:rejected=void,*=other}", "other"),
        ("{status:*=other,approved=sale}", "sale"),
        ("{status: approved = sale , rejected=void}", "sale"),
        ("{status:approved=}", ""),
        ("{status:approved=sale,approved=ignored}", "sale"),
        ("{count:3=three}", "three"),
        ("{flag:true=1,false=0}", "1"),
        ("{status:approved=sale|upper}", "SALE"),
        ("{status:approved=sale|default:x}", "sale"),
        # default
        ("{unknown|default:unknown}", "unknown"),
        ("{nothing|default:n/a}", "n/a"),
        ("{empty|default:blank}", "blank"),
        ("{sessionid|default:x}", "sess_1"),
        ("{count|default:x}", "3"),
        ("{unknown|default:a b:c}", "a b:c"),
        ("{unknown|default:}", ""),
        ("{unknown|upper|default:n/a}", "n/a"),
        ("{unknown|default:n/a|upper}", "N/A"),
        # text helpers
        ("{status|lower}", "approved"),
        ("{status|upper}", "APPROVED"),
        ("{email|trim}", "Jane.Doe@Example.COM"),
        ("{email|trim|lower}", "jane.doe@example.com"),
        ("{phone|digits}", "15550109999"),
        ("{zip|first:5}", "90210"),
        ("{zip|first:50}", "90210-1234"),
        ("{zip|first:0}", ""),
        ("{flag|upper}", "TRUE"),
        ("{req.qs.ScCid|urlencode}", "snap%201"),
        # hashing
        ("{v|sha256}", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
        ("{v|md5}", "900150983cd24fb0d6963f7d28e17f72"),
        ("{empty|sha256}", ""),
        ("{empty|md5}", ""),
        ("{email|trim|lower|sha256}", hashlib.sha256(b"jane.doe@example.com").hexdigest()),
        # numbers
        ("{revenue|round:1}", "12.5"),
        ("{revenue|round:0}", "13"),
        ("{n|round:2}", "2.68"),
        ("{payout|round:2}", "10"),
        ("{revenue|fixed:2}", "12.50"),
        ("{count|fixed:2}", "3.00"),
        ("{n|fixed:1}", "2.7"),
        ("{numeric_text|round:1}", "7.3"),
        # dates
        ("{created|date:%Y-%m-%d}", "2024-07-01"),
        ("{created|date:%H:%M:%S}", "12:30:05"),
        ("{created_iso|date:%Y-%m-%d %H:%M}", "2024-07-01 12:30"),
        ("{day|date:%d/%m/%Y}", "01/07/2024"),
        ("{epoch|date:%Y-%m-%dT%H:%M:%S}", "2024-07-01T12:30:05"),
        ("{created|tz:America/New_York|date:%Y-%m-%d %H:%M %Z}", "2024-07-01 08:30 EDT"),
        ("{winter|tz:America/New_York|date:%H:%M %z}", "07:00 -0500"),
        ("{created|tz:Asia/Kolkata}", "2024-07-01T18:00:05+05:30"),
        ("{created|tz:UTC}", "2024-07-01T12:30:05Z"),
        ("{created|date:%Y|upper}", "2024"),
        ("{created|unix}", "1719837005"),
        ("{created_iso|unix}", "1719837005"),
        ("{day|unix}", "1719792000"),
        ("{epoch|unix}", "1719837005"),
        ("{before_1970|unix}", "-1"),
    ],
)
def test_modifiers(template, expected):
    context = {
        **CONTEXT,
        "v": "abc",
        "n": 2.675,
        "numeric_text": " 7.25 ",
        "day": date(2024, 7, 1),
        "winter": "2024-01-15T12:00:00Z",
        "before_1970": datetime(1969, 12, 31, 23, 59, 59, 500000, tzinfo=UTC),
    }
    assert render(template, context) == Rendered(expected, ())


@pytest.mark.parametrize(
    "template",
    [
        "{unknown|lower}",
        "{unknown|sha256}",
        "{unknown:a=b,*=c}",
        "{nothing|date:%Y}",
        "{status|date:%Y}",
        "{status|tz:UTC}",
        "{status|unix}",
        "{status|round:2}",
        "{flag|round:2}",
        "{tags|fixed:2}",
        "{nan|round:2}",
        "{huge|round:2}",
        "{huge|unix}",
    ],
)
def test_modifiers_that_get_no_usable_value_leave_the_token_missing(template):
    context = {**CONTEXT, "nan": float("nan"), "huge": Decimal("1E+40")}
    name = tokens(template)[0].name
    assert render(template, context) == Rendered("", (name,))


def test_default_rescues_unreadable_input():
    assert render("{status|date:%Y|default:none}", CONTEXT) == Rendered("none", ())


@pytest.mark.parametrize("template", ["{empty|date:%Y}", "{empty|round:2}", "{empty:*=x}"])
def test_empty_text_passes_modifiers_untouched(template):
    assert render(template, CONTEXT) == Rendered("", ())


# --- syntax errors -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("{a|nope}", "unknown modifier 'nope'"),
        ("{a|Lower}", "unknown modifier 'Lower'"),
        ("{a|}", "unknown modifier ''"),
        ("{a|lower|}", "unknown modifier ''"),
        ("{a:}", "bad value mapping ''"),
        ("{a:approved}", "bad value mapping 'approved'"),
        ("{a:x=1,,y=2}", "bad value mapping ''"),
        ("{a:=x}", "bad value mapping '=x'"),
        ("{a|lower:x}", "'lower' takes no argument"),
        ("{a|sha256:}", "'sha256' takes no argument"),
        ("{a|date}", "'date' needs an argument"),
        ("{a|date:}", "'date' needs an argument"),
        ("{a|tz:Mars/Olympus}", "unknown time zone 'Mars/Olympus'"),
        ("{a|tz:../etc/passwd}", "unknown time zone"),
        ("{a|round:two}", "'round' needs a whole number"),
        ("{a|round:-1}", "'round' needs a whole number"),
        ("{a|fixed:1.5}", "'fixed' needs a whole number"),
        ("{a|first:}", "'first' needs an argument"),
        ("{a|first:99999}", "'first' needs a whole number"),
    ],
)
def test_malformed_modifiers(template, message):
    with pytest.raises(MacroSyntaxError, match=message) as error:
        render("x " + template, {"a": "v"})
    assert str(error.value).startswith(template + ": ")
    assert validate("x " + template) == [str(error.value)]


def test_malformed_modifiers_raise_even_when_the_value_is_missing():
    with pytest.raises(MacroSyntaxError):
        render("{a|nope}", {})


def test_syntax_error_is_a_value_error():
    assert issubclass(MacroSyntaxError, ValueError)


def test_unknown_modifier_message_lists_the_known_ones():
    (message,) = validate("{a|nope}")
    assert "sha256" in message and "default" in message and "date" in message


def test_validate_accepts_good_templates_and_structures():
    assert validate("{a}{b:x=y,*=z|upper|default:q}{c|date:%Y|tz:UTC}{d|first:5}") == []
    assert validate({"a": ["{x}", 1, None], "{y}": {"z": "{w|md5}"}}) == []


def test_validate_walks_structures_and_keys():
    body = {"{k|bad}": ["{x|lower:1}", {"n": "{x|lower:1}"}], "ok": 1.5}
    assert validate(body) == [
        "{k|bad}: unknown modifier 'bad' (known: date, default, digits, first, fixed, lower, "
        "md5, round, sha256, trim, tz, unix, upper, urlencode)",
        "{x|lower:1}: modifier 'lower' takes no argument",
    ]


# --- render_value --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("leaf", "expected"),
    [
        ("{revenue}", 12.5),
        ("{payout}", 10.0),
        ("{count}", 3),
        ("{flag}", True),
        ("{sessionid}", "sess_1"),
        ("{empty}", ""),
        ("{tags}", ["a", "b"]),
        ("{meta}", {"k": 1.5, "when": "2024-07-01T12:30:05Z"}),
        ("{created}", "2024-07-01T12:30:05Z"),
        ("{whole}", 10),
        ("{created|unix}", 1719837005),
        ("{revenue|round:0}", 13),
        ("{revenue|fixed:2}", "12.50"),
        ("{count|upper}", "3"),
        ("{flag:true=yes}", "yes"),
        ("{count:7=seven}", 3),
        ("{unknown|default:0}", "0"),
        (" {count}", " 3"),
        ("{count}{count}", "33"),
        ("rev={revenue}", "rev=12.5"),
        ("no tokens", "no tokens"),
        ("", ""),
    ],
)
def test_render_value_leaves(leaf, expected):
    value, missing = render_value(leaf, {**CONTEXT, "whole": Decimal("10.00")})
    assert (value, type(value), missing) == (expected, type(expected), ())


def test_render_value_structure():
    template = {
        "data": [
            {
                "event_time": "{created|unix}",
                "value": "{revenue}",
                "user_data": {"em": "{email|trim|lower|sha256}", "fbp": "{req.cookie._fbp}"},
                "gone": "{unknown}",
                "opt_out": False,
                "n": None,
                "x": 1.5,
            }
        ],
        "{sessionid}_key": ("{status}", "{also_gone}-x"),
    }
    value, missing = render_value(template, CONTEXT)
    assert value == {
        "data": [
            {
                "event_time": 1719837005,
                "value": 12.5,
                "user_data": {
                    "em": hashlib.sha256(b"jane.doe@example.com").hexdigest(),
                    "fbp": "fb.1.2",
                },
                "gone": None,
                "opt_out": False,
                "n": None,
                "x": 1.5,
            }
        ],
        "sess_1_key": ["Approved", "-x"],
    }
    assert missing == ("unknown", "also_gone")
    json.dumps(value)  # ready for the JSON body as it is


def test_render_value_reports_missing_once_in_order_across_keys_and_values():
    template = {"{a}": ["{b}", "{a}"], "k": "x{c}{b}"}
    assert render_value(template, {}) == ({"": [None, None], "k": "x"}, ("a", "b", "c"))


def test_render_value_does_not_escape():
    assert render_value({"v": "<{v}>"}, {"v": '"&'}) == ({"v": '<"&>'}, ())


def test_render_value_raises_on_malformed_modifiers():
    with pytest.raises(MacroSyntaxError):
        render_value({"a": ["{x|nope}"]}, {})


@pytest.mark.parametrize("leaf", [None, True, 0, 1.5, []])
def test_render_value_keeps_non_string_leaves(leaf):
    assert render_value(leaf, CONTEXT) == (leaf, ())


# --- unknown names -------------------------------------------------------------------------


def test_unknown_names_in_a_string():
    known = {"sessionid", "email"}.__contains__
    template = "{sessionid}{Foo}{email|sha256}{bar:x=y}{Foo}"
    assert unknown_names(template, known) == ["Foo", "bar"]


def test_unknown_names_in_a_structure():
    body = {"{k}": ["{a}", {"x": "{req.qs.q} {b}"}], "n": 1, "m": None}
    assert unknown_names(body, lambda name: name.startswith("req.")) == ["k", "a", "b"]


def test_unknown_names_ignores_literal_braces_and_does_not_validate():
    assert unknown_names('{"a": "{x|nope}"}', lambda name: False) == ["x"]


# --- the module's surface ------------------------------------------------------------------


def test_public_names():
    assert sorted(macros.__all__) == sorted(
        [
            "Escape",
            "MacroSyntaxError",
            "Rendered",
            "Token",
            "render",
            "render_value",
            "tokens",
            "unknown_names",
            "validate",
        ]
    )
    assert [e.value for e in Escape] == ["url", "json", "xml", "raw"]


def test_rendered_and_token_are_frozen():
    with pytest.raises(AttributeError):
        Rendered("a", ()).text = "b"
    with pytest.raises(AttributeError):
        Token("a").name = "b"


# --- properties ----------------------------------------------------------------------------

NAMES = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,8}", fullmatch=True)
ANY_CHAR = st.characters(exclude_categories=())  # lone surrogates included
XML_FORBIDDEN = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


@given(st.text())
def test_json_escaped_text_parses_back(value):
    assert json.loads('"' + text("{v}", Escape.JSON, {"v": value}) + '"') == value


@given(st.text())
def test_json_body_with_any_value_stays_valid(value):
    rendered = text('{"a": "{v}", "b": ["{v}"]}', Escape.JSON, {"v": value})
    assert json.loads(rendered) == {"a": value, "b": [value]}


@given(st.text())
def test_url_escaped_text_round_trips(value):
    rendered = text("{v}", Escape.URL, {"v": value})
    assert unquote(rendered) == value
    assert set(rendered) <= set(
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~%"
    )


@given(st.text(ANY_CHAR))
def test_xml_escaped_text_parses_back(value):
    rendered = text('<r a="{v}">{v}</r>', Escape.XML, {"v": value})
    root = ET.fromstring(rendered)
    kept = XML_FORBIDDEN.sub("", value)
    assert (root.get("a"), root.text or "") == (kept, kept)


@given(st.text(), st.sampled_from(list(Escape)))
def test_templates_without_tokens_render_unchanged(template, escape):
    assume(not tokens(template))
    assert render(template, CONTEXT, escape) == Rendered(template, ())


@given(st.text(alphabet='{}"ab: |=,\n'), st.sampled_from(list(Escape)))
def test_brace_heavy_text_without_tokens_renders_unchanged(template, escape):
    assume(not tokens(template))
    assert render(template, {"a": "X"}, escape).text == template


def looked_up(context, name):
    """The lookup rule restated: the exact key, else the first key equal ignoring case."""
    if name in context:
        return context[name]
    return next((v for k, v in context.items() if k.casefold() == name.casefold()), None)


@given(
    st.dictionaries(NAMES, st.one_of(st.none(), st.text(max_size=5), st.integers())),
    st.lists(NAMES, max_size=8),
)
def test_missing_is_exactly_the_tokens_without_values(context, names):
    template = "-".join("{" + name + "}" for name in names)
    expected = [name for name in dict.fromkeys(names) if looked_up(context, name) is None]
    assert list(render(template, context).missing) == expected
    assert list(render_value([template, {"k": names}], context)[1]) == expected


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
        lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner),
    )
)
def test_structures_without_tokens_render_unchanged(structure):
    assume(not unknown_names(structure, lambda name: False))
    assert render_value(structure, CONTEXT) == (structure, ())
