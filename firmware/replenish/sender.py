"""Signed events out, verified answers in, the offline queue in between.

Sender.send(kind, slot, ...) first delivers what the queue holds (oldest first, so
sequence numbers reach the backend in increasing order), then signs and sends the
new event; an event without an authenticated answer goes into the queue. A press is
different: record() signs it into the flash queue before the network is touched (a
watchdog reset or a power cut during a slow join or a retransmission cannot lose it),
and send_recorded() delivers the queue through it. When the
queue had to drop events, a status event carrying `dropped` (key 8) follows the
flush. Collaborators are passed in: identity, SeqCounter, client, Queue, battery.
"""

import random
import time

from replenish import cbor, coap, cose, protocol
from replenish.client import ClientError
from replenish.hmac_sha256 import HmacSha256

ORDERED = "ordered"
ALREADY_ORDERED = "already_ordered"
NOT_CONFIGURED = "not_configured"
LIMIT_REACHED = "limit_reached"
NOT_CLAIMED = "not_claimed"
ERROR = "error"
RECORDED = "recorded"
AWAITING_CONSENT = "awaiting_consent"  # 2.01 whose order waits for the household

_PATTERNS = {
    protocol.CREATED: ORDERED,
    protocol.VALID: ALREADY_ORDERED,
    protocol.FORBIDDEN: NOT_CLAIMED,
}
_TAG_BYTES = 32


class Outcome:
    __slots__ = ("pattern", "seq", "result", "order", "state", "reason", "queued",
                 "authenticated", "update", "retry_after_s")

    def __init__(self, pattern, seq, result=None, order=None, state=None, reason=None,
                 queued=False, authenticated=False, update=None, retry_after_s=None):
        self.pattern = pattern
        self.seq = seq
        self.result = result  # CoAP code number of the answer, None if no answer
        self.order = order
        self.state = state
        self.reason = reason  # short diagnostic for errors
        self.queued = queued  # kept in the offline queue
        self.authenticated = authenticated  # the answer's MAC verified: delivered
        self.update = update  # release id the backend offers (answer key 7), or None
        self.retry_after_s = retry_after_s  # the backend is overloaded: quiet this long


class Event:
    __slots__ = ("kind", "slot", "seq", "cose")

    def __init__(self, kind, slot, seq, cose_bytes):
        self.kind = kind
        self.slot = slot
        self.seq = seq
        self.cose = cose_bytes

    @property
    def tag(self):
        return self.cose[-_TAG_BYTES:]  # the COSE_Mac0 ends with its 32-byte tag bstr


