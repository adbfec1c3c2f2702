"""Protocol v1 codec for the backend (see docs/protocol.md).

Pure functions over bytes: no aiocoap, no database. The firmware has its own
MicroPython codec; both are checked against docs/vectors/protocol-v1.json.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

import cbor2

from backend.errors import MalformedEvent

CONTENT_FORMAT_COSE_MAC0 = 17
EVENT_PATH = "ev"
MAX_PAYLOAD_BYTES = 512
DEVICE_ID_BYTES = 8
KEY_BYTES = 32
TAG_BYTES = 32

_COSE_MAC0_TAG = 17
_ALG_HMAC_256_256 = 5
_HDR_ALG = 1
_HDR_KID = 4
PROTECTED_HMAC256 = cbor2.dumps({_HDR_ALG: _ALG_HMAC_256_256})
_PROTECTED_HMAC256_MAP = MappingProxyType(cbor2.loads(PROTECTED_HMAC256))  # read-only


class Kind(enum.IntEnum):
    BOOT = 0
    PRESS = 1
    LEVEL = 2
    STATUS = 3


class EventKey(enum.IntEnum):
    SEQ = 1
    KIND = 2
    SLOT = 3
    QTY = 4
    REMAINING = 5
    BATTERY_MV = 6
    FW = 7
    DROPPED = 8
    RSSI = 9  # Wi-Fi signal in dBm (a negative integer)
    QUEUED = 10
    WAKES = 11
    OTA = 12  # OtaReport: how the last firmware update ended
    RELEASE = 13  # the release an OTA report is about


class OtaReport(enum.IntEnum):
    """Event key 12 (docs/fleet.md): the device's word on an update."""

    INSTALLED = 1  # running the new firmware and it checked in
    ROLLED_BACK = 2  # the new firmware did not check in within its boots
    REFUSED = 3  # a digest or the manifest's signature did not verify


class AnswerKey(enum.IntEnum):
    SEQ = 1
    RESULT = 2
    ORDER = 3
    STATE = 4
    LAST_SEQ = 5
    BLOCKED = 6
    UPDATE = 7  # a release is due for this device (docs/fleet.md)


class Result(enum.IntEnum):
    """Outcome of an event, as the CoAP response code number (class * 32 + detail)."""

    CREATED = 65  # 2.01 order created
    VALID = 67  # 2.03 duplicate suppressed
    CHANGED = 68  # 2.04 recorded, no order
    BAD_REQUEST = 128  # 4.00 malformed
    UNAUTHORIZED = 129  # 4.01 bad MAC or unknown device
    FORBIDDEN = 131  # 4.03 revoked or unclaimed
    CONFLICT = 137  # 4.09 stale sequence number
    TOO_LARGE = 141  # 4.13
    UNSUPPORTED_FORMAT = 143  # 4.15
    UNAVAILABLE = 163  # 5.03

    @property
    def dotted(self) -> str:
        return f"{self >> 5}.{self & 31:02d}"

    @property
    def outcome(self) -> str:
        return _OUTCOMES[self]


# One vocabulary from the server to the LED: the outcome table of docs/protocol.md
# (tests/backend/test_outcomes.py).
_OUTCOMES = {
    Result.CREATED: "ordered",
    Result.VALID: "already_ordered",
    Result.CHANGED: "recorded",
    Result.BAD_REQUEST: "malformed",
    Result.UNAUTHORIZED: "unauthorized",
    Result.FORBIDDEN: "not_claimed",
    Result.CONFLICT: "stale",
    Result.TOO_LARGE: "too_large",
    Result.UNSUPPORTED_FORMAT: "unsupported_format",
    Result.UNAVAILABLE: "unavailable",
}


@dataclass(frozen=True)
class WireEvent:
    """An event as the device sent it (decoded from the COSE payload). What the server
    keeps of it is a row of `backend.storage.models.Event`."""

    seq: int
    kind: Kind
    slot: int
    qty: int | None = None
    remaining: int | None = None
    battery_mv: int | None = None
    fw: str | None = None
    dropped: int | None = None  # events the device's offline queue had to drop, in all
    rssi: int | None = None  # dBm
    queued: int | None = None
    wakes: int | None = None
    ota: int | None = None  # OtaReport
    release: int | None = None

    def to_map(self) -> dict[int, object]:
        fields = {
            EventKey.SEQ: self.seq,
            EventKey.KIND: int(self.kind),
            EventKey.SLOT: self.slot,
            EventKey.QTY: self.qty,
            EventKey.REMAINING: self.remaining,
            EventKey.BATTERY_MV: self.battery_mv,
            EventKey.FW: self.fw,
            EventKey.DROPPED: self.dropped,
            EventKey.RSSI: self.rssi,
            EventKey.QUEUED: self.queued,
            EventKey.WAKES: self.wakes,
            EventKey.OTA: self.ota,
            EventKey.RELEASE: self.release,
        }
        return {int(k): v for k, v in fields.items() if v is not None}


