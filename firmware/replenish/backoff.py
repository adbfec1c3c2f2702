"""Failed wakes in a row and the backend's quiet period, kept across deep sleep.

The count drives the Wi-Fi/backend backoff (power.backoff_s); `quiet_until` is the
time.time() before which an overloaded backend (5.03 with Max-Age) asked for silence.
Both live in one RTC record (no flash wear); a power cut resets them, which only makes
the next wake try at once.
"""

import struct


class Failures:
    def __init__(self, rtc):
        self._rtc = rtc
        raw = rtc.read()
        self.count, self.quiet_until = (struct.unpack(">II", raw) if raw and len(raw) == 8
                                        else (0, 0))

    def set(self, count, quiet_until=0):
        quiet_until = int(quiet_until)
        if (count, quiet_until) != (self.count, self.quiet_until):
            self.count, self.quiet_until = count, quiet_until
            self._rtc.write(struct.pack(">II", count, quiet_until))
