"""Status heartbeats: battery, firmware, Wi-Fi signal, queue, wakes, update reports.

A heartbeat is a status event (kind 3) carrying keys 6-13 (docs/protocol.md). It goes
out when `interval_s` passed since the last answered one (board.json
`status_interval_s`, default a day: the backend's offline silence is 26 h), and at
once while an update report is pending. The wake count and the time of the last
heartbeat live in RTC memory (no flash wear); a power cut zeroes both, so the first
wake after one sends a heartbeat.
"""

import struct

from micropython import const

from replenish import protocol

DEFAULT_INTERVAL_S = const(86400)
_NEVER = const(0xFFFFFFFF)


class Status:
    def __init__(self, rtc, interval_s=DEFAULT_INTERVAL_S):
        self._rtc = rtc
        self.interval_s = interval_s
        raw = rtc.read()
        if raw and len(raw) == 8:
            self.wakes, last = struct.unpack(">II", raw)
        else:
            self.wakes, last = 0, _NEVER
        self.last_s = None if last == _NEVER else last

    def _save(self):
        last = _NEVER if self.last_s is None else self.last_s & 0xFFFFFFFF
        self._rtc.write(struct.pack(">II", self.wakes & 0xFFFFFFFF, last))

    def wake(self):
        """Count one wake (every boot and deep-sleep wake)."""
        self.wakes += 1
        self._save()

    def due(self, now_s):
        return self.last_s is None or now_s - self.last_s >= self.interval_s

    def fields(self, sender, rssi_dbm=None, report=None):
        extra = {
            protocol.EV_RSSI: rssi_dbm,
            protocol.EV_QUEUED: len(sender.queue),
            protocol.EV_WAKES: self.wakes,
            protocol.EV_DROPPED: sender.queue.dropped,
        }
        if report:
            extra[protocol.EV_OTA] = report[0]
            extra[protocol.EV_RELEASE] = report[1]
        return extra

    def send(self, sender, now_s, rssi_dbm=None, report=None):
        """Send one heartbeat now; the Outcome (its `update` may name a release)."""
        outcome = sender.send(protocol.KIND_STATUS, 0, fw=sender.fw,
                              extra=self.fields(sender, rssi_dbm, report))
        if outcome.authenticated:
            self.last_s = now_s
            self._save()
        return outcome