@dataclass(frozen=True)
class SignedEvent:
    """A request whose structure parsed; its MAC is not yet verified."""

    kid: bytes
    protected: bytes
    payload: bytes
    tag: bytes

    def verify(self, key: bytes) -> bool:
        expected = _hmac(key, _mac_structure(self.protected, b"", self.payload))
        return hmac.compare_digest(expected, self.tag)


@dataclass(frozen=True)
class Answer:
    seq: int
    result: Result
    order: int | None = None
    state: str | None = None
    last_seq: int | None = None
    blocked: int | None = None  # policies.Blocked: why no order was created
    update: int | None = None  # id of a release the device should install

    def to_map(self) -> dict[int, object]:
        fields = {
            AnswerKey.SEQ: self.seq,
            AnswerKey.RESULT: int(self.result),
            AnswerKey.ORDER: self.order,
            AnswerKey.STATE: self.state,
            AnswerKey.LAST_SEQ: self.last_seq,
            AnswerKey.BLOCKED: self.blocked,
            AnswerKey.UPDATE: self.update,
        }
        return {int(k): v for k, v in fields.items() if v is not None}


# HMAC-SHA256 (RFC 2104) from two SHA-256 calls: the writer MACs every event twice, and
# hmac.digest fetches OpenSSL's algorithm on each call (1.6 us a MAC; this way 1.0).
# test_protocol_codec.py holds it to hmac.digest for keys of every length up to 100.
_SHA256_BLOCK = 64
_IPAD = bytes(x ^ 0x36 for x in range(256))
_OPAD = bytes(x ^ 0x5C for x in range(256))


def _hmac(key: bytes, data: bytes) -> bytes:
    if len(key) > _SHA256_BLOCK:
        key = hashlib.sha256(key).digest()
    key = key.ljust(_SHA256_BLOCK, b"\0")
    inner = hashlib.sha256(key.translate(_IPAD) + data).digest()
    return hashlib.sha256(key.translate(_OPAD) + inner).digest()


# The writer verifies and answers every event: building these few fixed-shape items by
# hand costs a fraction of cbor2's generic canonical encoder (three of them per answer).
# Byte for byte what cbor2.dumps(..., canonical=True) writes: test_protocol_codec.py
# compares the two, and the vectors pin the result.
_MAX_HEAD = 1 << 64  # beyond this cbor2 writes a bignum: left to it
_MAJOR_UINT, _MAJOR_BYTES, _MAJOR_TEXT, _MAJOR_ARRAY, _MAJOR_MAP, _MAJOR_TAG = 0, 2, 3, 4, 5, 6
_SHORT_HEADS = [[bytes((major << 5 | n,)) for n in range(24)] for major in range(8)]


def _head(major: int, n: int) -> bytes:
    """A CBOR item's head in its shortest form (RFC 8949 §3, §4.2.1); n < 2**64."""
    if n < 24:
        return _SHORT_HEADS[major][n]
    if n < 0x100:
        return bytes((major << 5 | 24, n))
    if n < 0x10000:
        return bytes((major << 5 | 25,)) + n.to_bytes(2, "big")
    if n < 0x100000000:
        return bytes((major << 5 | 26,)) + n.to_bytes(4, "big")
    return bytes((major << 5 | 27,)) + n.to_bytes(8, "big")


def _bstr(data: bytes) -> bytes:
    return _head(_MAJOR_BYTES, len(data)) + data


_MAC0_CONTEXT = _head(_MAJOR_ARRAY, 4) + _head(_MAJOR_TEXT, 4) + b"MAC0"
# tag 17, [protected, {} (no unprotected header), ... then payload and tag
_ANSWER_ENVELOPE = (_head(_MAJOR_TAG, _COSE_MAC0_TAG) + _head(_MAJOR_ARRAY, 4)
                    + _bstr(PROTECTED_HMAC256) + _head(_MAJOR_MAP, 0))


