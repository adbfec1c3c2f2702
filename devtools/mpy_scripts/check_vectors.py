# Runs on MicroPython: checks the firmware codecs against docs/vectors/protocol-v1.json.
# Usage: micropython check_vectors.py VECTORS_JSON ; prints "PASS <n>" or raises.
import binascii
import json
import sys

from replenish import cbor, coap, cose, hmac_sha256, protocol

ux = binascii.unhexlify
doc = json.load(open(sys.argv[1]))
checks = 0


def from_json(v):
    if isinstance(v, dict):
        if "$bytes" in v:
            return ux(v["$bytes"])
        if "$map" in v:
            return {from_json(k): from_json(x) for k, x in v["$map"]}
        if "$tag" in v:
            return cbor.Tag(v["$tag"], from_json(v["value"]))
    if isinstance(v, list):
        return [from_json(x) for x in v]
    return v


def same(a, b):
    # == alone would let True pass for 1; compare types too
    if type(a) != type(b):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return len(a) == len(b) and all(k in b and same(a[k], b[k]) for k in a)
    if isinstance(a, cbor.Tag):
        return a.tag == b.tag and same(a.value, b.value)
    return a == b


for v in doc["hmac_sha256"]:
    mac = hmac_sha256.HmacSha256(ux(v["key"])).digest(ux(v["data"]))
    assert binascii.hexlify(mac).decode() == v["mac"], v
    checks += 1

for v in doc["cbor"]:
    raw = ux(v["hex"])
    value = from_json(v["value"])
    assert same(cbor.decode(raw), value), ("decode", v)
    assert cbor.encode(value) == raw, ("encode", v)
    checks += 1

for v in doc["events"]:
    f = v["fields"]
    extra = {}
    for name, key in (("rssi", protocol.EV_RSSI), ("queued", protocol.EV_QUEUED),
                      ("wakes", protocol.EV_WAKES), ("ota", protocol.EV_OTA),
                      ("release", protocol.EV_RELEASE)):
        extra[key] = f.get(name)
    payload = cbor.encode(protocol.event_map(
        f["seq"], f["kind"], f["slot"], f.get("qty"), f.get("remaining"), f.get("battery_mv"),
        f.get("fw"), f.get("dropped"), extra))
    assert payload == ux(v["payload_hex"]), ("payload", v["name"])
    mac = hmac_sha256.HmacSha256(ux(v["key"]))
    data, tag = cose.create(mac, payload, ux(v["device_id"]))
    assert tag == ux(v["tag_hex"]), ("tag", v["name"])
    assert data == ux(v["cose_hex"]), ("cose", v["name"])
    got, unprotected = cose.verify(mac, data)
    assert got == payload and cose.kid_of(unprotected) == ux(v["device_id"])
    checks += 1

for v in doc["answers"]:
    mac = hmac_sha256.HmacSha256(ux(v["key"]))
    data = ux(v["cose_hex"])
    request_tag = ux(v["request_tag_hex"])
    payload = cose.verify_answer(mac, data, request_tag)
    assert payload == ux(v["payload_hex"]), v["name"]
    ans = protocol.decode_answer(payload)
    f = v["fields"]
    assert (ans.seq, ans.result, ans.order, ans.state, ans.last_seq, ans.update) == (
        f["seq"], f["result"], f.get("order"), f.get("state"), f.get("last_seq"),
        f.get("update")), v["name"]
    assert cose.create(mac, payload, None, request_tag)[0] == data, v["name"]
    # tampered: one bit of the payload, the tag, or another request's tag
    for bad, aad in ((data[:-1] + bytes([data[-1] ^ 1]), request_tag),
                     (data, request_tag[:-1] + bytes([request_tag[-1] ^ 0x80])),
                     (data, b"")):
        try:
            cose.verify_answer(mac, bad, aad)
        except cose.BadMac:
            pass
        else:
            raise AssertionError("tampered answer accepted: " + v["name"])
    checks += 1

for v in doc["coap"]:
    raw = ux(v["hex"])
    msg = coap.decode(raw)
    assert (msg.mtype, msg.code, msg.mid, msg.token, msg.uri_path, msg.content_format,
            msg.payload) == (v["type"], v["code"], v["mid"], ux(v["token_hex"]),
                             v["uri_path"], v["content_format"], ux(v["payload_hex"])), v["name"]
    opts = [(coap.OPT_URI_PATH, p.encode()) for p in v["uri_path"]]
    if v["content_format"] is not None:
        opts.append((coap.OPT_CONTENT_FORMAT, coap.uint_value(v["content_format"])))
    again = coap.Message(v["type"], v["code"], v["mid"], ux(v["token_hex"]), opts,
                         ux(v["payload_hex"]))
    assert coap.encode(again) == raw, v["name"]
    checks += 1

for v in doc["invalid"]:
    mac = hmac_sha256.HmacSha256(ux(v["key"]))
    try:
        cose.verify(mac, ux(v["cose_hex"]))
    except cose.CoseError as err:
        assert err.category == v["error"], (v["name"], err.category)
    else:
        raise AssertionError("invalid vector accepted: " + v["name"])
    checks += 1

print("PASS", checks)
