"""The filter registry: one config, decisions in a fixed order, the first skip recorded."""

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

import postbackd.outbound.filters as filters
from postbackd.outbound.filters import (
    FILTER_ORDER,
    Decision,
    Facts,
    FilterConfig,
    Skip,
    evaluate,
    first_skip,
)

NY = "America/New_York"
WEDNESDAY_10AM = datetime(2026, 11, 25, 15, tzinfo=UTC)  # 10:00 in New York

EVERYTHING = FilterConfig.model_validate(
    {
        "zip": {"enabled": True, "codes": ["90210"]},
        "state": {"enabled": True, "states": ["California"]},
        "hours": {"enabled": True, "days": {"wed": {"start": "09:00", "end": "18:00"}}},
        "conditions": {
            "enabled": True,
            "groups": [[{"field": "payout", "op": ">", "value": 10}]],
        },
        "caps": {"daily": {"enabled": True, "limit": 10}},
    }
)
GOOD_LEAD = {"zip_code": "10001", "state": "NY", "payout": "12.50", "lead_status": "approved"}


def facts(now=WEDNESDAY_10AM, **fields):
    return Facts(fields, now, NY)


def test_public_names():
    assert set(filters.__all__) == {name for name in dir(filters) if not name.startswith("_")} - {
        "base",
        "caps",
        "conditions",
        "hours",
        "registry",
        "state",
        "us_states",
        "zip",
    }


def test_order_is_fixed():
    assert FILTER_ORDER == ("zip", "state", "hours", "conditions", "caps")
    assert [f.name for f in FilterConfig().filters()] == list(FILTER_ORDER)


def test_everything_off_by_default_decides_nothing():
    assert evaluate(FilterConfig(), facts()) == []
    assert first_skip(FilterConfig(), facts(), {"daily": 10**6}) is None


def test_a_good_lead_passes_every_enabled_filter_in_order():
    decisions = evaluate(EVERYTHING, facts(**GOOD_LEAD), {"daily": 9})
    assert [d.filter for d in decisions] == list(FILTER_ORDER)
    assert all(d.passed and d.skip is None for d in decisions)
    assert decisions[-1].detail == "under caps: daily 9/10"
    assert first_skip(EVERYTHING, facts(**GOOD_LEAD), {"daily": 9}) is None


def test_only_enabled_filters_are_reported():
    config = FilterConfig.model_validate({"state": {"enabled": True, "states": ["TX"]}})
    assert evaluate(config, facts(state="tx")) == [
        Decision("state", False, Skip("state", "state TX excluded", "TX"), "state TX excluded")
    ]


@pytest.mark.parametrize(
    ("changes", "counts", "skip"),
    [
        ({"zip_code": "90210"}, {}, Skip("zip", "ZIP 90210 excluded", "90210")),
        ({"state": "california"}, {}, Skip("state", "state CA excluded", "CA")),
        ({"payout": "10"}, {}, Skip("conditions", "conditions not met: payout 10 > 10 failed", "10")),
        ({}, {"daily": 10}, Skip("caps", "daily cap 10 reached", "10")),
        # Several filters would stop it: the first in order is the one recorded.
        ({"zip_code": "90210", "state": "CA", "payout": 0}, {"daily": 10}, Skip("zip", "ZIP 90210 excluded", "90210")),
        ({"state": "CA", "payout": 0}, {"daily": 10}, Skip("state", "state CA excluded", "CA")),
        ({"payout": 0}, {"daily": 10}, Skip("conditions", "conditions not met: payout 0 > 10 failed", "0")),
    ],
)  # fmt: skip
def test_first_skip(changes, counts, skip):
    assert first_skip(EVERYTHING, facts(**(GOOD_LEAD | changes)), counts) == skip


def test_hours_skip_comes_before_conditions_and_caps():
    saturday = WEDNESDAY_10AM + timedelta(days=3)
    skip = first_skip(EVERYTHING, facts(saturday, **GOOD_LEAD | {"payout": 0}), {"daily": 99})
    assert skip is not None and skip.filter == "hours"


def test_dry_run_explains_every_filter_even_after_a_skip():
    decisions = evaluate(EVERYTHING, facts(**GOOD_LEAD | {"zip_code": "90210"}), {"daily": 10})
    assert [(d.filter, d.passed) for d in decisions] == [
        ("zip", False),
        ("state", True),
        ("hours", True),
        ("conditions", True),
        ("caps", False),
    ]