def _mac_structure(protected: bytes, external_aad: bytes, payload: bytes) -> bytes:
    """MAC_structure (RFC 9052 §6.3): ["MAC0", protected, external_aad, payload]."""
    return _MAC0_CONTEXT + _bstr(protected) + _bstr(external_aad) + _bstr(payload)


def _mac0(key: bytes, unprotected: dict, payload: bytes, external_aad: bytes) -> bytes:
    tag = _hmac(key, _mac_structure(PROTECTED_HMAC256, external_aad, payload))
    return cbor2.dumps(
        cbor2.CBORTag(_COSE_MAC0_TAG, [PROTECTED_HMAC256, unprotected, payload, tag]),
        canonical=True,
    )


def encode_event(key: bytes, device_id: bytes, event: WireEvent) -> bytes:
    """Sign an event as a device would (used by tests, vectors and the load generator)."""
    payload = cbor2.dumps(event.to_map(), canonical=True)
    return _mac0(key, {_HDR_KID: device_id}, payload, b"")


def encode_answer(key: bytes, request_tag: bytes, answer: Answer) -> bytes:
    payload = _answer_payload(answer)
    tag = _hmac(key, _mac_structure(PROTECTED_HMAC256, request_tag, payload))
    return _ANSWER_ENVELOPE + _bstr(payload) + _bstr(tag)


def _answer_payload(answer: Answer) -> bytes:
    """The answer's map (canonical: keys 1..7 in order, each one byte), by hand when
    every value is a text or an unsigned integer below 2**64, else by cbor2."""
    values = (answer.seq, int(answer.result), answer.order, answer.state,
              answer.last_seq, answer.blocked, answer.update)
    parts = []
    for key, value in enumerate(values, 1):
        if value is None:
            continue
        if type(value) is int and 0 <= value < _MAX_HEAD:
            parts.append(_SHORT_HEADS[_MAJOR_UINT][key] + _head(_MAJOR_UINT, value))
        elif type(value) is str:
            text = value.encode()
            parts.append(_SHORT_HEADS[_MAJOR_UINT][key] + _head(_MAJOR_TEXT, len(text)) + text)
        else:
            return cbor2.dumps(answer.to_map(), canonical=True)
    return _head(_MAJOR_MAP, len(parts)) + b"".join(parts)


def _loads(data: bytes, what: str):
    try:
        return cbor2.loads(data)
    except Exception as err:  # cbor2 raises several types for bad input
        raise MalformedEvent(f"{what} is not valid CBOR") from err


def parse_signed_event(data: bytes) -> SignedEvent:
    """Parse the COSE_Mac0 envelope. Raises MalformedEvent with a reason."""
    obj = _loads(data, "request")
    if isinstance(obj, cbor2.CBORTag):
        if obj.tag != _COSE_MAC0_TAG:
            raise MalformedEvent("not a COSE_Mac0 (wrong CBOR tag)")
        obj = obj.value
    if not isinstance(obj, (list, tuple)) or len(obj) != 4:
        raise MalformedEvent("not a COSE_Mac0 (expected a 4-element array)")
    protected, unprotected, payload, tag = obj
    if not isinstance(protected, bytes) or not isinstance(payload, bytes):
        raise MalformedEvent("protected header and payload must be byte strings")
    if not _is_map(unprotected) or not isinstance(tag, bytes):
        raise MalformedEvent("unprotected header must be a map and tag a byte string")
    if protected == PROTECTED_HMAC256:
        headers = _PROTECTED_HMAC256_MAP  # what every device sends: decoded once
    else:
        headers = _loads(protected, "protected header") if protected else {}
    # An integer 5 only: a CBOR float 5.0 compares equal to 5 in Python (RFC 9052: an
    # algorithm is an int or a text string).
    alg = headers.get(_HDR_ALG) if _is_map(headers) else None
    if type(alg) is not int or alg != _ALG_HMAC_256_256:
        raise MalformedEvent("algorithm must be HMAC 256/256 (5)")
    # COSE lets the kid sit in either bucket, but never in both (RFC 9052 §3).
    if _HDR_KID in unprotected and _HDR_KID in headers:
        raise MalformedEvent("kid in both the protected and the unprotected header")
    kid = unprotected.get(_HDR_KID, headers.get(_HDR_KID))
    if not isinstance(kid, bytes) or len(kid) != DEVICE_ID_BYTES:
        raise MalformedEvent("kid must be the 8-byte device id")
    if len(tag) != TAG_BYTES:
        raise MalformedEvent("tag must be 32 bytes")
    return SignedEvent(kid=kid, protected=protected, payload=payload, tag=tag)


