"""Conditions: rules ANDed in a group, groups ORed; numbers as numbers, text as text."""

import math
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from pydantic import ValidationError

from postbackd.outbound.filters import ConditionsFilter, Facts, Rule, Skip
from postbackd.outbound.filters.conditions import as_number

NOW = datetime(2026, 11, 25, 15, tzinfo=UTC)


def facts(**fields):
    return Facts(fields, NOW, "UTC")


def rule(text: str) -> Rule:
    field, op, value = text.split(" ", 2)
    return Rule(field=field, op=op, value=value)


def conditions(*groups: list[str]) -> ConditionsFilter:
    return ConditionsFilter(enabled=True, groups=[[rule(r) for r in g] for g in groups])


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("10", Decimal(10)),
        (" 10.50 ", Decimal("10.50")),
        ("-3", Decimal(-3)),
        ("+.5", Decimal("0.5")),
        ("1e3", Decimal(1000)),
        ("10.", Decimal(10)),
        (10, Decimal(10)),
        (10.5, Decimal("10.5")),
        (0.1, Decimal("0.1")),
        (Decimal("2.5"), Decimal("2.5")),
        ("1_000", None),
        ("NaN", None),
        ("Infinity", None),
        (math.inf, None),
        (math.nan, None),
        ("$10", None),
        ("10 USD", None),
        ("", None),
        (True, None),
        (None, None),
        (["10"], None),
    ],
)
def test_as_number(text, expected):
    assert as_number(text) == expected


@pytest.mark.parametrize(
    ("text", "fields", "holds"),
    [
        # Seed 001: "only if payout > 10".
        ("payout > 10", {"payout": "15"}, True),
        ("payout > 10", {"payout": "10"}, False),
        ("payout > 10", {"payout": "10.01"}, True),
        ("payout > 10", {"payout": 10.0}, False),
        ("payout > 10", {"payout": Decimal("9.99")}, False),
        ("payout > 10", {"payout": "9"}, False),  # as text "9" > "10" would be True
        ("payout > 10", {"payout": "-20"}, False),
        ("payout > 10", {}, False),
        ("payout > 10", {"payout": None}, False),
        ("payout > 10", {"payout": ""}, False),
        ("payout > 10", {"payout": "abc"}, True),  # not a number: "abc" > "10" as text
        ("payout < 10", {"payout": "9.5"}, True),
        ("payout < 10", {}, False),
        # Seed 001: "only if lead_status != rejected".
        ("lead_status != rejected", {"lead_status": "approved"}, True),
        ("lead_status != rejected", {"lead_status": "rejected"}, False),
        ("lead_status != rejected", {"lead_status": " Rejected "}, False),
        ("lead_status != rejected", {}, True),
        ("lead_status != rejected", {"lead_status": None}, True),
        ("lead_status = rejected", {}, False),
        ("lead_status = REJECTED", {"lead_status": "rejected"}, True),
        # Numbers compare as numbers when both sides are numbers.
        ("revenue = 10.5", {"revenue": "10.50"}, True),
        ("revenue = 10", {"revenue": "1e1"}, True),
        ("revenue = 10", {"revenue": "010"}, True),
        ("revenue = 10", {"revenue": "10 USD"}, False),
        ("revenue != 10", {"revenue": "10.000"}, False),
        ("zip_code = 02134", {"zip_code": 2134}, True),  # numerically equal
        # Text is trimmed and case-insensitive; < and > are lexicographic.
        ("state = ca", {"state": " CA "}, True),
        ("state < ny", {"state": "CA"}, True),
        ("state > ny", {"state": "tx"}, True),
        ("state > ny", {"state": "NY"}, False),
        ("name < banana", {"name": "Apple"}, True),
        ("flag = true", {"flag": True}, True),
        # Blank rule values ask "is it empty".
        ("sub1 = ", {}, True),
        ("sub1 = ", {"sub1": "  "}, True),
        ("sub1 = ", {"sub1": "x"}, False),
        ("sub1 != ", {"sub1": "x"}, True),
        ("sub1 != ", {}, False),
        # Dotted fields: a flattened key first, else nested mappings.
        ("req.qs.aff = 42", {"req": {"qs": {"aff": "42"}}}, True),
        ("req.qs.aff = 42", {"req.qs.aff": "7", "req": {"qs": {"aff": "42"}}}, False),
        ("req.qs.aff = 42", {"req": {"qs": "aff=42"}}, False),
        ("req.qs.aff != 42", {"req": None}, True),
    ],
)
def test_rule(text, fields, holds):
    assert rule(text).holds(fields) is holds


def test_rule_values_keep_their_json_type():
    assert Rule.model_validate({"field": "payout", "op": ">", "value": 10}).value == 10
    assert Rule.model_validate({"field": "payout", "op": ">", "value": 10.5}).value == 10.5
    assert Rule.model_validate({"field": "s", "op": "=", "value": "10"}).value == "10"
    assert Rule.model_validate({"field": "s", "op": "=", "value": True}).value == "true"


# --- groups ----------------------------------------------------------------------------------

