"""Protocol v1 constants and the event/answer maps (docs/protocol.md)."""

from micropython import const

from replenish import cbor

EVENT_PATH = "ev"
CONTENT_FORMAT = const(17)  # application/cose; cose-type="cose-mac0"
MAX_PAYLOAD_BYTES = const(512)
KEY_BYTES = const(32)
DEVICE_ID_BYTES = const(8)

# Event map keys
EV_SEQ = const(1)
EV_KIND = const(2)
EV_SLOT = const(3)
EV_QTY = const(4)
EV_REMAINING = const(5)
EV_BATTERY_MV = const(6)
EV_FW = const(7)
EV_DROPPED = const(8)  # events dropped from the offline queue (cumulative)
EV_RSSI = const(9)  # Wi-Fi signal, dBm (negative)
EV_QUEUED = const(10)  # events waiting in the offline queue
EV_WAKES = const(11)  # wakes since power-on
EV_OTA = const(12)  # how the last update ended: OTA_INSTALLED, OTA_ROLLED_BACK, OTA_REFUSED
EV_RELEASE = const(13)  # the release an EV_OTA report is about

OTA_INSTALLED = const(1)
OTA_ROLLED_BACK = const(2)
OTA_REFUSED = const(3)

# Event kinds
KIND_BOOT = const(0)
KIND_PRESS = const(1)
KIND_LEVEL = const(2)
KIND_STATUS = const(3)

# Answer map keys
ANS_SEQ = const(1)
ANS_RESULT = const(2)
ANS_ORDER = const(3)
ANS_STATE = const(4)
ANS_LAST_SEQ = const(5)
ANS_BLOCKED = const(6)  # 2.04: a household limit stopped the order
ANS_UPDATE = const(7)  # id of a firmware release to install (docs/fleet.md)

# Results = CoAP response code numbers (class * 32 + detail)
CREATED = const(65)  # 2.01 order created
VALID = const(67)  # 2.03 duplicate suppressed
CHANGED = const(68)  # 2.04 recorded, no order
BAD_REQUEST = const(128)  # 4.00
UNAUTHORIZED = const(129)  # 4.01
FORBIDDEN = const(131)  # 4.03 revoked or unclaimed
CONFLICT = const(137)  # 4.09 stale seq, answer has last_seq
TOO_LARGE = const(141)  # 4.13
UNSUPPORTED_FORMAT = const(143)  # 4.15
UNAVAILABLE = const(163)  # 5.03

AUTHENTICATED_RESULTS = (CREATED, VALID, CHANGED, FORBIDDEN, CONFLICT)


def dotted(code):
    return "%d.%02d" % (code >> 5, code & 31)


def event_map(seq, kind, slot, qty=None, remaining=None, battery_mv=None, fw=None,
              dropped=None, extra=None):
    """The event's map; extra: more {key: value} (status fields), None values left out."""
    fields = {EV_SEQ: seq, EV_KIND: kind, EV_SLOT: slot}
    if qty is not None:
        fields[EV_QTY] = qty
    if remaining is not None:
        fields[EV_REMAINING] = remaining
    if battery_mv is not None:
        fields[EV_BATTERY_MV] = battery_mv
    if fw is not None:
        fields[EV_FW] = fw
    if dropped is not None:
        fields[EV_DROPPED] = dropped
    if extra:
        for key in extra:
            if extra[key] is not None:
                fields[key] = extra[key]
    return fields


def encode_event(seq, kind, slot, qty=None, remaining=None, battery_mv=None, fw=None):
    """The deterministic CBOR payload of an event."""
    return cbor.encode(event_map(seq, kind, slot, qty, remaining, battery_mv, fw))


class Answer:
    __slots__ = ("seq", "result", "order", "state", "last_seq", "blocked", "update")

    def __init__(self, seq, result, order=None, state=None, last_seq=None, blocked=None,
                 update=None):
        self.seq = seq
        self.result = result
        self.order = order
        self.state = state
        self.last_seq = last_seq
        self.blocked = blocked
        self.update = update


def _uint(fields, key, required):
    value = fields.get(key)
    if value is None and not required:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError("answer key %d must be an unsigned integer" % key)
    return value


def decode_answer(payload):
    """Decode an (already authenticated) answer map; ValueError if malformed."""
    fields = cbor.decode(payload)
    if not isinstance(fields, dict):
        raise ValueError("answer must be a map")
    state = fields.get(ANS_STATE)
    if state is not None and not isinstance(state, str):
        raise ValueError("state must be text")
    return Answer(
        _uint(fields, ANS_SEQ, True),
        _uint(fields, ANS_RESULT, True),
        _uint(fields, ANS_ORDER, False),
        state,
        _uint(fields, ANS_LAST_SEQ, False),
        _uint(fields, ANS_BLOCKED, False),
        _uint(fields, ANS_UPDATE, False),
    )
