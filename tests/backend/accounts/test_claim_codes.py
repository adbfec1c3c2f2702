"""Claim codes: 60 random bits, an unambiguous alphabet, and a check symbol that
catches every single typo and every swap of neighbours."""

from __future__ import annotations

import itertools
import math
import re

import pytest

from backend.accounts import claim_codes
from backend.accounts.claim_codes import ALPHABET, code_hash, generate, is_valid, normalize

SHAPE = re.compile(r"[0-9A-Z]{4}-[0-9A-Z]{4}-[0-9A-Z]{4}-[0-9A-Z]")


def symbols(code: str) -> str:
    return normalize(code)


def with_check(body: str) -> str:
    """A well-formed code for `body` (12 symbols), built the only public way there is:
    try every last symbol and keep the one that validates."""
    valid = [body + c for c in ALPHABET if is_valid(body + c)]
    assert len(valid) == 1, (body, valid)
    return valid[0]


def substitutions(code: str):
    for i, original in enumerate(code):
        for other in ALPHABET:
            if other != original:
                yield code[:i] + other + code[i + 1:]


def transpositions(code: str):
    for i in range(len(code) - 1):
        if code[i] != code[i + 1]:
            yield code[:i] + code[i + 1] + code[i] + code[i + 2:]


def test_alphabet_is_32_unambiguous_symbols():
    assert len(ALPHABET) == len(set(ALPHABET)) == 32
    assert set(ALPHABET) <= set("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ")
    assert not set(ALPHABET) & set("ILOU")


def test_generated_codes_are_valid_and_well_formed():
    codes = [generate() for _ in range(2000)]
    for code in codes:
        assert SHAPE.fullmatch(code), code
        assert is_valid(code)
        assert len(symbols(code)) == 13 and set(symbols(code)) <= set(ALPHABET)
    assert len(set(codes)) == len(codes)


def test_generated_codes_carry_60_random_bits():
    random_symbols = len(symbols(generate())) - 1  # the last one is the check symbol
    assert random_symbols * math.log2(len(ALPHABET)) == 60
    # Every symbol turns up in every random position, and the check symbol varies:
    codes = [symbols(generate()) for _ in range(3000)]
    for position in range(random_symbols):
        assert {c[position] for c in codes} == set(ALPHABET), position
    assert len({c[-1] for c in codes}) > 16


def test_normalize_forgives_case_dashes_spaces_and_lookalikes():
    code = generate()
    plain = symbols(code)
    assert plain == code.replace("-", "")
    variants = [code.lower(), plain, plain.lower(), " ".join(plain), f"  {code}\n",
                code.replace("-", " - "), "-".join(plain)]
    for variant in variants:
        assert normalize(variant) == plain and is_valid(variant), variant
        assert code_hash(variant) == code_hash(code)
    assert normalize("o0-Ii-Ll") == "001111"
    zeros_and_ones = with_check("0101" * 3)
    lookalike = zeros_and_ones[:12].replace("0", "O").replace("1", "l") + zeros_and_ones[12]
    assert is_valid(lookalike) and is_valid(lookalike.lower())
    assert code_hash(lookalike) == code_hash(zeros_and_ones)


@pytest.mark.parametrize("bad", ["", "0" * 12, "0" * 14, "U" * 13, "ABCD-EFGH-JKMN-*",
                                 "ABCDEFGHJKMNPQ"])
def test_malformed_codes_are_invalid(bad):
    assert not is_valid(bad)


def test_the_hash_is_not_the_code():
    code = generate()
    assert symbols(code) not in code_hash(code)
    assert code_hash(code) != code_hash(generate())
    assert re.fullmatch(r"[0-9a-f]{64}", code_hash(code))


def assert_every_typo_is_caught(code: str) -> None:
    plain = symbols(code)
    assert is_valid(plain)
    for typo in itertools.chain(substitutions(plain), transpositions(plain)):
        assert not is_valid(typo), f"{typo} passes for {plain}"


def test_every_substitution_and_swap_of_generated_codes_is_caught():
    for _ in range(20):
        assert_every_typo_is_caught(generate())


def test_every_substitution_of_every_symbol_value_is_caught():
    """A code whose random symbols are all one value, for each of the 32 values: so
    every (position, original, replacement) triple is tried."""
    for symbol in ALPHABET:
        assert_every_typo_is_caught(with_check(symbol * 12))


def test_every_swap_of_every_pair_of_neighbours_is_caught():
    """Bodies ABAB... for all pairs: every pair of values swapped at every position,
    including the swap of the last random symbol with the check symbol."""
    for a, b in itertools.product(ALPHABET, repeat=2):
        if a != b:
            code = with_check((a + b) * 6)
            for typo in transpositions(code):
                assert not is_valid(typo), f"{typo} passes for {code}"


def test_zero_and_z_are_told_apart():
    """Regression: the check symbol was a sum modulo 31, which cannot tell 0 from Z."""
    code = with_check("0" * 12)
    assert not is_valid("Z" + code[1:])
    assert not is_valid(code[:11] + "Z" + code[12])
    assert claim_codes.normalize("z") == "Z"
