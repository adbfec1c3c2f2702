"""Small named records as files in a folder: flash on an ESP32 (VFS), disk on unix.

The counter (counter.py) asks for no more than read(name) and write(name, bytes);
both hardware layers hand it this class.
"""

import os


def makedirs(path):
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
    def __init__(self, folder):
        self.folder = folder
        self.writes = 0  # record writes (flash wear figure)
        makedirs(folder)

    def read(self, name):
        try:
            with open(self.folder + "/" + name, "rb") as f:
                return f.read()
        except OSError:
            return None

    def write(self, name, data):
        self.writes += 1
        with open(self.folder + "/" + name, "wb") as f:
            f.write(data)
            flush = getattr(f, "flush", None)
            if flush is not None:
                flush()
