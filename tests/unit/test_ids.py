"""Ids: the base32 encoding against its definition, order, prefixes, uniqueness."""

import random

from postbackd import ids

ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"


def by_definition(value: int) -> str:
    """26 Crockford base32 digits of a 128-bit number, most significant first."""
    return "".join(ALPHABET[(value >> shift) & 31] for shift in range(125, -1, -5))


def test_encode128_is_base32_of_the_number():
    rng = random.Random(7)
    edges = [0, 1, 31, 32, 2**80 - 1, 2**80, 2**127, 2**128 - 1]
    for value in edges + [rng.getrandbits(128) for _ in range(5000)]:
        assert ids.encode128(value.to_bytes(16, "big")) == by_definition(value)


def test_ids_sort_by_their_millisecond_then_differ():
    earlier = ids.new_id("delivery", now_ms=1_700_000_000_000)
    later = ids.new_id("delivery", now_ms=1_700_000_000_001)
    assert earlier.startswith("dlv_") and len(earlier) == 4 + 26
    assert earlier < later
    same_ms = {ids.new_id("delivery", now_ms=1_700_000_000_000) for _ in range(2000)}
    assert len(same_ms) == 2000
    assert {i[4:14] for i in same_ms} == {earlier[4:14]}  # 48 bits of time: 10 chars (50 bits)


def test_random_pool_never_repeats_bytes_across_refills():
    seen = {ids._random80() for _ in range(1000)}  # 10,000 bytes: two refills of the pool
    assert len(seen) == 1000
    assert all(len(r) == 10 for r in seen)


def test_transaction_id_is_26_chars_of_the_alphabet():
    tid = ids.transaction_id()
    assert len(tid) == 26 and set(tid) <= set(ALPHABET)
