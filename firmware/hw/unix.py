"""Unix-port hardware layer: files for flash and RTC memory, stdout for the LED, loopback
for the network, a simulated HX711 for load-cell boards. Never shipped to a device.
"""

import os
import socket
import sys
import time

from replenish.client import Client
from replenish.hal import Hardware
from replenish.leds import pattern
from replenish.storage import FileStorage


def _flush(stream):
    flush = getattr(stream, "flush", None)
    if flush is not None:
        flush()


def env_int(name, default):
    value = os.getenv(name)
    if not value:
        return default
    return int(value)


class Led:
    """Writes each pattern as a diagnostic log line (a steady one only when it changes)."""

    def __init__(self, stream=None):
        self._stream = stream or sys.stdout
        self.last = None

    def show(self, name):
        if name == self.last and pattern(name)[3] == 0:
            return  # already lit steadily
        self.last = name
        self._stream.write("# led %s\n" % name)

    def off(self):
        self.last = None


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


def _simulated_silicon(name):
    """A chip model from the ESP32 simulation (devtools/esp32sim/device/): one model of
    each chip serves the simulated ESP32s and the unix port. It sits beside firmware/ in
    the repository and never ships."""
    import sys

    here = __file__[:__file__.rfind("/")] if "/" in __file__ else "."
    models = here + "/../../devtools/esp32sim/device"
    if models not in sys.path:
        sys.path.append(models)
    return __import__(name)


class SimulatedLoadCell:
    """A simulated HX711 under a simulated load (grams), for sensor boards on unix."""

    def __init__(self, offset=84000, counts_per_gram=420.0):
        hx711_model = _simulated_silicon("hx711_model")
        self.clock = hx711_model.Clock()
        self.load = 0.0
        self._offset = offset
        self._per_gram = counts_per_gram
        self.chip = hx711_model.Hx711(self.clock, self._source)

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


class UnixHardware(Hardware):
    """The device as one process: always powered, loopback network, no deep sleep.

    Environment: REPLENISH_ACK_TIMEOUT_MS (default 2000), REPLENISH_MAX_RETRANSMIT
    (default 4), REPLENISH_BATTERY_MV, REPLENISH_RSSI_DBM (the simulated signal)."""

    def __init__(self, bundle):
        self._state = bundle + "/state"
        self.storage = FileStorage(self._state)
        self.led = Led()
        self.battery = Battery(env_int("REPLENISH_BATTERY_MV", None))
        self.clock = Clock()
        self.cell = None  # the simulated load cell, once a sensor board asks for it
        self._rssi = env_int("REPLENISH_RSSI_DBM", None)

    def rtc(self, index):
        return Rtc("%s/rtc%d.bin" % (self._state, index))

    def connect(self, wifi, host, port):
        addr = socket.getaddrinfo(host, port)[0][-1]
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        return Client(sock, addr, ack_timeout_ms=env_int("REPLENISH_ACK_TIMEOUT_MS", 2000),
                      max_retransmit=env_int("REPLENISH_MAX_RETRANSMIT", 4))

    def rssi(self):
        return self._rssi

    def simulated_cell(self):
        if self.cell is None:
            self.cell = SimulatedLoadCell()
        return self.cell

    def load_cell(self, hx711):
        from replenish.hx711 import HX711

        cell = self.simulated_cell()
        return HX711(cell.chip.dout_pin, cell.chip.sck_pin, cell.clock, hx711.get("gain", 128))

    def setup_listener(self, essid, secret, port):
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(socket.getaddrinfo("127.0.0.1", port)[0][-1])  # no getsockname here
        listener.listen(2)
        out("SETUP port=%d" % port)  # the access point is "up"
        return listener
