"""Unix-port hardware layer: files for flash, stdout for the LED, stdin for the button."""

import sys
import time

from replenish.storage import FileStorage  # noqa: F401  (files in <bundle>/state)


def _flush(stream):
    flush = getattr(stream, "flush", None)
    if flush is not None:
        flush()


class Led:
    """Writes each pattern as a diagnostic log line."""

    def __init__(self, stream=None):
        self._stream = stream or sys.stdout
        self.last = None

    def show(self, pattern):
        self.last = pattern
        self._stream.write("# led %s\n" % pattern)


class Battery:
    """A fixed voltage from config (None: not reported)."""

    def __init__(self, mv):
        self._mv = mv

    def read_mv(self):
        return self._mv


def commands(stream=None):
    """Yield (verb, args) for each non-empty line of stream (stdin); stop at EOF."""
    stream = stream or sys.stdin
    while True:
        line = stream.readline()
        if not line:
            return
        words = line.split()
        if words:
            yield words[0], words[1:]


def out(line, stream=None):
    stream = stream or sys.stdout
    stream.write(line + "\n")
    _flush(stream)


class Rtc:
    """RTC slow memory stand-in: a file that is not counted as flash wear."""

    def __init__(self, path):
        self._path = path

    def read(self):
        try:
            with open(self._path, "rb") as f:
                return f.read()
        except OSError:
            return None

    def write(self, data):
        with open(self._path, "wb") as f:
            f.write(data)


class SimulatedLoadCell:
    """A simulated HX711 under a simulated load (grams), for sensor boards on unix."""

    def __init__(self, gain=128, offset=84000, counts_per_gram=420.0):
        from hw import sim

        self.clock = sim.Clock()
        self.load = 0.0
        self._offset = offset
        self._per_gram = counts_per_gram
        self.chip = sim.Hx711(self.clock, self._source)

    def _source(self, gain):
        return int(self._offset + self.load * self._per_gram)


class Clock:
    """Milliseconds since start (monotonic), as the portable core expects."""

    def __init__(self):
        self._start = time.ticks_ms()

    def ticks_ms(self):
        return time.ticks_diff(time.ticks_ms(), self._start)

    def sleep_us(self, n):
        time.sleep_us(n)
