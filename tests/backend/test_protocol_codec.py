"""The backend's protocol codec field by field (docs/protocol.md): every limit on each
side, every refusal with its reason, the answer's checks. Pure functions, no server:
the fast selection `make mutate` runs for backend/protocol.py (with test_vectors.py)."""

from __future__ import annotations

import dataclasses
import hashlib
import hmac

import cbor2
import pytest

from backend import protocol
from backend.errors import MalformedEvent
from backend.protocol import Answer, Kind, Result, WireEvent

KEY = bytes(range(32))
KID = bytes.fromhex("0011223344556677")
TAG = bytes(range(100, 132))
ALG = {1: 5}


def envelope(protected=None, unprotected=None, payload=b"\xa0", tag=bytes(32), tagged=True,
             parts=None):
    """A COSE_Mac0 built by hand (not by the codec under test), field by field."""
    protected = cbor2.dumps(ALG) if protected is None else protected
    unprotected = {4: KID} if unprotected is None else unprotected
    value = [protected, unprotected, payload, tag] if parts is None else parts
    return cbor2.dumps(cbor2.CBORTag(17, value) if tagged else value)


def event_map(**fields) -> bytes:
    base = {1: 7, 2: 1, 3: 0}
    base.update({int(k): v for k, v in fields.items()})
    return cbor2.dumps({k: v for k, v in base.items() if v is not None})


# --- the envelope -------------------------------------------------------------------

def test_the_envelope_parts_come_back_as_sent_tagged_or_not():
    payload = event_map()
    for tagged in (True, False):
        signed = protocol.parse_signed_event(envelope(payload=payload, tag=TAG, tagged=tagged))
        assert (signed.kid, signed.protected, signed.payload, signed.tag) == (
            KID, cbor2.dumps(ALG), payload, TAG)


def test_the_kid_may_sit_in_the_protected_header():
    protected = cbor2.dumps({1: 5, 4: KID})
    assert protocol.parse_signed_event(envelope(protected=protected, unprotected={})).kid == KID


@pytest.mark.parametrize("data, reason", [
    (envelope(tag=bytes(32))[:-1], "request is not valid CBOR"),
    (cbor2.dumps(cbor2.CBORTag(18, [cbor2.dumps(ALG), {4: KID}, b"", bytes(32)])),
     "wrong CBOR tag"),
    (cbor2.dumps(cbor2.CBORTag(16, [cbor2.dumps(ALG), {4: KID}, b"", bytes(32)])),
     "wrong CBOR tag"),
    (envelope(parts=[cbor2.dumps(ALG), {4: KID}, b""]), "4-element array"),
    (envelope(parts=[cbor2.dumps(ALG), {4: KID}, b"", bytes(32), b""]), "4-element array"),
    (cbor2.dumps({1: 2, 3: 4, 5: 6, 7: 8}), "4-element array"),
    (envelope(protected="text"), "must be byte strings"),
    (envelope(payload="text"), "must be byte strings"),
    (envelope(unprotected=[4, KID]), "unprotected header must be a map"),
    (envelope(tag="text"), "unprotected header must be a map and tag"),
    (envelope(protected=b""), "algorithm must be HMAC 256/256"),
    (envelope(protected=cbor2.dumps([1, 5])), "algorithm must be HMAC 256/256"),
    (envelope(protected=cbor2.dumps({1: 4})), "algorithm must be HMAC 256/256"),
    (envelope(protected=cbor2.dumps({1: 6})), "algorithm must be HMAC 256/256"),
    (envelope(protected=cbor2.dumps({1: 5.0})), "algorithm must be HMAC 256/256"),
    (envelope(protected=b"\xa1"), "protected header is not valid CBOR"),
    (envelope(protected=cbor2.dumps({1: 5, 4: KID})), "kid in both"),
    (envelope(unprotected={}), "8-byte device id"),
    (envelope(unprotected={4: KID.hex()}), "8-byte device id"),
    (envelope(unprotected={4: KID[:7]}), "8-byte device id"),
    (envelope(unprotected={4: KID + b"\0"}), "8-byte device id"),
    (envelope(unprotected={3: KID}), "8-byte device id"),
    (envelope(tag=bytes(31)), "tag must be 32 bytes"),
    (envelope(tag=bytes(33)), "tag must be 32 bytes"),
])
def test_every_envelope_fault_is_refused_with_its_reason(data, reason):
    with pytest.raises(MalformedEvent, match=reason):
        protocol.parse_signed_event(data)


