"""Unix-port hardware layer: files for flash, stdout for the LED, stdin for the button."""

import sys

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
