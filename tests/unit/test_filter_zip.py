"""ZIP exclusion: five-digit entries only, ZIP+4 leads cut to five, no ZIP passes."""

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from postbackd.outbound.filters import Facts, Skip, ZipFilter
from postbackd.outbound.filters.zip import lead_zip

NOW = datetime(2026, 11, 25, 15, tzinfo=UTC)
EXCLUDED = ZipFilter(enabled=True, codes=["90210", "02134"])


def facts(**fields):
    return Facts(fields, NOW, "America/New_York")


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"zip_code": "90210"}, "90210"),
        ({"zip": "90210"}, "90210"),
        ({"zipcode": "90210"}, "90210"),
        ({"postal_code": "90210"}, "90210"),
        ({"zip_code": " 90210 "}, "90210"),
        ({"zip_code": "90210-1234"}, "90210"),
        ({"zip_code": "902101234"}, "90210"),
        ({"zip_code": "90210 1234"}, "90210"),
        ({"zip_code": 2134}, "02134"),
        ({"zip_code": 90210}, "90210"),
        ({"zip_code": 902101234}, "90210"),
        ({"zip_code": "", "zip": "90210"}, "90210"),
        ({"zip_code": None, "zip": "90210"}, "90210"),
        ({"zip_code": "   ", "postal_code": "90210"}, "90210"),
        ({"zip_code": "10001", "zip": "90210"}, "10001"),
        ({}, None),
        ({"zip_code": None}, None),
        ({"zip_code": ""}, None),
        ({"zip_code": "1234"}, None),
        ({"zip_code": "123456"}, None),
        ({"zip_code": "90210-12"}, None),
        ({"zip_code": "K1A 0B6"}, None),
        ({"zip_code": "abcde"}, None),
        ({"zip_code": "٩٠٢١٠"}, None),
        ({"zip_code": True}, None),
        ({"zip_code": -1}, None),
        ({"zip_code": "bad", "zip": "90210"}, None),
    ],
)
def test_lead_zip(fields, expected):
    assert lead_zip(fields) == expected


@pytest.mark.parametrize(
    ("fields", "skip"),
    [
        ({"zip_code": "90210"}, Skip("zip", "ZIP 90210 excluded", "90210")),
        ({"zip": "90210-4321"}, Skip("zip", "ZIP 90210 excluded", "90210")),
        ({"zip_code": 2134}, Skip("zip", "ZIP 02134 excluded", "02134")),
        ({"zip_code": "02134"}, Skip("zip", "ZIP 02134 excluded", "02134")),
        ({"zip_code": "90211"}, None),
        ({"zip_code": "9021"}, None),
        ({}, None),
        ({"zip_code": ""}, None),
    ],
)
def test_decide(fields, skip):
    decision = EXCLUDED.decide(facts(**fields))
    assert decision.skip == skip
    assert decision.passed is (skip is None)
    assert decision.filter == "zip"


def test_detail_says_why_a_lead_passed():
    assert EXCLUDED.decide(facts()).detail == "lead has no readable ZIP; not excluded"
    assert EXCLUDED.decide(facts(zip="10001")).detail == "ZIP 10001 not excluded"


def test_codes_are_trimmed_deduplicated_and_ints_accepted():
    config = ZipFilter(enabled=True, codes=[" 90210", "90210", 10001])
    assert config.codes == ["90210", "10001"]


def test_defaults_are_off_and_empty():
    assert ZipFilter() == ZipFilter(enabled=False, codes=[])


@pytest.mark.parametrize(
    ("entry", "named"),
    [
        ("1234", "'1234'"),
        ("123456", "'123456'"),
        ("90210-1234", "'90210-1234'"),
        ("9021a", "'9021a'"),
        ("", "''"),
        ("٩٠٢١٠", "'٩٠٢١٠'"),
        ("90 210", "'90 210'"),
        (2134, "'2134'"),
    ],
)
def test_bad_code_is_refused_by_name(entry, named):
    with pytest.raises(ValidationError) as info:
        ZipFilter(enabled=True, codes=["90210", entry])
    assert f"{named} is not a 5-digit ZIP code" in str(info.value)


def test_unknown_key_is_refused():
    with pytest.raises(ValidationError, match="extra"):
        ZipFilter.model_validate({"enabled": True, "zips": ["90210"]})


zips = st.from_regex(r"[0-9]{5}", fullmatch=True)


@given(st.lists(zips, max_size=20), zips, st.sampled_from(["", "-1234", "6789"]))
def test_a_zip_not_listed_is_never_stopped(codes, lead, plus4):
    config = ZipFilter(enabled=True, codes=codes)
    decision = config.decide(facts(zip_code=lead + plus4))
    assert decision.passed is (lead not in codes)


@given(st.lists(zips, min_size=1, max_size=20), st.data())
def test_a_listed_zip_is_always_stopped(codes, data):
    lead = data.draw(st.sampled_from(codes))
    skip = ZipFilter(enabled=True, codes=codes).decide(facts(zip=lead)).skip
    assert skip == Skip("zip", f"ZIP {lead} excluded", lead)