HIGH_PAYOUT = conditions(["payout > 10"])
NOT_REJECTED = conditions(["lead_status != rejected"])
CA_APPROVED_OR_BIG = conditions(["state = CA", "lead_status = approved"], ["payout > 100"])


def unmet(why: str, value: str | None) -> Skip:
    return Skip("conditions", f"conditions not met: {why}", value)


@pytest.mark.parametrize(
    ("config", "fields", "skip"),
    [
        (HIGH_PAYOUT, {"payout": 15}, None),
        (HIGH_PAYOUT, {"payout": 5}, unmet("payout 5 > 10 failed", "5")),
        (HIGH_PAYOUT, {}, unmet("payout (missing) > 10 failed", None)),
        (NOT_REJECTED, {"lead_status": "approved"}, None),
        (NOT_REJECTED, {"lead_status": "rejected"}, unmet("lead_status rejected != rejected failed", "rejected")),
        (CA_APPROVED_OR_BIG, {"state": "ca", "lead_status": "Approved", "payout": 1}, None),
        (CA_APPROVED_OR_BIG, {"state": "NY", "lead_status": "approved", "payout": 101}, None),
        (
            CA_APPROVED_OR_BIG,
            {"state": "CA", "lead_status": "pending", "payout": 100},
            unmet("lead_status pending = approved failed; payout 100 > 100 failed", "pending"),
        ),
        (ConditionsFilter(enabled=True), {}, None),
    ],
)  # fmt: skip
def test_decide(config, fields, skip):
    decision = config.decide(facts(**fields))
    assert decision.skip == skip
    assert decision.passed is (skip is None)


def test_pass_detail_names_the_group_that_held():
    decision = CA_APPROVED_OR_BIG.decide(facts(state="CA", lead_status="approved"))
    assert decision.detail == "group 1 holds: state CA = CA and lead_status approved = approved"
    assert ConditionsFilter(enabled=True).decide(facts()).detail == "no conditions"


@pytest.mark.parametrize(
    ("payload", "error"),
    [
        ({"groups": [[{"field": "pay out", "op": "=", "value": 1}]]}, "'pay out' is not a field name"),
        ({"groups": [[{"field": "1abc", "op": "=", "value": 1}]]}, "'1abc' is not a field name"),
        ({"groups": [[{"field": "req..qs", "op": "=", "value": 1}]]}, "'req..qs' is not a field name"),
        ({"groups": [[{"field": "", "op": "=", "value": 1}]]}, "'' is not a field name"),
        ({"groups": [[{"field": "payout", "op": "==", "value": 1}]]}, "Input should be '=', '!=', '<' or '>'"),
        ({"groups": [[{"field": "payout", "op": ">"}]]}, "Field required"),
        ({"groups": [[{"field": "payout", "op": ">", "value": " "}]]}, "payout > needs a value"),
        ({"groups": [[{"field": "payout", "op": ">", "value": [1]}]]}, "value"),
        ({"groups": [[{"field": "a", "op": "=", "value": 1}], []]}, "condition group 2 has no rules"),
        ({"groups": [[{"field": "a", "op": "=", "value": 1, "x": 2}]]}, "Extra inputs"),
        ({"rules": []}, "Extra inputs"),
    ],
)  # fmt: skip
def test_bad_conditions_are_refused(payload, error):
    with pytest.raises(ValidationError, match=error):
        ConditionsFilter.model_validate({"enabled": True, **payload})


# --- properties ------------------------------------------------------------------------------

field_values = st.one_of(
    st.none(),
    st.text(max_size=8),
    st.integers(-1000, 1000),
    st.decimals(allow_nan=False, allow_infinity=False, places=2),
    st.floats(allow_nan=True),
    st.booleans(),
    st.sampled_from(["10", "10.0", " 10 ", "1e1", "abc", "ABC", "", "  "]),
)
rule_values = st.one_of(
    st.text(max_size=8),
    st.integers(-1000, 1000),
    st.floats(allow_nan=False),
    st.sampled_from(["10", "abc", ""]),
)


@given(field_values, rule_values, st.booleans())
def test_equals_and_not_equals_are_complements(actual, value, present):
    fields = {"f": actual} if present else {}
    equal = Rule(field="f", op="=", value=value).holds(fields)
    assert Rule(field="f", op="!=", value=value).holds(fields) is not equal


@given(field_values, rule_values)
def test_exactly_one_of_less_equal_greater_on_present_values(actual, value):
    assume(actual is not None and str(actual).strip() and str(value).strip())
    rules = [Rule(field="f", op=op, value=value) for op in ("<", "=", ">")]
    assert sum(r.holds({"f": actual}) for r in rules) == 1


@given(st.lists(st.lists(st.booleans(), min_size=1, max_size=4), max_size=4))
def test_groups_are_an_or_of_ands(truth):
    groups = [[rule(f"g{i}r{j} = yes") for j in range(len(g))] for i, g in enumerate(truth)]
    fields = {
        f"g{i}r{j}": "yes" if b else "no" for i, g in enumerate(truth) for j, b in enumerate(g)
    }
    decision = ConditionsFilter(enabled=True, groups=groups).decide(facts(**fields))
    assert decision.passed is (not truth or any(all(g) for g in truth))
