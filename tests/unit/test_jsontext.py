"""jsontext: orjson's speed, exact where orjson is not (integers beyond 64 bits)."""

from __future__ import annotations

import json
import pickle

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from postbackd import jsontext
from postbackd.jsontext import JsonText

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()  # unbounded: well beyond 64 bits
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(), inner, max_size=5),
    max_leaves=30,
)


@given(json_values)
def test_round_trip_is_exact(value):
    text = jsontext.dumps(value)
    assert jsontext.loads(text) == value
    assert jsontext.loads(text.encode()) == value


@given(json_values)
def test_reads_what_the_standard_module_reads(value):
    text = json.dumps(value)
    assert jsontext.loads(text) == json.loads(text)


@pytest.mark.parametrize(
    "number", [2**64 - 1, 2**64, -(2**63), -(2**63) - 1, 10**20, 123456789012345678901, -(10**30)]
)
def test_integers_at_and_beyond_64_bits_keep_their_value(number):
    text = f'{{"account": {number}, "note": "x"}}'
    assert jsontext.loads(text) == {"account": number, "note": "x"}
    assert type(jsontext.loads(text.encode())["account"]) is int
    assert jsontext.dumps({"account": number}) == f'{{"account":{number}}}'


def test_long_digit_runs_inside_strings_read_the_same():
    text = '{"click": "000000000000000000000123", "n": 1}'
    assert jsontext.loads(text) == {"click": "000000000000000000000123", "n": 1}


@pytest.mark.parametrize(
    "bad",
    [
        '{"a": NaN}',
        '{"a": Infinity} 12345678901234567890',
        b'{"a": "\xff"}',
        '{"a": "\\ud800", "n": 12345678901234567890123}',
        "[1,",
        "",
        b"\x00",
    ],
)
def test_invalid_text_is_refused_as_orjson_refuses_it(bad):
    with pytest.raises(jsontext.DecodeError):
        jsontext.loads(bad)
    assert issubclass(orjson.JSONDecodeError, jsontext.DecodeError)


def test_text_already_serialized_is_stored_as_it_is():
    stored = JsonText('{"a":1}')
    assert jsontext.dumps(stored) is stored
    assert jsontext.loads(stored) == {"a": 1}
    again = pickle.loads(pickle.dumps(stored))
    assert again == stored and jsontext.loads(again) == {"a": 1}


def test_long_integers_beside_non_ascii_text_keep_their_value():
    # the digit-run check reads the UTF-8 bytes (str.translate took 41 µs on such a text)
    text = '{"name": "Zoë Ñúñez 東京", "account": 123456789012345678901, "n": 2}'
    assert jsontext.loads(text) == {
        "name": "Zoë Ñúñez 東京",
        "account": 123456789012345678901,
        "n": 2,
    }
    assert jsontext.loads(text.encode()) == jsontext.loads(text)
