"""State exclusion: codes or full names in, codes stored, leads matched either way."""

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from postbackd.outbound.filters import Facts, Skip, StateFilter
from postbackd.outbound.filters.us_states import STATES, state_code

NOW = datetime(2026, 11, 25, 15, tzinfo=UTC)


def facts(**fields):
    return Facts(fields, NOW, "UTC")


def test_table_has_50_states_dc_pr_and_territories():
    assert len(STATES) == 50 + 1 + 1 + 4
    assert {"DC", "PR", "AS", "GU", "MP", "VI"} <= STATES.keys()


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("CA", "CA"),
        ("ca", "CA"),
        (" Ca ", "CA"),
        ("California", "CA"),
        ("CALIFORNIA", "CA"),
        ("  new   york ", "NY"),
        ("North Carolina", "NC"),
        ("district of columbia", "DC"),
        ("Washington, D.C.", "DC"),
        ("Washington DC", "DC"),
        ("D.C.", "DC"),
        ("Washington", "WA"),
        ("Puerto Rico", "PR"),
        ("pr", "PR"),
        ("Guam", "GU"),
        ("American Samoa", "AS"),
        ("Northern Mariana Islands", "MP"),
        ("U.S. Virgin Islands", "VI"),
        ("US Virgin Islands", "VI"),
        ("virgin islands", "VI"),
        ("Ontario", None),
        ("XX", None),
        ("C", None),
        ("", None),
        ("Californiaa", None),
    ],
)
def test_state_code(text, code):
    assert state_code(text) == code


def test_config_stores_codes_once():
    config = StateFilter(enabled=True, states=["california", "CA", " ny", "Puerto Rico"])
    assert config.states == ["CA", "NY", "PR"]


@pytest.mark.parametrize("entry", ["Ontario", "XX", "", "Cali"])
def test_unknown_state_is_refused_by_name(entry):
    with pytest.raises(ValidationError) as info:
        StateFilter(enabled=True, states=["CA", entry])
    assert f"{entry!r} is not a U.S. state, DC or territory" in str(info.value)


EXCLUDE_CA = StateFilter(enabled=True, states=["CA", "District of Columbia"])


@pytest.mark.parametrize(
    ("state", "skip"),
    [
        ("CA", Skip("state", "state CA excluded", "CA")),
        ("ca", Skip("state", "state CA excluded", "CA")),
        (" california ", Skip("state", "state CA excluded", "CA")),
        ("Washington, D.C.", Skip("state", "state DC excluded", "DC")),
        ("dc", Skip("state", "state DC excluded", "DC")),
        ("NY", None),
        ("Washington", None),
        ("Ontario", None),
        ("", None),
        (None, None),
    ],
)
def test_decide(state, skip):
    decision = EXCLUDE_CA.decide(facts(state=state))
    assert decision.skip == skip
    assert decision.passed is (skip is None)


def test_details_of_passing_leads():
    assert EXCLUDE_CA.decide(facts()).detail == "lead has no state; not excluded"
    assert EXCLUDE_CA.decide(facts(state="Ontario")).detail == "state 'Ontario' is not a U.S. state"
    assert EXCLUDE_CA.decide(facts(state="ny")).detail == "state NY not excluded"


codes = st.sampled_from(sorted(STATES))
spellings = st.sampled_from([str.upper, str.lower, str.title])


@given(st.lists(codes, max_size=10), codes, st.booleans(), spellings)
def test_excluded_iff_listed_whatever_the_spelling(listed, lead, by_name, spell):
    config = StateFilter(enabled=True, states=listed)
    text = spell(STATES[lead] if by_name else lead)
    assert config.decide(facts(state=f" {text} ")).passed is (lead not in listed)


@given(st.lists(st.tuples(codes, st.booleans()), max_size=10))
def test_stored_codes_validate_to_themselves(entries):
    config = StateFilter(states=[STATES[c] if by_name else c for c, by_name in entries])
    assert StateFilter(states=config.states).states == config.states
