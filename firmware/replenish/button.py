"""The button role: a press becomes a signed event, the answer becomes an LED pattern.

Collaborators are passed in: a client (request(code, path, payload, cf)), a
SeqCounter, the device Identity, a led with show(pattern), and optionally a
battery with read_mv().
"""

from replenish import coap, cose, protocol
from replenish.client import ClientError
from replenish.hmac_sha256 import HmacSha256

ORDERED = "ordered"
ALREADY_ORDERED = "already_ordered"
NOT_CONFIGURED = "not_configured"
NOT_CLAIMED = "not_claimed"
ERROR = "error"
RECORDED = "recorded"

_PATTERNS = {
    protocol.CREATED: ORDERED,
    protocol.VALID: ALREADY_ORDERED,
    protocol.FORBIDDEN: NOT_CLAIMED,
}


class Outcome:
    __slots__ = ("pattern", "seq", "result", "order", "state", "reason")

    def __init__(self, pattern, seq, result=None, order=None, state=None, reason=None):
        self.pattern = pattern
        self.seq = seq
        self.result = result  # CoAP code number of the answer, None if no answer
        self.order = order
        self.state = state
        self.reason = reason  # short diagnostic for errors


class _Pending:
    __slots__ = ("seq", "cose", "tag")

    def __init__(self, seq, cose_bytes, tag):
        self.seq = seq
        self.cose = cose_bytes
        self.tag = tag


class Button:
    def __init__(self, identity, counter, client, led, battery=None):
        self._kid = identity.device_id
        self._fw = identity.fw
        self._mac = HmacSha256(identity.key)
        self._counter = counter
        self._client = client
        self._led = led
        self._battery = battery
        # Events without an authenticated answer, by (kind, slot): they are resent
        # byte for byte (same seq and tag), so the server answers a retransmission
        # with its stored answer and never creates a second order.
        self.pending = {}

    def _battery_mv(self):
        if self._battery is None:
            return None
        return self._battery.read_mv()

    def _sign(self, kind, slot, fw=None):
        seq = self._counter.next()
        payload = protocol.encode_event(seq, kind, slot, None, None, self._battery_mv(), fw)
        cose_bytes, tag = cose.create(self._mac, payload, self._kid)
        return _Pending(seq, cose_bytes, tag)

    def _exchange(self, event):
        """Send one event; return (Answer or None, code, reason)."""
        try:
            code, cf, body = self._client.request(
                coap.POST, protocol.EVENT_PATH, event.cose, protocol.CONTENT_FORMAT)
        except (ClientError, OSError) as err:
            return None, None, "no answer: %s" % err.__class__.__name__
        if cf != protocol.CONTENT_FORMAT:
            return None, code, "unauthenticated answer"
        try:
            answer = protocol.decode_answer(cose.verify_answer(self._mac, body, event.tag))
        except ValueError as err:
            return None, code, "answer refused: %s" % err
        if answer.seq != event.seq:
            return None, code, "answer for another seq"
        if answer.result != code:
            return None, code, "answer result differs from CoAP code"
        return answer, code, None

    def _send(self, kind, slot, fw=None):
        key = (kind, slot)
        event = self.pending.get(key)
        if event is None:
            event = self._sign(kind, slot, fw)
            self.pending[key] = event
        resynced = False
        while True:
            answer, code, reason = self._exchange(event)
            if answer is None:
                return Outcome(ERROR, event.seq, code, reason=reason)
            if answer.result == protocol.CONFLICT and not resynced \
                    and answer.last_seq is not None:
                resynced = True
                self._counter.resync(answer.last_seq)
                event = self._sign(kind, slot, fw)
                self.pending[key] = event
                continue
            del self.pending[key]
            if answer.result == protocol.CHANGED:
                pattern = NOT_CONFIGURED if kind == protocol.KIND_PRESS else RECORDED
            else:
                pattern = _PATTERNS.get(answer.result, ERROR)
            return Outcome(pattern, event.seq, answer.result, answer.order, answer.state,
                           None if pattern != ERROR else "result %d" % answer.result)

    def press(self, slot=0):
        outcome = self._send(protocol.KIND_PRESS, slot)
        self._led.show(outcome.pattern)
        return outcome

    def boot(self):
        outcome = self._send(protocol.KIND_BOOT, 0, self._fw)
        self._led.show(outcome.pattern)
        return outcome
