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
