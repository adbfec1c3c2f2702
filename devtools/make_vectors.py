"""Generate docs/vectors/protocol-v1.json from independent CPython libraries.

CBOR comes from cbor2, HMAC from the standard library, CoAP framing from aiocoap;
tests/backend/test_vectors.py cross-checks the COSE vectors with pycose. The firmware's own
MicroPython codecs are then held to these bytes (tests/firmware/test_vectors.py).

    python devtools/make_vectors.py > docs/vectors/protocol-v1.json
"""

import json
import sys
from collections.abc import Mapping
from pathlib import Path

import cbor2
from aiocoap import ACK, CON, Message
from aiocoap.numbers.codes import Code

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from backend import protocol  # noqa: E402
from backend.protocol import Answer, Event, Kind, Result  # noqa: E402

KEY_A = bytes(range(32))
KEY_B = bytes.fromhex("a5" * 32)
DEVICE_A = bytes.fromhex("0011223344556677")
DEVICE_B = bytes.fromhex("8899aabbccddeeff")


def to_json(value):
    """CBOR data model -> JSON: bytes, int-keyed maps and tags get a typed wrapper."""
    if isinstance(value, bytes):
        return {"$bytes": value.hex()}
    if isinstance(value, Mapping):
        return {"$map": [[to_json(k), to_json(v)] for k, v in value.items()]}
    if isinstance(value, cbor2.CBORTag):
        return {"$tag": value.tag, "value": to_json(value.value)}
    if isinstance(value, (list, tuple)):
        return [to_json(v) for v in value]
    return value


CBOR_VALUES = [
    0, 1, 23, 24, 255, 256, 65535, 65536, 4294967295, 4294967296,
    -1, -24, -25, -256, -257, -65537,
    b"", b"\x01\x02\x03", bytes(range(24)), bytes(300),
    "", "a", "fw-1.0.0", "\u00fc", "x" * 24,
    [], [1, [2, 3]], list(range(25)),
    {}, {1: 2}, {1: 5}, {4: DEVICE_A}, {1: 1, 2: "b", 3: [1]},
    True, False, None,
    cbor2.CBORTag(17, [b"", {}, b"", b""]),
]

EVENTS = [
    ("press slot 0", KEY_A, DEVICE_A, Event(seq=1, kind=Kind.PRESS, slot=0)),
    ("press with qty and battery", KEY_A, DEVICE_A,
     Event(seq=33, kind=Kind.PRESS, slot=2, qty=3, battery_mv=2980)),
    ("level report", KEY_B, DEVICE_B, Event(seq=70000, kind=Kind.LEVEL, slot=0, remaining=1234)),
    ("status heartbeat", KEY_B, DEVICE_B,
     Event(seq=4294967296, kind=Kind.STATUS, slot=0, battery_mv=3300, fw="1.0.0")),
    ("boot", KEY_A, DEVICE_A, Event(seq=2, kind=Kind.BOOT, slot=0, fw="1.0.0")),
    ("fleet heartbeat with an update report", KEY_B, DEVICE_B,
     Event(seq=77, kind=Kind.STATUS, slot=0, battery_mv=2710, fw="0.2.0", dropped=2,
           rssi=-67, queued=1, wakes=1234, ota=1, release=7)),
]

ANSWERS = [
    ("order created", Answer(seq=1, result=Result.CREATED, order=42, state="pending")),
    ("duplicate suppressed", Answer(seq=2, result=Result.VALID, order=42, state="placed")),
    ("recorded", Answer(seq=3, result=Result.CHANGED)),
    ("not claimed", Answer(seq=4, result=Result.FORBIDDEN)),
    ("replay", Answer(seq=5, result=Result.CONFLICT, last_seq=64)),
    ("update offered", Answer(seq=6, result=Result.CHANGED, update=7)),
]


def event_vector(name, key, device_id, event):
    cose = protocol.encode_event(key, device_id, event)
    signed = protocol.parse_signed_event(cose)
    return {
        "name": name,
        "key": key.hex(),
        "device_id": device_id.hex(),
        "fields": {protocol.EventKey(k).name.lower(): v for k, v in event.to_map().items()},
        "payload_hex": signed.payload.hex(),
        "tag_hex": signed.tag.hex(),
        "cose_hex": cose.hex(),
    }


