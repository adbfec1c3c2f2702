"""The sensor role: measure on a timer wake, report the remaining amount when needed.

A level report (kind 2, `remaining`) goes out when the amount moved by more than the
hysteresis since the last report, after a refill (a jump up by more than the
hysteresis), or when heartbeat_s passed; otherwise the device goes back to sleep
without touching the radio. What was last reported lives in a small state record
(RTC memory on an ESP32: survives deep sleep, costs no flash write).
"""

import struct

from replenish import protocol

FIRST = "first"
CHANGE = "change"
REFILL = "refill"
HEARTBEAT = "heartbeat"
_STATE = ">IIII"  # magic, last reported remaining, when (s), cycles counted
_MAGIC = 0x524C5631  # "RLV1"


class Policy:
    def __init__(self, capacity, hysteresis=0, heartbeat_s=86400):
        self.capacity = capacity
        self.hysteresis = hysteresis
        self.heartbeat_s = heartbeat_s

    def clamp(self, amount):
        amount = int(amount + 0.5) if amount > 0 else 0
        return amount if amount < self.capacity else self.capacity

    def decide(self, remaining, now_s, last, last_s):
        """Why to report now (FIRST, REFILL, CHANGE, HEARTBEAT) or None."""
        if last is None:
            return FIRST
        if remaining > last + self.hysteresis:
            return REFILL
        if remaining < last - self.hysteresis:
            return CHANGE
        if now_s - last_s >= self.heartbeat_s:
            return HEARTBEAT
        return None


class State:
    """last reported amount, its time, counted cycles; kept in an rtc-like record."""

    def __init__(self, rtc):
        self._rtc = rtc
        self.last = None
        self.last_s = 0
        self.cycles = 0
        raw = rtc.read()
        if raw is not None and len(raw) == struct.calcsize(_STATE):
            magic, last, last_s, cycles = struct.unpack(_STATE, raw)
            if magic == _MAGIC:
                self.last = last
                self.last_s = last_s
                self.cycles = cycles

    def save(self):
        last = 0xFFFFFFFF if self.last is None else self.last
        self._rtc.write(struct.pack(_STATE, _MAGIC, last, self.last_s, self.cycles))
        if last == 0xFFFFFFFF:
            self.last = None


class Sensor:
    def __init__(self, sender, led, policy, state, slot=0):
        self._sender = sender
        self._led = led
        self.policy = policy
        self.state = state
        self._slot = slot

    def wake(self, amount, now_s):
        """(reason or None, Outcome or None): report amount if the policy says so."""
        remaining = self.policy.clamp(amount)
        st = self.state
        reason = self.policy.decide(remaining, now_s, st.last, st.last_s)
        if reason is None:
            return None, None
        outcome = self._sender.send(protocol.KIND_LEVEL, self._slot, remaining=remaining)
        if outcome.authenticated or outcome.queued:
            st.last = remaining  # queued counts: it will be delivered in order
            st.last_s = now_s
            st.save()
        self._led.show(outcome.pattern)
        return reason, outcome


def cycles_remaining(capacity, dose, cycles):
    left = capacity - dose * cycles
    return left if left > 0 else 0