def test_the_mac_covers_the_protected_header_and_the_payload():
    data = protocol.encode_event(KEY, KID, WireEvent(seq=7, kind=Kind.PRESS, slot=0))
    signed = protocol.parse_signed_event(data)
    assert signed.verify(KEY)
    assert not signed.verify(bytes(32))
    for changed in (protocol.SignedEvent(KID, cbor2.dumps({1: 5, 2: 0}), signed.payload,
                                         signed.tag),
                    protocol.SignedEvent(KID, signed.protected, event_map(**{"1": 8}), signed.tag)):
        assert not changed.verify(KEY)


def test_the_encoded_envelope_is_the_documented_one():
    event = WireEvent(seq=7, kind=Kind.PRESS, slot=0)
    obj = cbor2.loads(protocol.encode_event(KEY, KID, event))
    assert obj.tag == 17
    protected, unprotected, payload, tag = obj.value
    assert (cbor2.loads(protected), unprotected, cbor2.loads(payload)) == (
        {1: 5}, {4: KID}, {1: 7, 2: 1, 3: 0})
    assert len(tag) == 32
    assert protocol.PROTECTED_HMAC256 == protected
    signed = protocol.parse_signed_event(protocol.encode_event(KEY, KID, event))
    with pytest.raises(dataclasses.FrozenInstanceError):  # parsed parts stay as received
        signed.tag = bytes(32)
    assert (protocol.CONTENT_FORMAT_COSE_MAC0, protocol.EVENT_PATH,
            protocol.MAX_PAYLOAD_BYTES, protocol.DEVICE_ID_BYTES, protocol.KEY_BYTES,
            protocol.TAG_BYTES) == (17, "ev", 512, 8, 32, 32)  # docs/protocol.md


# --- the event map ------------------------------------------------------------------

def test_every_event_field_round_trips_under_its_key():
    event = WireEvent(seq=2**40, kind=Kind.STATUS, slot=3, qty=4, remaining=5,
                      battery_mv=6, fw="9.9.9", dropped=8, rssi=-9, queued=10, wakes=11,
                      ota=12, release=13)
    expected = {1: 2**40, 2: 3, 3: 3, 4: 4, 5: 5, 6: 6, 7: "9.9.9", 8: 8, 9: -9,
                10: 10, 11: 11, 12: 12, 13: 13}
    assert event.to_map() == expected
    decoded = protocol.decode_event(cbor2.dumps(expected))
    assert decoded == event and type(decoded.kind) is Kind
    with pytest.raises(dataclasses.FrozenInstanceError):
        decoded.seq = 2
    assert WireEvent(seq=1, kind=Kind.BOOT, slot=0).to_map() == {1: 1, 2: 0, 3: 0}


@pytest.mark.parametrize("kind", list(Kind))
def test_each_kind_decodes(kind):
    assert protocol.decode_event(event_map(**{"2": int(kind), "5": 0})).kind is kind


def test_the_smallest_values_are_accepted():
    event = protocol.decode_event(cbor2.dumps(
        {1: 1, 2: 2, 3: 0, 4: 0, 5: 0, 6: 0, 8: 0, 9: 0, 10: 0, 11: 0, 12: 0, 13: 0}))
    assert (event.seq, event.slot, event.remaining, event.rssi, event.release) == (1, 0, 0, 0, 0)
    assert protocol.decode_event(event_map(**{"9": -200})).rssi == -200


@pytest.mark.parametrize("key", [1, 3, 4, 5, 6, 8, 10, 11, 12, 13])
@pytest.mark.parametrize("value", [-1, True, False, "1", 1.0, b"\x01"])
def test_unsigned_fields_refuse_anything_else(key, value):
    name = protocol.EventKey(key).name.lower()
    with pytest.raises(MalformedEvent, match=f"^{name} must be an unsigned integer$"):
        protocol.decode_event(event_map(**{"2": 2, "5": 1, str(key): value}))


