"""HMAC-SHA-256 (RFC 2104) over hashlib.sha256; MicroPython has no hmac module.

The key is hashed/padded once per HmacSha256 object: signing then costs two
sha256 objects and no key-sized allocations.
"""

import hashlib

from micropython import const

_BLOCK = const(64)
DIGEST_SIZE = 32


class HmacSha256:
    def __init__(self, key):
        if len(key) > _BLOCK:
            key = hashlib.sha256(key).digest()
        ipad = bytearray(_BLOCK)
        opad = bytearray(_BLOCK)
        for i in range(_BLOCK):
            k = key[i] if i < len(key) else 0
            ipad[i] = k ^ 0x36
            opad[i] = k ^ 0x5C
        self._ipad = bytes(ipad)
        self._opad = bytes(opad)

    def digest_parts(self, parts):
        """MAC of the concatenation of parts, without concatenating them."""
        inner = hashlib.sha256(self._ipad)
        for part in parts:
            inner.update(part)
        outer = hashlib.sha256(self._opad)
        outer.update(inner.digest())
        return outer.digest()

    def digest(self, data):
        return self.digest_parts((data,))

    def __repr__(self):
        return "<HmacSha256>"  # never show key material


def compare_digest(a, b):
    """Constant-time comparison (time depends only on the lengths)."""
    if len(a) != len(b):
        return False
    diff = 0
    for i in range(len(a)):
        diff |= a[i] ^ b[i]
    return diff == 0
