"""Claim codes: what a household types from a device's label.

Crockford base32 (no I, L, O, U: nothing to misread), 12 random symbols (60 bits,
unguessable) and one check symbol that catches any single typo or swap of
neighbours. Shown as XXXX-XXXX-XXXX-C; case, dashes and spaces do not matter.
"""

from __future__ import annotations

import hashlib
import secrets

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_RANDOM_SYMBOLS = 12
_READS_AS = {"O": "0", "I": "1", "L": "1"}


# The check symbol is a weighted sum over GF(32), the field of the 32 symbol values
# (polynomial x^5 + x^2 + 1, primitive). A sum modulo 31 cannot tell 0 from Z (31).
_GF32_POLY = 0b100101


def _gf32_mul(a: int, b: int) -> int:
    product = 0
    while b:
        if b & 1:
            product ^= a
        b >>= 1
        a <<= 1
        if a & 0b100000:
            a ^= _GF32_POLY
    return product


def _weights(count: int) -> tuple[int, ...]:
    # alpha^1 .. alpha^count (alpha = x): distinct, nonzero and never 1, so a changed
    # symbol, a swap of neighbours, and a swap of the last symbol with the check
    # symbol all change the sum.
    weights, w = [], 1
    for _ in range(count):
        w = _gf32_mul(w, 0b10)
        weights.append(w)
    return tuple(weights)


_WEIGHTS = _weights(_RANDOM_SYMBOLS)


def _check_symbol(body: str) -> str:
    total = 0
    for weight, symbol in zip(_WEIGHTS, body, strict=True):
        total ^= _gf32_mul(weight, ALPHABET.index(symbol))
    return ALPHABET[total]


def generate() -> str:
    body = "".join(secrets.choice(ALPHABET) for _ in range(_RANDOM_SYMBOLS))
    code = body + _check_symbol(body)
    return "-".join([code[0:4], code[4:8], code[8:12], code[12:]])


def normalize(code: str) -> str:
    text = "".join(code.upper().replace("-", "").split())
    return "".join(_READS_AS.get(c, c) for c in text)


def is_valid(code: str) -> bool:
    text = normalize(code)
    if len(text) != _RANDOM_SYMBOLS + 1 or any(c not in ALPHABET for c in text):
        return False
    return secrets.compare_digest(_check_symbol(text[:-1]), text[-1])


def code_hash(code: str) -> str:
    """What the database stores: the code itself is only on the label."""
    return hashlib.sha256(normalize(code).encode()).hexdigest()


SETUP_SECRET_SYMBOLS = 8  # 40 bits: proof of possession for the Wi-Fi setup access point


def setup_secret() -> str:
    """8 random Crockford base32 symbols, printed on the label and put in the bundle."""
    return "".join(secrets.choice(ALPHABET) for _ in range(SETUP_SECRET_SYMBOLS))
