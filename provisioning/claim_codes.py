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


def _check_symbol(body: str) -> str:
    # Weighted sum modulo 31 (prime): catches single substitutions and transpositions.
    total = sum((i + 1) * ALPHABET.index(c) for i, c in enumerate(body))
    return ALPHABET[total % 31]


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
