"""Cross-check with pycose, an independent COSE implementation, on CPython."""

from pycose.algorithms import HMAC256
from pycose.headers import KID, Algorithm
from pycose.keys import SymmetricKey
from pycose.messages import Mac0Message

from devtools.mpy import run_snippet
from tests.pycose_ref import decode_mac0

KEY = bytes.fromhex("7f" * 16 + "c3" * 16)
KID_BYTES = bytes.fromhex("a1b2c3d4e5f60718")

SIGN = r"""
import binascii, sys
from replenish import cose, protocol
from replenish.hmac_sha256 import HmacSha256
mac = HmacSha256(binascii.unhexlify(sys.argv[1]))
payload = protocol.encode_event(int(sys.argv[3]), protocol.KIND_PRESS, 1, None, None, 3012)
data, tag = cose.create(mac, payload, binascii.unhexlify(sys.argv[2]))
print(binascii.hexlify(data).decode(), binascii.hexlify(tag).decode())
"""

VERIFY = r"""
import binascii, sys
from replenish import cose, protocol
from replenish.hmac_sha256 import HmacSha256
mac = HmacSha256(binascii.unhexlify(sys.argv[1]))
aad = binascii.unhexlify(sys.argv[3])
for hx in open(sys.argv[2]).read().split():
    try:
        a = protocol.decode_answer(cose.verify_answer(mac, binascii.unhexlify(hx), aad))
        print("OK", a.seq, a.result, a.order, a.state)
    except cose.CoseError as err:
        print("REFUSED", err.category)
"""


def cose_key():
    return SymmetricKey(k=KEY)


def test_firmware_event_verifies_with_pycose(tmp_path):
    out = run_snippet(SIGN, tmp_path, KEY.hex(), KID_BYTES.hex(), 70001).stdout.split()
    data, tag = bytes.fromhex(out[0]), bytes.fromhex(out[1])
    msg = decode_mac0(data, KEY)  # pycose, with cbor2 6 tuples thawed
    assert msg.verify_tag()
    assert msg.phdr[Algorithm] is HMAC256 and msg.uhdr[KID] == KID_BYTES
    assert msg.auth_tag == tag
    import cbor2
    assert cbor2.loads(msg.payload) == {1: 70001, 2: 1, 3: 1, 6: 3012}
    # and a wrong key fails under pycose too (the check above can fail)
    assert not decode_mac0(data, bytes(32)).verify_tag()


def test_pycose_answer_verifies_on_firmware(tmp_path):
    import cbor2
    request_tag = bytes(range(100, 132))
    payload = cbor2.dumps({1: 9, 2: 65, 3: 77, 4: "placed"})
    msg = Mac0Message(phdr={Algorithm: HMAC256}, uhdr={}, payload=payload,
                      external_aad=request_tag)
    msg.key = cose_key()
    good = msg.encode(tag=True)
    other_key = Mac0Message(phdr={Algorithm: HMAC256}, uhdr={}, payload=payload,
                            external_aad=request_tag)
    other_key.key = SymmetricKey(k=bytes(32))
    forged = other_key.encode(tag=True)
    other_aad = Mac0Message(phdr={Algorithm: HMAC256}, uhdr={}, payload=payload,
                            external_aad=b"")
    other_aad.key = cose_key()
    unbound = other_aad.encode(tag=True)
    answers = tmp_path / "answers.txt"  # a file: very long argv crashes this unix build
    answers.write_text("\n".join(m.hex() for m in (good, forged, unbound)))
    out = run_snippet(VERIFY, tmp_path, KEY.hex(), answers,
                      request_tag.hex()).stdout.splitlines()
    assert out == ["OK 9 65 77 placed", "REFUSED bad_mac", "REFUSED bad_mac"]
