"""The firmware codecs, run on the real MicroPython interpreter, match the protocol vectors."""

import json

from devtools.mpy import ROOT, VECTORS, run_script, run_snippet

SCRIPT = ROOT / "devtools" / "mpy_scripts" / "check_vectors.py"


def _vector_count():
    doc = json.loads(VECTORS.read_text())
    return sum(len(doc[k]) for k in ("hmac_sha256", "cbor", "events", "answers", "coap",
                                     "invalid"))


def test_all_vectors_on_micropython():
    result = run_script(SCRIPT, VECTORS)
    assert result.stdout.split() == ["PASS", str(_vector_count())]


def test_vector_checker_detects_a_wrong_vector(tmp_path):
    """The checker is not vacuous: one altered expected byte makes it fail."""
    doc = json.loads(VECTORS.read_text())
    doc["events"][0]["cose_hex"] = doc["events"][0]["cose_hex"][:-2] + "00"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(doc))
    result = run_script(SCRIPT, bad, check=False)
    assert result.returncode != 0
    assert "cose" in result.stdout + result.stderr


CBOR_GARBAGE = r"""
import binascii
from replenish import cbor, coap
bad = ["", "18", "1901", "5801", "62ff", "6180", "a1", "a101", "81", "d1",
       "9f01ff", "f93c00", "fb3ff0000000000000", "1c", "0000", "a20101010102",
       "8181818181818181818181818101", "c0" * 20 + "00", "7f", "a1810101",
       "5bffffffffffffffff", "9bffffffffffffffff"]
for h in bad:
    try:
        cbor.decode(binascii.unhexlify(h))
    except ValueError:
        pass
    else:
        raise AssertionError("accepted " + h)
coap_bad = ["", "440212", "4f021234", "8402123400", "44021234a1b2c3", "44021234a1b2c3d4ff",
            "44021234a1b2c3d4f0", "44021234a1b2c3d4d1", "44021234a1b2c3d4e1ff", "41001234aa"]
for h in coap_bad:
    try:
        coap.decode(binascii.unhexlify(h))
    except ValueError:
        pass
    else:
        raise AssertionError("coap accepted " + h)
# random garbage never raises anything but ValueError
import random
random.seed(7)
for i in range(3000):
    raw = bytes(random.getrandbits(8) for _ in range(random.getrandbits(5)))
    for fn in (cbor.decode, coap.decode):
        try:
            fn(raw)
        except ValueError:
            pass
# extended option delta/length forms round-trip
m = coap.Message(0, 1, 1, b"", [(11, b"x" * 20), (60, b"y" * 300), (2000, b"")], b"p")
raw = coap.encode(m)
m2 = coap.decode(raw)
assert m2.options == m.options and m2.payload == b"p", m2.options
print("OK")
"""


def test_decoders_refuse_garbage(tmp_path):
    result = run_snippet(CBOR_GARBAGE, tmp_path)
    assert result.stdout.strip() == "OK"


COSE_ENVELOPES = r"""
from replenish import cbor, cose
P, T = b"\xa1\x01\x05", bytes(32)
def env(*items, tag=17):
    return cbor.encode(cbor.Tag(tag, list(items)) if tag is not None else list(items))
cases = [
    ("untagged", env(P, {}, b"x", T, tag=None)),
    ("tag 16", env(P, {}, b"x", T, tag=16)),
    ("tag 18", env(P, {}, b"x", T, tag=18)),
    ("tag on a map", cbor.encode(cbor.Tag(17, {1: 2}))),
    ("3 items", env(P, {}, b"x")),
    ("5 items", env(P, {}, b"x", T, b"")),
    ("protected int", env(1, {}, b"x", T)),
    ("payload int", env(P, {}, 1, T)),
    ("unprotected list", env(P, [], b"x", T)),
    ("tag int", env(P, {}, b"x", 1)),
    ("protected not CBOR", env(b"\xff", {}, b"x", T)),
    ("protected a list", env(cbor.encode([1, 5]), {}, b"x", T)),
    ("alg 4", env(cbor.encode({1: 4}), {}, b"x", T)),
    ("alg 6", env(cbor.encode({1: 6}), {}, b"x", T)),
    ("no alg", env(b"", {}, b"x", T)),
    ("tag 31 bytes", env(P, {}, b"x", bytes(31))),
    ("tag 33 bytes", env(P, {}, b"x", bytes(33))),
]
for name, raw in cases:
    try:
        cose.parse(raw)
        print("ACCEPTED", name)
    except cose.Malformed as err:
        print("%s: %s" % (name, err))
print(len(cose.parse(env(P, {}, b"x", T))))
"""


