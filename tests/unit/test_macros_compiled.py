"""Templates compiled once and cached: the cache must never change what a render gives."""

import enum
from collections import defaultdict
from datetime import UTC, datetime
from types import MappingProxyType

import pytest

from postbackd.outbound import request
from postbackd.outbound.macros import Escape, MacroSyntaxError, Rendered, render, render_value


class Status(enum.StrEnum):
    APPROVED = "approved"


def test_a_cached_malformed_token_raises_on_every_render():
    template = "ok {a} then {b|nope}"
    messages = []
    for _ in range(3):
        with pytest.raises(MacroSyntaxError) as error:
            render(template, {"a": "x"})
        messages.append(str(error.value))
    assert len(set(messages)) == 1 and messages[0].startswith("{b|nope}: unknown modifier")
    with pytest.raises(MacroSyntaxError):
        render_value({"k": template}, {})


def test_a_cached_template_reads_each_context_afresh():
    template = "{a}-{req.qs.x}"
    first = render(template, {"a": 1, "req": {"qs": {"x": "y"}}})
    second = render(template, {"A": 2})
    assert (first, second) == (Rendered("1-y", ()), Rendered("2-", ("req.qs.x",)))


def test_one_template_under_every_escape():
    context = {"v": "a b&<"}
    got = [render("<{v}>", context, escape).text for escape in Escape]
    assert got == ["<a%20b%26%3C>", "<a b&<>", "<a b&amp;&lt;>", "<a b&<>"]
    with pytest.raises(ValueError):
        render("{v}", context, "html")


@pytest.mark.parametrize(
    "context",
    [MappingProxyType({"Email": "e"}), defaultdict(str, {"Email": "e"})],
)
def test_mappings_other_than_plain_dicts(context):
    assert render("{email}{Email}{gone}", context) == Rendered("ee", ("gone",))
    assert "gone" not in context  # a defaultdict is read, never filled


def test_exact_key_then_any_case_at_every_depth():
    context = {"ID": "upper", "id": "lower", "Meta": {"Key": "K"}, "when": datetime(2024, 1, 1)}
    assert render("{id}{Id}{meta.key}{when}", context).text == "lowerupperK2024-01-01T00:00:00Z"
    assert render_value("{when|unix}", context) == (
        int(datetime(2024, 1, 1, tzinfo=UTC).timestamp()),
        (),
    )


def test_text_subclasses_come_back_as_they_did():
    value, _ = render_value("{s|urlencode}", {"s": Status.APPROVED})
    assert type(value) is str
    value, _ = render_value("{s}", {"s": Status.APPROVED})
    assert value is Status.APPROVED


def test_build_reports_missing_once_in_first_seen_order():
    config = {
        "url": "http://h.example/p?a={u1}&b={f2}",
        "method": "POST",
        "fields": {"x": "{f1}", "y": "{f2}{u1}", "z": "{f3}"},
        "headers": {"X-A": "{h1}{f1}"},
    }
    out = request.build(config, {}, {"f3": "ok"}, "dlv_1", 0)
    assert out.missing == ("f1", "f2", "u1", "h1")
