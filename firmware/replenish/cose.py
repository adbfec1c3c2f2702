"""COSE_Mac0 (RFC 9052 section 6.2) with HMAC 256/256, as docs/protocol.md fixes it.

Requests: 17([h'a10105', {4: kid}, payload, tag]) with external_aad = h''.
Answers:  17([h'a10105', {}, payload, tag]) with external_aad = the request's tag.
"""

from micropython import const

from replenish import cbor
from replenish.hmac_sha256 import compare_digest

_COSE_MAC0 = const(17)
_HDR_ALG = const(1)
_HDR_KID = const(4)
_ALG_HMAC_256_256 = const(5)
_TAG_BYTES = const(32)
_MT_BYTES = const(2)

PROTECTED = b"\xa1\x01\x05"  # {1: 5}
_MAC0_CONTEXT = b"\x84\x64MAC0"  # array(4), "MAC0"
_PROTECTED_BSTR = b"\x43\xa1\x01\x05"
_MAC0_START = b"\xd1\x84"  # tag 17, array(4)
_TAG_HEAD = b"\x58\x20"  # bstr(32)


class CoseError(ValueError):
    """Base class: the message was refused."""


class Malformed(CoseError):
    category = "malformed"


class BadMac(CoseError):
    category = "bad_mac"


def _bstr_head(n):
    return cbor.head(_MT_BYTES, n)


def compute_tag(mac, payload, external_aad=b"", protected=PROTECTED):
    """HMAC over MAC_structure, fed to the hash piece by piece."""
    return mac.digest_parts((
        _MAC0_CONTEXT,
        _bstr_head(len(protected)), protected,
        _bstr_head(len(external_aad)), external_aad,
        _bstr_head(len(payload)), payload,
    ))


def create(mac, payload, kid=None, external_aad=b""):
    """Return (cose_bytes, tag). kid set → unprotected {4: kid}, else {}."""
    tag = compute_tag(mac, payload, external_aad)
    out = bytearray(_MAC0_START)
    out.extend(_PROTECTED_BSTR)
    if kid is None:
        out.append(0xA0)
    else:
        out.extend(b"\xa1\x04")
        out.extend(_bstr_head(len(kid)))
        out.extend(kid)
    out.extend(_bstr_head(len(payload)))
    out.extend(payload)
    out.extend(_TAG_HEAD)
    out.extend(tag)
    return bytes(out), tag


def parse(data):
    """Check the envelope; return (protected, unprotected, payload, tag) or raise Malformed."""
    try:
        obj = cbor.decode(data)
    except ValueError as err:
        raise Malformed("not CBOR: %s" % err)
    if not isinstance(obj, cbor.Tag) or obj.tag != _COSE_MAC0:
        raise Malformed("not a tagged COSE_Mac0")
    obj = obj.value
    if not isinstance(obj, list) or len(obj) != 4:
        raise Malformed("COSE_Mac0 must be a 4-element array")
    protected, unprotected, payload, tag = obj
    if not isinstance(protected, bytes) or not isinstance(payload, bytes):
        raise Malformed("protected header and payload must be byte strings")
    if not isinstance(unprotected, dict) or not isinstance(tag, bytes):
        raise Malformed("unprotected header must be a map and tag a byte string")
    try:
        headers = cbor.decode(protected) if protected else {}
    except ValueError:
        raise Malformed("protected header is not CBOR")
    if not isinstance(headers, dict) or headers.get(_HDR_ALG) != _ALG_HMAC_256_256:
        raise Malformed("algorithm must be HMAC 256/256 (5)")
    if len(tag) != _TAG_BYTES:
        raise Malformed("tag must be 32 bytes")
    return protected, unprotected, payload, tag


def verify(mac, data, external_aad=b""):
    """Return (payload, unprotected) of a COSE_Mac0 that verifies; raise Malformed/BadMac."""
    protected, unprotected, payload, tag = parse(data)
    expected = compute_tag(mac, payload, external_aad, protected)
    if not compare_digest(expected, tag):
        raise BadMac("MAC does not verify")
    return payload, unprotected


def verify_answer(mac, data, request_tag):
    """An answer's payload, if its MAC binds it to the request with request_tag."""
    return verify(mac, data, request_tag)[0]


def kid_of(unprotected):
    kid = unprotected.get(_HDR_KID)
    if not isinstance(kid, bytes):
        raise Malformed("kid must be a byte string")
    return kid