class Sender:
    def __init__(self, identity, counter, client, queue, battery=None, led=None):
        self._kid = identity.device_id
        self.fw = identity.fw
        # Named in "no answer" reasons: the operator sees which address was tried.
        self._server = "%s:%d" % (identity.coap_host, identity.coap_port)
        self._mac = HmacSha256(identity.key)
        self._counter = counter
        self.client = client  # set later when the network comes up after a record()
        self.queue = queue
        self._battery = battery
        self._led = led
        self.exchanges = 0  # requests sent (stats)
        self.last_battery_mv = None  # read once per signed event
        # time.time() before which nothing is sent: an overloaded backend answered 5.03
        # with Max-Age. main.py keeps it in RTC memory across deep sleep.
        self.quiet_until = 0

    def battery_mv(self):
        mv = None if self._battery is None else self._battery.read_mv()
        self.last_battery_mv = mv
        return mv

    def sign(self, kind, slot, qty=None, remaining=None, fw=None, dropped=None, extra=None):
        seq = self._counter.next()
        fields = protocol.event_map(seq, kind, slot, qty, remaining, self.battery_mv(), fw,
                                    dropped, extra)
        cose_bytes, _tag = cose.create(self._mac, cbor.encode(fields), self._kid)
        return Event(kind, slot, seq, cose_bytes)

    def _resign(self, event):
        """The same event under a fresh sequence number (after a 4.09)."""
        payload = cose.parse(event.cose)[2]
        fields = cbor.decode(payload)
        fields[protocol.EV_SEQ] = seq = self._counter.next()
        cose_bytes, _tag = cose.create(self._mac, cbor.encode(fields), self._kid)
        return Event(event.kind, event.slot, seq, cose_bytes)

    def _exchange(self, event):
        """Send one event; return (Answer or None, code, reason)."""
        if self._led is not None:
            self._led.show("sending")
        self.exchanges += 1
        try:
            code, cf, body = self.client.request(
                coap.POST, protocol.EVENT_PATH, event.cose, protocol.CONTENT_FORMAT)
        except (ClientError, OSError) as err:
            return None, None, "no answer from %s: %s" % (self._server,
                                                          err.__class__.__name__)
        max_age = getattr(self.client, "max_age", None)
        if code == protocol.UNAVAILABLE and max_age is not None:
            self._hold(max_age)
            return None, code, "server busy: quiet for %d s" % max_age
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

    def _hold(self, max_age_s):
        """Stay quiet for Max-Age plus up to half again (devices must not all come back
        at the same moment)."""
        jitter = max_age_s * random.getrandbits(8) // 512
        self.quiet_until = time.time() + max_age_s + jitter

    def quiet_s(self):
        """Seconds the backend asked us to stay quiet for, from now (0: may send)."""
        return max(0, self.quiet_until - time.time())

    def deliver(self, event):
        """Exchange an event (resync once on 4.09); Outcome with result None = no answer."""
        resynced = False
        while True:
            if self.quiet_s():
                return Outcome(ERROR, event.seq, reason="server busy: quiet for %d s"
                               % self.quiet_s(), retry_after_s=self.quiet_s())
            answer, code, reason = self._exchange(event)
            if answer is None:
                return Outcome(ERROR, event.seq, code, reason=reason,
                               retry_after_s=self.quiet_s() or None)
            if answer.result == protocol.CONFLICT and not resynced \
                    and answer.last_seq is not None:
                resynced = True
                self._counter.resync(answer.last_seq)
                event = self._resign(event)
                continue
            if answer.result == protocol.CHANGED and answer.blocked:
                pattern = LIMIT_REACHED  # a household limit, not a missing product
            elif answer.result == protocol.CHANGED:
                pattern = NOT_CONFIGURED if event.kind == protocol.KIND_PRESS else RECORDED
            elif answer.state == AWAITING_CONSENT and answer.result in (protocol.CREATED,
                                                                         protocol.VALID):
                pattern = AWAITING_CONSENT  # nothing is bought until the household says so
            else:
                pattern = _PATTERNS.get(answer.result, ERROR)
            return Outcome(pattern, event.seq, answer.result, answer.order, answer.state,
                           None if pattern != ERROR else "result %d" % answer.result,
                           authenticated=True, update=answer.update)

    def flush(self):
        """Send queued events oldest first; (delivered outcomes, failure Outcome or None)."""
        done = []
        failure = None
        queue = self.queue
        while True:
            head = queue.oldest()
            if head is None:
                break
            entry, data = head
            outcome = self.deliver(Event(entry.kind, entry.slot, entry.seq, data))
            if not outcome.authenticated:
                failure = outcome
                break
            queue.delivered(entry)
            done.append(outcome)
        if failure is None and queue.dropped > queue.reported:
            dropped = queue.dropped
            outcome = self.deliver(self.sign(protocol.KIND_STATUS, 0, fw=self.fw,
                                             dropped=dropped))
            if outcome.authenticated:
                queue.note_reported(dropped)
        queue.commit()
        return done, failure

    def record(self, kind, slot, qty=None):
        """Sign an event into the queue (one flash page write); its seq."""
        event = self.sign(kind, slot, qty)
        self.queue.push(kind, slot, event.seq, event.cose)
        return event.seq

    def send_recorded(self, seq):
        """Deliver the queue up to and including the recorded event `seq`; its Outcome
        (queued=True while it stays in the queue)."""
        done, failure = self.flush()
        for entry in self.queue.entries():
            if entry.seq == seq:
                return Outcome(ERROR, seq, failure.result if failure else None,
                               reason=failure.reason if failure else "not delivered",
                               queued=True,
                               retry_after_s=failure.retry_after_s if failure else None)
        if done:
            return done[-1]  # the newest entry goes last (its seq differs after a 4.09)
        return Outcome(ERROR, seq, reason="dropped from the queue")

    def send(self, kind, slot, qty=None, remaining=None, fw=None, extra=None):
        """Flush the queue, then sign and send one event; queue it if unanswered."""
        failure = None
        if len(self.queue) or self.queue.dropped > self.queue.reported:
            failure = self.flush()[1]
        event = self.sign(kind, slot, qty, remaining, fw, extra=extra)
        if failure is None:
            outcome = self.deliver(event)
            if outcome.authenticated:
                return outcome
            failure = outcome
        self.queue.push(kind, slot, event.seq, event.cose)
        return Outcome(ERROR, event.seq, failure.result, reason=failure.reason, queued=True,
                       retry_after_s=failure.retry_after_s)