def answer_vector(name, request, answer):
    key = bytes.fromhex(request["key"])
    tag = bytes.fromhex(request["tag_hex"])
    cose = protocol.encode_answer(key, tag, answer)
    return {
        "name": name,
        "key": request["key"],
        "request_tag_hex": request["tag_hex"],
        "fields": {protocol.AnswerKey(k).name.lower(): v for k, v in answer.to_map().items()},
        "payload_hex": cbor2.dumps(answer.to_map(), canonical=True).hex(),
        "cose_hex": cose.hex(),
    }


def coap_vector(name, message):
    return {
        "name": name,
        "type": int(message.mtype),
        "code": int(message.code),
        "mid": message.mid,
        "token_hex": message.token.hex(),
        "uri_path": list(message.opt.uri_path),
        "content_format": None if message.opt.content_format is None
        else int(message.opt.content_format),
        "payload_hex": message.payload.hex(),
        "hex": message.encode().hex(),
    }


def framed(mtype, mid, token_hex, **fields):
    message = Message(**fields)
    message.mtype, message.mid, message.token = mtype, mid, bytes.fromhex(token_hex)
    return message


def invalid_vectors(valid):
    key = bytes.fromhex(valid["key"])
    cose = bytes.fromhex(valid["cose_hex"])
    wrong_tag = cose[:-1] + bytes([cose[-1] ^ 1])
    wrong_alg = cbor2.dumps(cbor2.CBORTag(17, [cbor2.dumps({1: 4}), {4: DEVICE_A},
                                               bytes.fromhex(valid["payload_hex"]), bytes(32)]))
    return [
        {"name": "flipped tag bit", "key": key.hex(), "cose_hex": wrong_tag.hex(), "error": "bad_mac"},
        {"name": "wrong key", "key": KEY_B.hex(), "cose_hex": cose.hex(), "error": "bad_mac"},
        {"name": "truncated", "key": key.hex(), "cose_hex": cose[:20].hex(), "error": "malformed"},
        {"name": "not cbor", "key": key.hex(), "cose_hex": "ff00ff", "error": "malformed"},
        {"name": "alg HMAC 256/64", "key": key.hex(), "cose_hex": wrong_alg.hex(), "error": "malformed"},
    ]


def main():
    events = [event_vector(*e) for e in EVENTS]
    request = bytes.fromhex(events[0]["cose_hex"])
    post = framed(CON, 0x1234, "a1b2c3d4", code=Code.POST, uri_path=(protocol.EVENT_PATH,),
                  content_format=17, payload=request)
    ack = framed(ACK, 0x1234, "a1b2c3d4", code=Code.CREATED, content_format=17,
                 payload=bytes.fromhex("d1"))
    empty_ack = framed(ACK, 0xBEEF, "", code=Code.EMPTY)
    doc = {
        "protocol": 1,
        "about": "Generated by devtools/make_vectors.py; see docs/protocol.md.",
        "hmac_sha256": [  # RFC 4231 test cases 1, 2 and 6 (key longer than a block)
            {"key": "0b" * 20, "data": b"Hi There".hex(),
             "mac": "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"},
            {"key": b"Jefe".hex(), "data": b"what do ya want for nothing?".hex(),
             "mac": "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"},
            {"key": "aa" * 131,
             "data": b"Test Using Larger Than Block-Size Key - Hash Key First".hex(),
             "mac": "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"},
        ],
        "cbor": [{"hex": cbor2.dumps(v, canonical=True).hex(), "value": to_json(v)}
                 for v in CBOR_VALUES],
        "events": events,
        "answers": [answer_vector(name, events[0], a) for name, a in ANSWERS],
        "coap": [coap_vector("event POST", post), coap_vector("piggybacked answer", ack),
                 coap_vector("empty ACK", empty_ack)],
        "invalid": invalid_vectors(events[0]),
    }
    json.dump(doc, sys.stdout, indent=1)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
