"""Sequence counter persisted in reserved blocks (docs/protocol.md, "Sequence numbers").

A reservation R means "numbers up to R may be used". Before handing out n the
counter makes sure a durable reservation >= n exists; if not it writes R = n + 31
(one write per _BLOCK numbers). After a restart it continues at R + 1, so what was
left of the old block is skipped and no number is ever reused.

Reservations alternate between two records, _SLOTS; each holds a generation, the
reservation and a checksum. A write torn by a power cut leaves a record whose
checksum fails; the other record still holds the previous reservation, which
covers every number handed out so far (numbers are only used after their
reservation write returned).

storage: any object with read(name) -> bytes or None and write(name, bytes).

With `rtc` (a record in memory that survives deep sleep and resets, not a power cut)
the next number is also kept there, tagged with the reservation's generation: a wake
continues inside the current block instead of skipping it, so a press costs no
reservation write on most wakes. A power cut erases it and the counter skips the block
as before; a record of another generation (or damaged) is ignored.
"""

import hashlib
import struct

from micropython import const

_BLOCK = const(32)
_MAGIC = b"RSQ1"
_FORMAT = ">4sIQ"  # magic, generation, reservation
_BODY_BYTES = const(16)
_CHECK_BYTES = const(4)
_RECORD_BYTES = const(20)
_SLOTS = ("seq.a", "seq.b")
_RTC_FORMAT = ">IQI"  # generation, next number, check
_RTC_MAGIC = const(0x52535131)


def _checksum(body):
    return hashlib.sha256(body).digest()[:_CHECK_BYTES]


def _rtc_check(generation, nxt):
    return (generation ^ (nxt & 0xFFFFFFFF) ^ (nxt >> 32) ^ _RTC_MAGIC) & 0xFFFFFFFF


def encode_record(generation, reserved):
    body = struct.pack(_FORMAT, _MAGIC, generation, reserved)
    return body + _checksum(body)


def decode_record(raw):
    """(generation, reserved) of a valid record, or None for missing/torn/garbage."""
    if raw is None or len(raw) != _RECORD_BYTES:
        return None
    body = bytes(raw[:_BODY_BYTES])
    if _checksum(body) != bytes(raw[_BODY_BYTES:]):
        return None
    magic, generation, reserved = struct.unpack(_FORMAT, body)
    if magic != _MAGIC:
        return None
    return generation, reserved


class SeqCounter:
    def __init__(self, storage, block=_BLOCK, rtc=None):
        self._storage = storage
        self._rtc = rtc
        self._block = block
        self.writes = 0  # reservation writes that returned (for tests and stats)
        best = None
        best_slot = 1  # so that the first write goes to _SLOTS[0]
        for i in range(2):
            try:
                rec = decode_record(storage.read(_SLOTS[i]))
            except OSError:
                rec = None
            if rec is not None and (best is None or rec > best):
                best = rec
                best_slot = i
        if best is None:
            self._generation, self._reserved = 0, 0
        else:
            self._generation, self._reserved = best
        self._slot = best_slot  # slot holding the newest valid record
        self._next = self._reserved + 1  # skip the rest of the old block
        if rtc is not None:
            raw = rtc.read()
            if raw is not None and len(raw) == 16:
                generation, nxt, check = struct.unpack(_RTC_FORMAT, raw)
                if generation == self._generation and check == _rtc_check(generation, nxt) \
                        and nxt <= self._reserved + 1:
                    self._next = nxt  # numbers below it were handed out, none above

    def _remember(self):
        if self._rtc is not None:
            self._rtc.write(struct.pack(_RTC_FORMAT, self._generation, self._next,
                                        _rtc_check(self._generation, self._next)))

    @property
    def reserved(self):
        return self._reserved

    def peek(self):
        """The number next() will return."""
        return self._next

    def _reserve(self, upto):
        slot = 1 - self._slot
        generation = self._generation + 1
        # May raise (or be torn by a power cut): then nothing below runs, the
        # old record in the other slot stays the newest valid one and no number
        # beyond it is handed out.
        self._storage.write(_SLOTS[slot], encode_record(generation, upto))
        self._slot = slot
        self._generation = generation
        self._reserved = upto
        self.writes += 1

    def next(self):
        """Reserve (if needed) and return a fresh sequence number."""
        n = self._next
        if n > self._reserved:
            self._reserve(n + self._block - 1)
        self._next = n + 1
        self._remember()  # before n is used anywhere
        return n

    def resync(self, last_seq):
        """After an authenticated 4.09: continue past the server's last_seq."""
        if last_seq >= self._next:
            self._next = last_seq + 1
            self._remember()