@pytest.mark.parametrize("value", [True, False, "1", -1.0])
def test_the_kind_must_be_an_unsigned_integer(value):
    with pytest.raises(MalformedEvent, match="^kind must be an unsigned integer$"):
        protocol.decode_event(event_map(**{"2": value}))


@pytest.mark.parametrize("key", [1, 2, 3])
def test_seq_kind_and_slot_are_required(key):
    name = protocol.EventKey(key).name.lower()
    with pytest.raises(MalformedEvent, match=f"^event lacks {name}$"):
        protocol.decode_event(event_map(**{str(key): None}))


def test_remaining_is_required_for_a_level_report_only():
    with pytest.raises(MalformedEvent, match="^event lacks remaining$"):
        protocol.decode_event(event_map(**{"2": 2}))
    for kind in (0, 1, 3):
        assert protocol.decode_event(event_map(**{"2": kind})).remaining is None


@pytest.mark.parametrize("kind", [4, 9, 255])
def test_an_unknown_kind_is_named(kind):
    with pytest.raises(MalformedEvent, match=f"^unknown event kind {kind}$"):
        protocol.decode_event(event_map(**{"2": kind}))


@pytest.mark.parametrize("fw", [b"1.0", 1, ["1"]])
def test_fw_must_be_text(fw):
    with pytest.raises(MalformedEvent, match="^fw must be a text string$"):
        protocol.decode_event(event_map(**{"7": fw}))


@pytest.mark.parametrize("rssi", [-201, 1, True, False, "-50", -50.0])
def test_rssi_is_an_integer_from_minus_200_to_0(rssi):
    with pytest.raises(MalformedEvent, match=r"^rssi must be an integer from -200 to 0 \(dBm\)$"):
        protocol.decode_event(event_map(**{"9": rssi}))


def test_seq_zero_is_refused():
    with pytest.raises(MalformedEvent, match="^seq starts at 1$"):
        protocol.decode_event(event_map(**{"1": 0}))


@pytest.mark.parametrize("payload, reason", [
    (cbor2.dumps([1, 2]), "^event payload must be a map$"),
    (cbor2.dumps("map"), "^event payload must be a map$"),
    (b"\xa1\x01", "^event payload is not valid CBOR$"),
])
def test_an_event_payload_that_is_no_map_is_refused(payload, reason):
    with pytest.raises(MalformedEvent, match=reason):
        protocol.decode_event(payload)


@pytest.mark.parametrize("payload, seq", [
    (cbor2.dumps({1: 9, 2: 99}), 9),
    (cbor2.dumps({1: 1}), 1),
    (cbor2.dumps({1: 0, 2: 1}), None),
    (cbor2.dumps({1: -3}), None),
    (cbor2.dumps({1: True}), None),
    (cbor2.dumps({1: 2.0}), None),
    (cbor2.dumps({2: 1}), None),
    (cbor2.dumps([9]), None),
    (b"\xa1\x01", None),
])
def test_event_seq_of_a_map_that_does_not_decode(payload, seq):
    assert protocol.event_seq(payload) == seq


# --- the answer ---------------------------------------------------------------------

def test_every_answer_field_round_trips_bound_to_the_request():
    answer = Answer(seq=9, result=Result.CREATED, order=42, state="pending", last_seq=8,
                    blocked=2, update=7)
    assert answer.to_map() == {1: 9, 2: 65, 3: 42, 4: "pending", 5: 8, 6: 2, 7: 7}
    assert Answer(seq=1, result=Result.CHANGED).to_map() == {1: 1, 2: 68}
    data = protocol.encode_answer(KEY, TAG, answer)
    obj = cbor2.loads(data)
    assert obj.tag == 17 and obj.value[1] == {} and cbor2.loads(obj.value[0]) == {1: 5}
    decoded = protocol.decode_answer(KEY, TAG, data)
    assert decoded == answer and type(decoded.result) is Result
    with pytest.raises(dataclasses.FrozenInstanceError):
        decoded.seq = 10
    for key, tag in ((bytes(32), TAG), (KEY, bytes(32)), (KEY, b"")):
        with pytest.raises(MalformedEvent, match="^answer MAC does not verify$"):
            protocol.decode_answer(key, tag, data)


