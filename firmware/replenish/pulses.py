"""Cycle counter: debounced pulses from an appliance (one pulse = one cycle = one dose).

The pin and clock are passed in (pin.value() -> 0/1; clock.ticks_ms()). poll() is
called in a loop (or after each wake on the pulse pin); a level change counts only
when it stayed stable for debounce_ms, so contact bounce and short glitches do not
count. A cycle is counted on the change to the active level.
"""


class PulseCounter:
    def __init__(self, pin, clock, active_low=True, debounce_ms=50, count=0):
        self._pin = pin
        self._clock = clock
        self._active = 0 if active_low else 1
        self._debounce_ms = debounce_ms
        self._stable = pin.value()
        self._candidate = self._stable
        self._since_ms = clock.ticks_ms()
        self.count = count

    def poll(self):
        """Sample once; return True when a new cycle was counted."""
        level = self._pin.value()
        now = self._clock.ticks_ms()
        if level != self._candidate:
            self._candidate = level
            self._since_ms = now
            return False
        if level != self._stable and now - self._since_ms >= self._debounce_ms:
            self._stable = level
            if level == self._active:
                self.count += 1
                return True
        return False