def test_every_malformed_envelope_is_refused_with_its_reason(tmp_path):
    """Each envelope check of firmware/replenish/cose.py on its own (one thing wrong
    at a time, on both sides of each number), refused as Malformed with its reason."""
    lines = run_snippet(COSE_ENVELOPES, tmp_path).stdout.strip().splitlines()
    assert lines == [
        "untagged: not a tagged COSE_Mac0",
        "tag 16: not a tagged COSE_Mac0",
        "tag 18: not a tagged COSE_Mac0",
        "tag on a map: COSE_Mac0 must be a 4-element array",
        "3 items: COSE_Mac0 must be a 4-element array",
        "5 items: COSE_Mac0 must be a 4-element array",
        "protected int: protected header and payload must be byte strings",
        "payload int: protected header and payload must be byte strings",
        "unprotected list: unprotected header must be a map and tag a byte string",
        "tag int: unprotected header must be a map and tag a byte string",
        "protected not CBOR: protected header is not CBOR",
        "protected a list: algorithm must be HMAC 256/256 (5)",
        "alg 4: algorithm must be HMAC 256/256 (5)",
        "alg 6: algorithm must be HMAC 256/256 (5)",
        "no alg: algorithm must be HMAC 256/256 (5)",
        "tag 31 bytes: tag must be 32 bytes",
        "tag 33 bytes: tag must be 32 bytes",
        "4",
    ]


PROTOCOL_CONSTANTS = r"""
import json
from replenish import cbor, protocol as p
names = [n for n in dir(p) if n.isupper()]
print(json.dumps({n: getattr(p, n) for n in names if isinstance(getattr(p, n), (int, str))}))
print(json.dumps([p.dotted(c) for c in (65, 67, 68, 128, 129, 131, 137, 141, 143, 163, 0, 255)]))
def answer(fields):
    try:
        a = p.decode_answer(cbor.encode(fields))
        return [a.seq, a.result, a.order, a.state, a.last_seq, a.blocked, a.update]
    except ValueError as err:
        return str(err)
print(json.dumps([answer(f) for f in (
    {1: 0, 2: 68},                     # zero is an unsigned integer
    {1: 5, 2: 65, 3: 7, 4: "pending", 5: 4, 6: 1, 7: 9},
    {2: 68},                           # no seq
    {1: 5},                            # no result
    {1: 5, 2: 68, 3: -1},
    {1: 5, 2: 68, 5: True},
    {1: 5, 2: 68, 6: "1"},
    {1: 5, 2: 68, 4: 3},
    [1, 2],
)]))
"""


def test_firmware_constants_are_the_backends_and_answers_are_checked(tmp_path):
    """Every protocol constant of firmware/replenish/protocol.py equals the backend's
    (backend/protocol.py, the other implementation of docs/protocol.md), dotted() prints
    CoAP codes, and decode_answer checks each field on its own."""
    from backend import protocol as backend

    out = run_snippet(PROTOCOL_CONSTANTS, tmp_path).stdout.splitlines()
    firmware = json.loads(out[0])
    expected = {"EVENT_PATH": "ev", "CONTENT_FORMAT": backend.CONTENT_FORMAT_COSE_MAC0,
                "MAX_PAYLOAD_BYTES": backend.MAX_PAYLOAD_BYTES,
                "KEY_BYTES": backend.KEY_BYTES, "DEVICE_ID_BYTES": backend.DEVICE_ID_BYTES}
    expected |= {f"EV_{k.name}": int(k) for k in backend.EventKey}
    expected |= {f"OTA_{k.name}": int(k) for k in backend.OtaReport}
    expected |= {f"KIND_{k.name}": int(k) for k in backend.Kind}
    expected |= {f"ANS_{k.name}": int(k) for k in backend.AnswerKey}
    expected |= {k.name: int(k) for k in backend.Result}
    assert {name: firmware.get(name) for name in expected} == expected
    assert json.loads(out[1]) == ["2.01", "2.03", "2.04", "4.00", "4.01", "4.03", "4.09",
                                  "4.13", "4.15", "5.03", "0.00", "7.31"]
    assert json.loads(out[2]) == [
        [0, 68, None, None, None, None, None],
        [5, 65, 7, "pending", 4, 1, 9],
        "answer key 1 must be an unsigned integer",
        "answer key 2 must be an unsigned integer",
        "answer key 3 must be an unsigned integer",
        "answer key 5 must be an unsigned integer",
        "answer key 6 must be an unsigned integer",
        "state must be text",
        "answer must be a map",
    ]