# The answer and the MAC_structure are built by hand (backend/protocol.py): each must be
# what cbor2's canonical encoder writes, at every boundary of CBOR's head lengths.
_HEAD_EDGES = [0, 1, 23, 24, 255, 256, 65535, 65536, 2**32 - 1, 2**32, 2**64 - 1]


def _answer_by_cbor2(key: bytes, request_tag: bytes, answer: Answer) -> bytes:
    payload = cbor2.dumps(answer.to_map(), canonical=True)
    structure = cbor2.dumps(["MAC0", cbor2.dumps(ALG), request_tag, payload], canonical=True)
    tag = hmac.new(key, structure, hashlib.sha256).digest()
    return cbor2.dumps(cbor2.CBORTag(17, [cbor2.dumps(ALG), {}, payload, tag]), canonical=True)


@pytest.mark.parametrize("n", _HEAD_EDGES + [2**64, 2**70, -1, -24, -25, -(2**64) - 1])
def test_every_answer_integer_is_encoded_as_cbor2_would(n):
    # Negative ones never occur in an answer, but must not take the unsigned fast path.
    answers = [Answer(seq=n, result=Result.CREATED, order=n, state="pending"),
               Answer(seq=1, result=Result.CONFLICT, last_seq=n),
               Answer(seq=n, result=Result.CHANGED, blocked=n, update=n)]
    for answer in answers:
        assert protocol.encode_answer(KEY, TAG, answer) == _answer_by_cbor2(KEY, TAG, answer)


@pytest.mark.parametrize("major", range(7))
@pytest.mark.parametrize("n", _HEAD_EDGES)
def test_every_item_head_is_the_shortest_form_of_its_major_type(major, n):
    # RFC 8949 3: the major type in the top 3 bits, then the count in the low 5 bits
    # (0..23) or after them in 1, 2, 4 or 8 bytes (24..27). Here for every major type the
    # encoder uses, up to 8-byte counts (a byte string that long never reaches an answer).
    width = next(w for w, limit in ((0, 24), (1, 2**8), (2, 2**16), (4, 2**32), (8, 2**64))
                 if n < limit)
    extra = {0: n, 1: 24, 2: 25, 4: 26, 8: 27}[width]
    expected = bytes([major * 32 + extra]) + (n.to_bytes(width, "big") if width else b"")
    assert protocol._head(major, n) == expected