def _is_map(value) -> bool:
    # A decoded map is a dict; the ABC's isinstance is several times dearer.
    return type(value) is dict or isinstance(value, Mapping)


def _uint(fields: dict, key: EventKey, required: bool) -> int | None:
    value = fields.get(key)  # an IntEnum hashes and compares as its int
    if type(value) is int and value >= 0:
        return value  # nearly every field: no further checks
    if value is None:
        if required:
            raise MalformedEvent(f"event lacks {key.name.lower()}")
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise MalformedEvent(f"{key.name.lower()} must be an unsigned integer")
    return value


def decode_event(payload: bytes) -> WireEvent:
    """Decode an authenticated event map. Raises MalformedEvent with a reason."""
    fields = _loads(payload, "event payload")
    if not _is_map(fields):
        raise MalformedEvent("event payload must be a map")
    kind_value = _uint(fields, EventKey.KIND, True)
    try:
        kind = Kind(kind_value)
    except ValueError as err:
        raise MalformedEvent(f"unknown event kind {kind_value}") from err
    fw = fields.get(int(EventKey.FW))
    if fw is not None and not isinstance(fw, str):
        raise MalformedEvent("fw must be a text string")
    rssi = fields.get(int(EventKey.RSSI))
    if rssi is not None and (isinstance(rssi, bool) or not isinstance(rssi, int)
                             or not -200 <= rssi <= 0):
        raise MalformedEvent("rssi must be an integer from -200 to 0 (dBm)")
    event = WireEvent(
        seq=_uint(fields, EventKey.SEQ, True),
        kind=kind,
        slot=_uint(fields, EventKey.SLOT, True),
        qty=_uint(fields, EventKey.QTY, False),
        remaining=_uint(fields, EventKey.REMAINING, kind is Kind.LEVEL),
        battery_mv=_uint(fields, EventKey.BATTERY_MV, False),
        fw=fw,
        dropped=_uint(fields, EventKey.DROPPED, False),
        rssi=rssi,
        queued=_uint(fields, EventKey.QUEUED, False),
        wakes=_uint(fields, EventKey.WAKES, False),
        ota=_uint(fields, EventKey.OTA, False),
        release=_uint(fields, EventKey.RELEASE, False),
    )
    if event.seq == 0:
        raise MalformedEvent("seq starts at 1")
    return event


def event_seq(payload: bytes) -> int | None:
    """The sequence number of an event map that does not decode as a whole (an unknown
    kind from a newer device, a missing field), if it has a usable one."""
    try:
        fields = cbor2.loads(payload)
        seq = fields.get(int(EventKey.SEQ)) if isinstance(fields, Mapping) else None
    except Exception:  # cbor2 raises several types for bad input
        return None
    return seq if type(seq) is int and seq >= 1 else None


def decode_answer(key: bytes, request_tag: bytes, data: bytes) -> Answer:
    """Verify and decode an answer (the device's side; used by tests and the bench).
    Anything that is not a well-formed answer MAC'd under `key` raises MalformedEvent."""
    obj = _loads(data, "answer")
    if (not isinstance(obj, cbor2.CBORTag) or obj.tag != _COSE_MAC0_TAG
            or not isinstance(obj.value, (list, tuple)) or len(obj.value) != 4):
        raise MalformedEvent("answer is not a tagged COSE_Mac0")
    protected, _unprotected, payload, tag = obj.value
    if not all(isinstance(part, bytes) for part in (protected, payload, tag)):
        raise MalformedEvent("answer is not a tagged COSE_Mac0")
    expected = _hmac(key, _mac_structure(protected, request_tag, payload))
    if not hmac.compare_digest(expected, tag):
        raise MalformedEvent("answer MAC does not verify")
    fields = _loads(payload, "answer payload")
    if not isinstance(fields, dict):
        raise MalformedEvent("answer fields are missing or mistyped: not a map")
    try:
        return Answer(
            seq=fields[AnswerKey.SEQ],
            result=Result(fields[AnswerKey.RESULT]),
            order=fields.get(AnswerKey.ORDER),
            state=fields.get(AnswerKey.STATE),
            last_seq=fields.get(AnswerKey.LAST_SEQ),
            blocked=fields.get(AnswerKey.BLOCKED),
            update=fields.get(AnswerKey.UPDATE),
        )
    except (TypeError, ValueError, KeyError, AttributeError) as err:
        raise MalformedEvent("answer fields are missing or mistyped") from err
