"""Ed25519 signature verification (RFC 8032 section 5.1.7) in pure MicroPython.

A device checks one signature per firmware update: the release manifest's, under the
manufacturer's public key baked into its identity at provisioning (docs/fleet.md).
Only verification is here (no secrets on the device). SHA-512 comes from hashlib when
the port has it, else from the small pure implementation below: the signed message is
short (a domain string and a SHA-256), so SHA-512 runs over a single 128-byte block.

Points use extended twisted Edwards coordinates (X, Y, Z, T) with every coordinate
reduced mod p, so the big integers stay near 256 bits (MicroPython's mpz is slow on
larger ones). Inputs are public: no constant-time care is needed for verification.
"""

import hashlib

_P = 2**255 - 19
_Q = 2**252 + 27742317777372353535851937790883648493  # group order
_D = 37095705934669439343138083508754565189542113879843219016388785533085940283555
_SQRT_M1 = 19681161376707505956807079304988542015446066515923890162744021073123829784752
_GX = 15112221349535400772501151409588531511454012693041857206046113283949847762202
_GY = 46316835694926478169428394003475163141307993866256225615783033603165251855960
_MASK64 = 0xFFFFFFFFFFFFFFFF

_K512 = (
    0x428a2f98d728ae22, 0x7137449123ef65cd, 0xb5c0fbcfec4d3b2f, 0xe9b5dba58189dbbc,
    0x3956c25bf348b538, 0x59f111f1b605d019, 0x923f82a4af194f9b, 0xab1c5ed5da6d8118,
    0xd807aa98a3030242, 0x12835b0145706fbe, 0x243185be4ee4b28c, 0x550c7dc3d5ffb4e2,
    0x72be5d74f27b896f, 0x80deb1fe3b1696b1, 0x9bdc06a725c71235, 0xc19bf174cf692694,
    0xe49b69c19ef14ad2, 0xefbe4786384f25e3, 0x0fc19dc68b8cd5b5, 0x240ca1cc77ac9c65,
    0x2de92c6f592b0275, 0x4a7484aa6ea6e483, 0x5cb0a9dcbd41fbd4, 0x76f988da831153b5,
    0x983e5152ee66dfab, 0xa831c66d2db43210, 0xb00327c898fb213f, 0xbf597fc7beef0ee4,
    0xc6e00bf33da88fc2, 0xd5a79147930aa725, 0x06ca6351e003826f, 0x142929670a0e6e70,
    0x27b70a8546d22ffc, 0x2e1b21385c26c926, 0x4d2c6dfc5ac42aed, 0x53380d139d95b3df,
    0x650a73548baf63de, 0x766a0abb3c77b2a8, 0x81c2c92e47edaee6, 0x92722c851482353b,
    0xa2bfe8a14cf10364, 0xa81a664bbc423001, 0xc24b8b70d0f89791, 0xc76c51a30654be30,
    0xd192e819d6ef5218, 0xd69906245565a910, 0xf40e35855771202a, 0x106aa07032bbd1b8,
    0x19a4c116b8d2d0c8, 0x1e376c085141ab53, 0x2748774cdf8eeb99, 0x34b0bcb5e19b48a8,
    0x391c0cb3c5c95a63, 0x4ed8aa4ae3418acb, 0x5b9cca4f7763e373, 0x682e6ff3d6b2b8a3,
    0x748f82ee5defb2fc, 0x78a5636f43172f60, 0x84c87814a1f0ab72, 0x8cc702081a6439ec,
    0x90befffa23631e28, 0xa4506cebde82bde9, 0xbef9a3f7b2c67915, 0xc67178f2e372532b,
    0xca273eceea26619c, 0xd186b8c721c0c207, 0xeada7dd6cde0eb1e, 0xf57d4f7fee6ed178,
    0x06f067aa72176fba, 0x0a637dc5a2c898a6, 0x113f9804bef90dae, 0x1b710b35131c471b,
    0x28db77f523047d84, 0x32caab7b40c72493, 0x3c9ebe0a15c9bebc, 0x431d67c49c100d4c,
    0x4cc5d4becb3e42b6, 0x597f299cfc657e2a, 0x5fcb6fab3ad6faec, 0x6c44198c4a475817,
)
_H512 = (0x6a09e667f3bcc908, 0xbb67ae8584caa73b, 0x3c6ef372fe94f82b, 0xa54ff53a5f1d36f1,
         0x510e527fade682d1, 0x9b05688c2b3e6c1f, 0x1f83d9abfb41bd6b, 0x5be0cd19137e2179)


