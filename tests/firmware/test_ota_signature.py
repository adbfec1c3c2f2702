"""The firmware's release checks on the MicroPython unix port, against CPython's
`cryptography` and cbor2: Ed25519 (RFC 8032 vectors and fresh signatures), the pure
SHA-512, and the manifest envelope `backend.fleet.releases` signs."""

from __future__ import annotations

import hashlib
import json
import secrets

import cbor2
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from backend.fleet import releases
from devtools.mpy import run_snippet

RFC8032 = [  # section 7.1, tests 1-3: (public key, message, signature)
    ("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a", "",
     "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39"
     "701cf9b46bd25bf5f0595bbe24655141438e7a100b"),
    ("3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c", "72",
     "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f36"
     "13d0f11d8c387b2eaeb4302aeeb00d291612bb0c00"),
    ("fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025", "af82",
     "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290ae67f7"
     "60984dc6594a7c15e9716ed28dc027beceea1ec40a"),
]

SCRIPT = """
import binascii, json, sys, time
from replenish import ota, ota_ed25519
ux = binascii.unhexlify
doc = json.load(open(sys.argv[1]))
out = {"verify": [], "sha512": []}
t0 = time.ticks_ms()
for pub, msg, sig in doc["ed25519"]:
    out["verify"].append(ota_ed25519.verify(ux(pub), ux(msg), ux(sig)))
out["ms_per_verify"] = time.ticks_diff(time.ticks_ms(), t0) / len(doc["ed25519"])
for data in doc["sha512"]:
    out["sha512"].append(binascii.hexlify(ota_ed25519.sha512(ux(data))).decode())
out["manifests"] = []
for envelope, pub in doc["manifests"]:
    try:
        m = ota.parse_manifest(ux(envelope), ux(pub))
        out["manifests"].append([m.model, m.version, m.build, [f[0] for f in m.files]])
    except ota.Refused as err:
        out["manifests"].append(str(err))
print(json.dumps(out))
"""


def _cases():
    cases = [(pub, msg, sig, True) for pub, msg, sig in RFC8032]
    for n in range(8):
        key = Ed25519PrivateKey.generate()
        pub = releases.public_key_hex(key)
        msg = secrets.token_bytes(n * 13)
        sig = key.sign(msg)
        cases.append((pub, msg.hex(), sig.hex(), True))
        cases.append((pub, (msg + b"x").hex(), sig.hex(), False))  # other message
        bad = bytearray(sig)
        bad[n] ^= 0x40
        cases.append((pub, msg.hex(), bytes(bad).hex(), False))  # flipped bit in R or S
        other = releases.public_key_hex(Ed25519PrivateKey.generate())
        cases.append((other, msg.hex(), sig.hex(), False))  # another key
    # S >= group order (malleability): refused
    pub, msg, sig = RFC8032[0]
    s = int.from_bytes(bytes.fromhex(sig)[32:], "little") + 2**252 + \
        27742317777372353535851937790883648493
    cases.append((pub, msg, sig[:64] + s.to_bytes(32, "little").hex(), False))
    return cases


def test_firmware_release_checks_match_cpython(tmp_path):
    cases = _cases()
    key = Ed25519PrivateKey.generate()
    files = {"replenish/a.mpy": b"A" * 3000, "hw/b.mpy": b"B"}
    manifest = releases.make_manifest("button", "0.2.0", 2, files)
    genuine = releases.sign_manifest(key, manifest)
    forged = releases.sign_manifest(Ed25519PrivateKey.generate(), manifest)
    tampered = releases.make_manifest("button", "0.2.0", 2, {**files, "hw/b.mpy": b"C"})
    flipped = genuine[:-1] + bytes([genuine[-1] ^ 0x01])  # one bit of the signature
    pub = releases.public_key_hex(key)
    sha_inputs = [secrets.token_bytes(n) for n in (0, 1, 55, 111, 112, 127, 128, 129, 300)]
    doc = {"ed25519": [c[:3] for c in cases], "sha512": [d.hex() for d in sha_inputs],
           "manifests": [[genuine.hex(), pub], [forged.hex(), pub],
                         [cbor2.dumps([tampered, cbor2.loads(genuine)[1]])
                          .hex(), pub], [flipped.hex(), pub], ["a0", pub]]}
    path = tmp_path / "cases.json"
    path.write_text(json.dumps(doc))
    done = run_snippet(SCRIPT, tmp_path, path)
    out = json.loads(done.stdout)
    assert out["verify"] == [c[3] for c in cases]
    assert out["sha512"] == [hashlib.sha512(d).hexdigest() for d in sha_inputs]
    assert out["manifests"] == [
        ["button", "0.2.0", 2, ["hw/b.mpy", "replenish/a.mpy"]],
        "manifest signature does not verify",
        "manifest signature does not verify",
        "manifest signature does not verify",
        "manifest envelope must be [manifest, signature]",
    ]
    print(f"Ed25519 verify on the unix port: {out['ms_per_verify']:.0f} ms")