@pytest.mark.parametrize("length", [0, 1, 23, 24, 255, 256, 65535, 65536])
def test_answer_texts_and_request_tags_of_every_length_are_encoded_as_cbor2_would(length):
    text = "é" * (length // 2) + "x" * (length % 2)  # two bytes each in UTF-8
    answer = Answer(seq=5, result=Result.VALID, order=3, state=text)
    request_tag = bytes(range(256)) * (length // 256) + bytes(length % 256)
    assert protocol.encode_answer(KEY, request_tag, answer) == _answer_by_cbor2(
        KEY, request_tag, answer)


@pytest.mark.parametrize("length", [0, 23, 24, 255, 256, 65536])
def test_the_mac_structure_of_any_length_is_the_canonical_one(length):
    protected, payload = bytes(length), bytes(range(256)) * (length // 256)
    for aad in (b"", TAG):
        assert protocol._mac_structure(protected, aad, payload) == cbor2.dumps(
            ["MAC0", protected, aad, payload], canonical=True)


def _mac_answer(payload: bytes, protected: bytes = cbor2.dumps(ALG)) -> list:
    structure = cbor2.dumps(["MAC0", protected, TAG, payload], canonical=True)
    return [protected, {}, payload, hmac.new(KEY, structure, hashlib.sha256).digest()]


@pytest.mark.parametrize("data, reason", [
    (b"\xd1", "^answer is not valid CBOR$"),
    (cbor2.dumps(_mac_answer(cbor2.dumps({1: 1, 2: 68}))), "not a tagged COSE_Mac0"),
    (cbor2.dumps(cbor2.CBORTag(18, _mac_answer(cbor2.dumps({1: 1, 2: 68})))),
     "not a tagged COSE_Mac0"),
    (cbor2.dumps(cbor2.CBORTag(16, _mac_answer(cbor2.dumps({1: 1, 2: 68})))),
     "not a tagged COSE_Mac0"),
    (cbor2.dumps(cbor2.CBORTag(17, {1: 2})), "not a tagged COSE_Mac0"),
    (cbor2.dumps(cbor2.CBORTag(17, _mac_answer(cbor2.dumps({1: 1}))[:3])),
     "not a tagged COSE_Mac0"),
    (cbor2.dumps(cbor2.CBORTag(17, _mac_answer(cbor2.dumps({1: 1})) + [b""])),
     "not a tagged COSE_Mac0"),
    (cbor2.dumps(cbor2.CBORTag(17, ["p", {}, b"", bytes(32)])), "not a tagged COSE_Mac0"),
    (cbor2.dumps(cbor2.CBORTag(17, [b"", {}, "p", bytes(32)])), "not a tagged COSE_Mac0"),
    (cbor2.dumps(cbor2.CBORTag(17, [b"", {}, b"", "t"])), "not a tagged COSE_Mac0"),
    (cbor2.dumps(cbor2.CBORTag(17, _mac_answer(b"\xa1\x01"))),
     "^answer payload is not valid CBOR$"),
    (cbor2.dumps(cbor2.CBORTag(17, _mac_answer(cbor2.dumps({2: 68})))), "missing or mistyped"),
    (cbor2.dumps(cbor2.CBORTag(17, _mac_answer(cbor2.dumps({1: 1})))), "missing or mistyped"),
    (cbor2.dumps(cbor2.CBORTag(17, _mac_answer(cbor2.dumps({1: 1, 2: 66})))),
     "missing or mistyped"),
    (cbor2.dumps(cbor2.CBORTag(17, _mac_answer(cbor2.dumps({1: 1, 2: "x"})))),
     "missing or mistyped"),
    (cbor2.dumps(cbor2.CBORTag(17, _mac_answer(cbor2.dumps(5)))), "missing or mistyped"),
    # An array where the fields' map belongs (it raised IndexError before)
    (cbor2.dumps(cbor2.CBORTag(17, _mac_answer(cbor2.dumps([1])))), "missing or mistyped"),
    (cbor2.dumps(cbor2.CBORTag(17, _mac_answer(cbor2.dumps([])))), "missing or mistyped"),
])
def test_every_answer_fault_is_refused_with_its_reason(data, reason):
    with pytest.raises(MalformedEvent, match=reason):
        protocol.decode_answer(KEY, TAG, data)


def test_an_answer_under_any_protected_header_verifies_over_what_was_sent():
    answer = protocol.decode_answer(KEY, TAG, cbor2.dumps(cbor2.CBORTag(
        17, _mac_answer(cbor2.dumps({1: 3, 2: 137, 5: 2}), protected=b""))))
    assert answer == Answer(seq=3, result=Result.CONFLICT, last_seq=2)


# --- the result codes ---------------------------------------------------------------

def test_result_codes_are_coap_codes():
    assert {r.name: (int(r), r.dotted) for r in Result} == {
        "CREATED": (65, "2.01"), "VALID": (67, "2.03"), "CHANGED": (68, "2.04"),
        "BAD_REQUEST": (128, "4.00"), "UNAUTHORIZED": (129, "4.01"),
        "FORBIDDEN": (131, "4.03"), "CONFLICT": (137, "4.09"), "TOO_LARGE": (141, "4.13"),
        "UNSUPPORTED_FORMAT": (143, "4.15"), "UNAVAILABLE": (163, "5.03")}
    assert [int(r) for r in protocol.OtaReport] == [1, 2, 3]


@pytest.mark.parametrize("length", range(101))
def test_the_mac_is_hmac_sha256_for_a_key_of_any_length(length):
    # Device keys are 32 bytes; the codec's own HMAC must still be RFC 2104's for keys
    # shorter than, as long as and longer than SHA-256's 64-byte block.
    key = bytes((7 * i + length) & 0xFF for i in range(length))
    for data in (b"", b"x", bytes(range(256)) * 3):
        assert protocol._hmac(key, data) == hmac.digest(key, data, "sha256")
