"""Firmware figures per press on the MicroPython unix port (run by devtools/firmware_bench.py).

The real press path (Button -> Sender -> counter, queue, COSE, CoAP encode/decode,
answer verification -> LED) runs against an in-process peer that answers each request
at once with a MAC'd answer, so no network wait is in the figures; the peer's own time
and heap are measured and subtracted. Prints one `key=value` line per figure.

    micropython bench_press.py PRESSES
"""

import gc
import sys
import time

from replenish import cbor, coap, cose, protocol
from replenish.button import Button
from replenish.counter import SeqCounter
from replenish.hmac_sha256 import HmacSha256
from replenish.identity import Identity
from replenish.queue import Queue
from replenish.sender import Sender

KEY = bytes(range(32))
KID = b"\x00\x11\x22\x33\x44\x55\x66\x77"


class CountingFlash:
    def __init__(self):
        self.files = {}
        self.writes = 0

    def read(self, name):
        return self.files.get(name)

    def write(self, name, data):
        self.writes += 1
        self.files[name] = bytes(data)


class Rtc:
    """RTC slow memory (ESP32 deep sleep): not flash."""

    def __init__(self):
        self.data = None

    def read(self):
        return self.data

    def write(self, data):
        self.data = bytes(data)


class Peer:
    """Answers like the backend: first press on slot 0 orders, later ones are suppressed."""

    def __init__(self):
        self.mac = HmacSha256(KEY)
        self.us = 0
        self.heap = 0
        self.up = True
        self.ordered = False

    def request(self, code, path, payload=b"", content_format=None):
        t0 = time.ticks_us()
        h0 = gc.mem_alloc()
        if not self.up:
            self.us += time.ticks_diff(time.ticks_us(), t0)
            raise OSError(110)
        body, _unprot = cose.verify(self.mac, payload)
        event = cbor.decode(body)
        result = protocol.VALID if self.ordered else protocol.CREATED
        self.ordered = True
        answer = cbor.encode({1: event[1], 2: result, 3: 42, 4: "pending"})
        out, _tag = cose.create(self.mac, answer, None, payload[-32:])
        self.heap += gc.mem_alloc() - h0
        self.us += time.ticks_diff(time.ticks_us(), t0)
        return result, protocol.CONTENT_FORMAT, out


class Led:
    def show(self, pattern):
        self.last = pattern


def run(presses):
    flash = CountingFlash()
    peer = Peer()
    ident = Identity(KID, KEY, "button", "127.0.0.1", 5683, "0.1.0")
    led = Led()
    sender = Sender(ident, SeqCounter(flash), peer, Queue(flash, rtc=Rtc()), None, led)
    button = Button(sender, led)
    button.press(0)  # warm-up: imports, first reservation
    flash.writes = 0
    peer.us = 0
    total_us = 0
    peak = 0
    for _ in range(presses):
        gc.collect()
        gc.disable()  # nothing freed during the press: mem_alloc growth = its peak heap
        peer.heap = 0
        base = gc.mem_alloc()
        t0 = time.ticks_us()
        outcome = button.press(0)
        total_us += time.ticks_diff(time.ticks_us(), t0)
        grown = gc.mem_alloc() - base - peer.heap
        gc.enable()
        if grown > peak:
            peak = grown
        assert outcome.pattern == "already_ordered", outcome.pattern
    online_writes = flash.writes
    firmware_us = (total_us - peer.us) / presses

    # Offline: a burst that fits the queue (16) goes to flash, then one flush sends it.
    offline = 10
    peer.up = False
    flash.writes = 0
    for _ in range(offline):
        assert button.press(0).queued
    offline_writes = flash.writes
    peer.up = True
    flash.writes = 0
    done, failure = sender.flush()
    assert failure is None and len(done) == offline and not len(sender.queue)
    flush_writes = flash.writes

    gc.collect()
    print("presses=%d" % presses)
    print("firmware_us_per_press=%d" % firmware_us)
    print("peak_heap_bytes_per_send=%d" % peak)
    print("flash_writes_per_press_online=%.5f" % (online_writes / presses))
    print("offline_presses=%d" % offline)
    print("flash_writes_per_press_offline=%.5f" % ((offline_writes + flush_writes) / offline))
    print("flash_writes_per_flush=%d" % flush_writes)
    print("heap_free_after=%d" % gc.mem_free())


run(int(sys.argv[1]) if len(sys.argv) > 1 else 320)