def test_without_counts_caps_are_not_guessed():
    decisions = evaluate(EVERYTHING, facts(**GOOD_LEAD))
    assert decisions[-1] == Decision("caps", True, None, "caps not checked: no fire counts given")


def test_seed_examples():
    payout_over_10 = FilterConfig.model_validate(
        {
            "conditions": {
                "enabled": True,
                "groups": [[{"field": "payout", "op": ">", "value": "10"}]],
            }
        }
    )
    assert first_skip(payout_over_10, facts(payout=10.01)) is None
    assert first_skip(payout_over_10, facts(payout=10)) is not None
    not_rejected = FilterConfig.model_validate(
        {
            "conditions": {
                "enabled": True,
                "groups": [[{"field": "lead_status", "op": "!=", "value": "rejected"}]],
            }
        }
    )
    assert first_skip(not_rejected, facts(lead_status="approved")) is None
    skip = first_skip(not_rejected, facts(lead_status="Rejected"))
    assert skip == Skip(
        "conditions", "conditions not met: lead_status Rejected != rejected failed", "Rejected"
    )


def test_config_round_trips_through_json():
    again = FilterConfig.model_validate_json(EVERYTHING.model_dump_json())
    assert again == EVERYTHING
    assert EVERYTHING.model_dump()["state"]["states"] == ["CA"]


@pytest.mark.parametrize(
    ("payload", "error"),
    [
        ({"zip": {"enabled": True, "codes": ["90210", "1234"]}}, r"zip\.codes\n.*'1234' is not a 5-digit ZIP code"),
        ({"state": {"states": ["Texas", "Ontario"]}}, r"state\.states\n.*'Ontario' is not a U.S. state"),
        ({"hours": {"days": {"someday": {"start": "9:00", "end": "10:00"}}}}, r"hours\.days\n.*'someday' is not a"),
        ({"conditions": {"groups": [[{"field": "a b", "op": "=", "value": 1}]]}},
         r"conditions\.groups\.0\.0\.field\n.*'a b' is not a field name"),
        ({"caps": {"hourly": {"enabled": True, "limit": -5}}}, r"caps\.hourly\.limit"),
        ({"geo": {"enabled": True}}, r"geo\n  Extra inputs"),
    ],
)  # fmt: skip
def test_bad_configs_name_the_bad_entry(payload, error):
    with pytest.raises(ValidationError, match=error):
        FilterConfig.model_validate(payload)


def test_configs_are_frozen_values():
    with pytest.raises(ValidationError, match="frozen"):
        EVERYTHING.zip.enabled = False  # type: ignore[misc]


def test_facts_need_an_aware_now_and_a_real_timezone():
    with pytest.raises(ValueError, match="naive"):
        Facts({}, datetime(2026, 11, 25, 10), NY)
    with pytest.raises(ValueError, match="unknown timezone 'EST5EDT '"):
        Facts({}, WEDNESDAY_10AM, "EST5EDT ")
    with pytest.raises(ValueError, match="unknown timezone ''"):
        Facts({}, WEDNESDAY_10AM, "")


def test_facts_accept_any_offset_and_read_the_org_clock():
    plus2 = WEDNESDAY_10AM.astimezone(timezone(timedelta(hours=2)))
    local = Facts({}, plus2, NY).local_now
    assert (local.hour, local.utcoffset()) == (10, timedelta(hours=-5))
    assert evaluate(EVERYTHING, Facts(GOOD_LEAD, plus2, NY), {}) == evaluate(
        EVERYTHING, facts(**GOOD_LEAD), {}
    )


@given(st.dictionaries(st.sampled_from(["daily", "hourly", "weekly"]), st.integers(0, 20)))
def test_first_skip_is_the_first_failing_decision(counts):
    decisions = evaluate(EVERYTHING, facts(**GOOD_LEAD), counts)
    failing = [d.skip for d in decisions if not d.passed]
    assert first_skip(EVERYTHING, facts(**GOOD_LEAD), counts) == (failing[0] if failing else None)
    assert all((d.skip is None) is d.passed for d in decisions)
