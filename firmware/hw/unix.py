"""Unix-port hardware layer: files for flash, stdout for the LED, stdin for the button."""

import os
import sys


def _flush(stream):
    flush = getattr(stream, "flush", None)
    if flush is not None:
        flush()


def _mkdirs(path):
    parts = path.split("/")
    for i in range(1, len(parts) + 1):
        sub = "/".join(parts[:i])
        if not sub:
            continue
        try:
            os.mkdir(sub)
        except OSError:
            pass  # exists


class FileStorage:
    """Records as files in a folder (e.g. <bundle>/state)."""

    def __init__(self, folder):
        self.folder = folder
        _mkdirs(folder)

    def read(self, name):
        try:
            with open(self.folder + "/" + name, "rb") as f:
                return f.read()
        except OSError:
            return None

    def write(self, name, data):
        with open(self.folder + "/" + name, "wb") as f:
            f.write(data)
            _flush(f)


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