def _rotr(x, n):
    return ((x >> n) | (x << (64 - n))) & _MASK64


def sha512(data):
    """SHA-512 (FIPS 180-4) of bytes; hashlib's when the port provides it."""
    native = getattr(hashlib, "sha512", None)
    if native is not None:
        return native(data).digest()
    size = len(data)
    msg = bytearray(data)
    msg.append(0x80)
    while len(msg) % 128 != 112:
        msg.append(0)
    msg.extend((size * 8).to_bytes(16, "big"))
    h = list(_H512)
    w = [0] * 80
    for start in range(0, len(msg), 128):
        for i in range(16):
            w[i] = int.from_bytes(msg[start + 8 * i:start + 8 * i + 8], "big")
        for i in range(16, 80):
            a, b = w[i - 15], w[i - 2]
            s0 = _rotr(a, 1) ^ _rotr(a, 8) ^ (a >> 7)
            s1 = _rotr(b, 19) ^ _rotr(b, 61) ^ (b >> 6)
            w[i] = (w[i - 16] + s0 + w[i - 7] + s1) & _MASK64
        a, b, c, d, e, f, g, hh = h
        for i in range(80):
            t1 = (hh + (_rotr(e, 14) ^ _rotr(e, 18) ^ _rotr(e, 41))
                  + ((e & f) ^ (~e & g)) + _K512[i] + w[i]) & _MASK64
            t2 = ((_rotr(a, 28) ^ _rotr(a, 34) ^ _rotr(a, 39))
                  + ((a & b) ^ (a & c) ^ (b & c))) & _MASK64
            hh, g, f, e, d, c, b, a = g, f, e, (d + t1) & _MASK64, c, b, a, (t1 + t2) & _MASK64
        h = [(x + y) & _MASK64 for x, y in zip(h, (a, b, c, d, e, f, g, hh))]
    return b"".join(x.to_bytes(8, "big") for x in h)


def _pow(base, exp):
    """base ** exp mod p by square-and-multiply (no reliance on three-argument pow)."""
    result = 1
    base %= _P
    while exp:
        if exp & 1:
            result = result * base % _P
        base = base * base % _P
        exp >>= 1
    return result


def _add(p1, p2):
    x1, y1, z1, t1 = p1
    x2, y2, z2, t2 = p2
    a = (y1 - x1) * (y2 - x2) % _P
    b = (y1 + x1) * (y2 + x2) % _P
    c = 2 * t1 * t2 * _D % _P
    d = 2 * z1 * z2 % _P
    e, f, g, h = b - a, d - c, d + c, b + a
    return e * f % _P, g * h % _P, f * g % _P, e * h % _P


def _mul(scalar, point):
    result = (0, 1, 1, 0)
    while scalar:
        if scalar & 1:
            result = _add(result, point)
        point = _add(point, point)
        scalar >>= 1
    return result


def _decompress(raw):
    """The point whose 32-byte encoding is raw, or None if it is not on the curve."""
    y = int.from_bytes(raw, "little")
    sign = y >> 255
    y &= (1 << 255) - 1
    if y >= _P:
        return None
    x2 = (y * y - 1) * _pow(_D * y * y + 1, _P - 2) % _P
    if x2 == 0:
        if sign:
            return None
        return (0, y, 1, 0)
    x = _pow(x2, (_P + 3) // 8)
    if (x * x - x2) % _P:
        x = x * _SQRT_M1 % _P
    if (x * x - x2) % _P:
        return None
    if (x & 1) != sign:
        x = _P - x
    return (x, y, 1, x * y % _P)


def _equal(p1, p2):
    return ((p1[0] * p2[2] - p2[0] * p1[2]) % _P == 0
            and (p1[1] * p2[2] - p2[1] * p1[2]) % _P == 0)


def verify(public_key, message, signature):
    """True when signature (64 bytes) is public_key's (32 bytes) over message."""
    if len(public_key) != 32 or len(signature) != 64:
        return False
    a = _decompress(public_key)
    r = _decompress(signature[:32])
    if a is None or r is None:
        return False
    s = int.from_bytes(signature[32:], "little")
    if s >= _Q:
        return False
    k = int.from_bytes(sha512(bytes(signature[:32]) + bytes(public_key) + bytes(message)),
                       "little") % _Q
    base = (_GX, _GY, 1, _GX * _GY % _P)
    return _equal(_mul(s, base), _add(r, _mul(k, a)))
