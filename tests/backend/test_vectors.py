"""The backend codec against docs/vectors/protocol-v1.json, cross-checked with pycose."""

import json
import subprocess
import sys
from pathlib import Path

import cbor2
import pytest

from backend import protocol
from backend.errors import MalformedEvent
from backend.protocol import Answer, Event, Kind, Result
from tests.pycose_ref import decode_mac0

ROOT = Path(__file__).resolve().parents[2]
VECTORS = json.loads((ROOT / "docs/vectors/protocol-v1.json").read_text())


def test_vector_file_is_what_the_generator_makes():
    fresh = subprocess.run([sys.executable, str(ROOT / "devtools/make_vectors.py")],
                           capture_output=True, text=True, check=True).stdout
    assert json.loads(fresh) == VECTORS


@pytest.mark.parametrize("vector", VECTORS["events"], ids=lambda v: v["name"])
def test_event_vectors_encode_and_decode(vector):
    key, kid = bytes.fromhex(vector["key"]), bytes.fromhex(vector["device_id"])
    fields = vector["fields"]
    event = Event(**{**fields, "kind": Kind(fields["kind"])})
    assert protocol.encode_event(key, kid, event).hex() == vector["cose_hex"]
    signed = protocol.parse_signed_event(bytes.fromhex(vector["cose_hex"]))
    assert signed.kid == kid and signed.verify(key)
    assert signed.tag.hex() == vector["tag_hex"]
    assert protocol.decode_event(signed.payload) == event


@pytest.mark.parametrize("vector", VECTORS["events"], ids=lambda v: v["name"])
def test_event_vectors_verify_with_pycose(vector):
    message = decode_mac0(bytes.fromhex(vector["cose_hex"]), bytes.fromhex(vector["key"]))
    assert message.verify_tag()
    assert message.payload.hex() == vector["payload_hex"]


@pytest.mark.parametrize("vector", VECTORS["answers"], ids=lambda v: v["name"])
def test_answer_vectors_are_bound_to_the_request(vector):
    key, tag = bytes.fromhex(vector["key"]), bytes.fromhex(vector["request_tag_hex"])
    fields = vector["fields"]
    answer = Answer(**{**fields, "result": Result(fields["result"])})
    assert protocol.encode_answer(key, tag, answer).hex() == vector["cose_hex"]
    assert protocol.decode_answer(key, tag, bytes.fromhex(vector["cose_hex"])) == answer
    other_request = bytes(32)
    with pytest.raises(MalformedEvent):
        protocol.decode_answer(key, other_request, bytes.fromhex(vector["cose_hex"]))


@pytest.mark.parametrize("vector", VECTORS["invalid"], ids=lambda v: v["name"])
def test_invalid_vectors_are_refused(vector):
    data, key = bytes.fromhex(vector["cose_hex"]), bytes.fromhex(vector["key"])
    if vector["error"] == "malformed":
        with pytest.raises(MalformedEvent):
            protocol.parse_signed_event(data)
    else:
        assert not protocol.parse_signed_event(data).verify(key)


@pytest.mark.parametrize("vector", VECTORS["cbor"], ids=lambda v: v["hex"][:24])
def test_cbor_vectors_match_cbor2(vector):
    # The generator used cbor2; this guards the JSON notation the firmware test reads.
    def from_json(value):
        if isinstance(value, dict) and "$bytes" in value:
            return bytes.fromhex(value["$bytes"])
        if isinstance(value, dict) and "$map" in value:
            return {from_json(k): from_json(v) for k, v in value["$map"]}
        if isinstance(value, dict) and "$tag" in value:
            return cbor2.CBORTag(value["$tag"], from_json(value["value"]))
        if isinstance(value, list):
            return [from_json(v) for v in value]
        return value

    assert cbor2.dumps(from_json(vector["value"]), canonical=True).hex() == vector["hex"]


@pytest.mark.parametrize("payload, reason", [
    (cbor2.dumps({1: 1, 3: 0}), "lacks kind"),
    (cbor2.dumps({1: 1, 2: 9, 3: 0}), "unknown event kind"),
    (cbor2.dumps({1: -1, 2: 1, 3: 0}), "unsigned"),
    (cbor2.dumps({1: 0, 2: 1, 3: 0}), "starts at 1"),
    (cbor2.dumps({1: 1, 2: 2, 3: 0}), "lacks remaining"),
    (cbor2.dumps([1, 2, 3]), "must be a map"),
    (b"\xa1\x01", "not valid CBOR"),
])
def test_bad_event_maps_say_what_is_wrong(payload, reason):
    with pytest.raises(MalformedEvent, match=reason):
        protocol.decode_event(payload)
