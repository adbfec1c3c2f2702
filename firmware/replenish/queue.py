"""Offline event queue: a bounded FIFO of signed events in flash (docs/firmware.md).

Events that got no authenticated answer are kept here, byte for byte (same seq and
tag), and sent again oldest first when the backend answers again; the backend answers
a retransmission with its stored answer, so each event counts once.

Layout: `_CAPACITY` page records "q.0" .. "q.N-1", each holding one event with its
queue position (a number that only grows) and a checksum; order is by position, not
by page. One head record, alternately "qh.a"/"qh.b" with a generation (as the
sequence counter), says which positions were delivered and how many events were
dropped. Flash writes: one page per queued event, one head record per flush; with
RTC memory (an ESP32 in deep sleep) the head record goes there instead, so a queued
press costs one flash write. After a power loss that erased RTC memory, the events
delivered since the last flash head record are sent once more and answered as
retransmissions (same answer, no second order).

Power cuts: a torn page fails its checksum and is a free page (the event it was
receiving was never queued); a torn head record leaves the other one, whose older head
only makes delivered events be sent again (answered as retransmissions). Nothing
reads past a record's checksum, so the queue is never corrupt.

Full queue policy: the oldest non-press event (level, status, boot) is dropped first,
the oldest press only when the queue holds nothing but presses. The dropped count
is kept (cumulative) and reported to the backend in a status event (key 8).
"""

import hashlib
import struct

from micropython import const

_CAPACITY = const(16)
_PAGE_MAGIC = b"RQ"
_PAGE_FORMAT = ">2sBBIIIH"  # magic, kind, slot, position, seq, dropped, length
_PAGE_HEADER = const(18)
_CHECK = const(4)
_HEAD_MAGIC = b"RQH1"
_HEAD_FORMAT = ">4sIIII"  # magic, generation, head position, dropped, dropped reported
_HEAD_BYTES = const(20)
_HEADS = ("qh.a", "qh.b")
_KIND_PRESS = const(1)
MAX_EVENT_BYTES = const(512)


def _check(body):
    return hashlib.sha256(body).digest()[:_CHECK]


def _page_name(page):
    return "q.%d" % page


def encode_page(kind, slot, position, seq, dropped, event):
    body = struct.pack(_PAGE_FORMAT, _PAGE_MAGIC, kind, slot, position, seq, dropped,
                       len(event)) + event
    return body + _check(body)


def decode_page(raw):
    """(kind, slot, position, seq, dropped, event) of a valid page, else None."""
    if raw is None or len(raw) < _PAGE_HEADER + _CHECK:
        return None
    body = memoryview(raw)[:-_CHECK]  # no copies of the page until the event itself
    if _check(body) != raw[-_CHECK:]:
        return None
    magic, kind, slot, position, seq, dropped, length = struct.unpack(
        _PAGE_FORMAT, body[:_PAGE_HEADER])
    if magic != _PAGE_MAGIC or length != len(body) - _PAGE_HEADER:
        return None
    return kind, slot, position, seq, dropped, bytes(body[_PAGE_HEADER:])


def encode_head(generation, head, dropped, reported):
    body = struct.pack(_HEAD_FORMAT, _HEAD_MAGIC, generation, head, dropped, reported)
    return body + _check(body)


def decode_head(raw):
    if raw is None or len(raw) != _HEAD_BYTES + _CHECK:
        return None
    body = bytes(raw[:_HEAD_BYTES])
    if _check(body) != bytes(raw[_HEAD_BYTES:]):
        return None
    magic, generation, head, dropped, reported = struct.unpack(_HEAD_FORMAT, body)
    if magic != _HEAD_MAGIC:
        return None
    return generation, head, dropped, reported


class Entry:
    __slots__ = ("kind", "slot", "position", "seq", "page")

    def __init__(self, kind, slot, position, seq, page):
        self.kind = kind
        self.slot = slot
        self.position = position
        self.seq = seq
        self.page = page


class Queue:
    def __init__(self, storage, capacity=_CAPACITY, rtc=None):
        self._storage = storage
        self._rtc = rtc
        self.capacity = capacity
        best = None
        self._head_slot = 1
        for i in range(2):
            rec = decode_head(self._read(_HEADS[i]))
            if rec is not None and (best is None or rec[0] > best[0]):
                best = rec
                self._head_slot = i
        if best is None:
            best = (0, 0, 0, 0)
        self._generation = best[0]
        self._head = best[1]
        self.dropped = best[2]
        self.reported = best[3]
        if rtc is not None:  # newer than flash unless power was lost: every field only grows
            rec = decode_head(rtc.read())
            if rec is not None:
                self._head = max(self._head, rec[1])
                self.dropped = max(self.dropped, rec[2])
                self.reported = max(self.reported, rec[3])
        self._committed = (self._head, self.dropped, self.reported)
        self._entries = []  # live entries, oldest first
        tail = self._head
        for page in range(capacity):
            rec = decode_page(self._read(_page_name(page)))
            if rec is None:
                continue
            kind, slot, position, seq, dropped, _event = rec
            if dropped > self.dropped:
                self.dropped = dropped
            if position + 1 > tail:
                tail = position + 1
            if position >= self._head:
                self._entries.append(Entry(kind, slot, position, seq, page))
        self._entries.sort(key=lambda e: e.position)
        self._tail = tail

    def _read(self, name):
        try:
            return self._storage.read(name)
        except OSError:
            return None

    def __len__(self):
        return len(self._entries)

    def entries(self):
        return list(self._entries)

    def _free_page(self):
        used = [e.page for e in self._entries]
        for page in range(self.capacity):
            if page not in used:
                return page
        return -1

    def _victim(self):
        for e in self._entries:
            if e.kind != _KIND_PRESS:
                return e
        return self._entries[0]

    def push(self, kind, slot, seq, event):
        """Keep a signed event (one page write); drop by policy when full."""
        if len(event) > MAX_EVENT_BYTES:
            raise ValueError("event too large")
        victim = None
        if len(self._entries) >= self.capacity:
            victim = self._victim()
            page = victim.page
        else:
            page = self._free_page()
        dropped = self.dropped + (1 if victim is not None else 0)
        position = self._tail
        # A cut here leaves a torn page: free at the next start, nothing else touched.
        self._storage.write(_page_name(page), encode_page(kind, slot, position, seq,
                                                          dropped, event))
        if victim is not None:
            self._entries.remove(victim)
        self.dropped = dropped
        self._tail = position + 1
        self._entries.append(Entry(kind, slot, position, seq, page))

    def oldest(self):
        """(Entry, event bytes) of the oldest queued event, or None."""
        while self._entries:
            entry = self._entries[0]
            rec = decode_page(self._read(_page_name(entry.page)))
            if rec is not None and rec[2] == entry.position:
                return entry, rec[5]
            self._entries.pop(0)  # the page went bad since start: nothing to send
        return None

    def delivered(self, entry):
        """The oldest entry got its answer; persisted by commit()."""
        if self._entries and self._entries[0] is entry:
            self._entries.pop(0)
            self._head = entry.position + 1

    def note_reported(self, dropped):
        if dropped > self.reported:
            self.reported = dropped

    def commit(self):
        """Persist the head if anything changed: RTC memory, else one flash write."""
        if self._entries:
            head = self._entries[0].position
        else:
            head = self._tail
        if head < self._head:
            head = self._head
        state = (head, self.dropped, self.reported)
        if state == self._committed:
            return False
        if self._rtc is not None:
            self._rtc.write(encode_head(0, head, self.dropped, self.reported))
            self._head = head
            self._committed = state
            return True
        slot = 1 - self._head_slot
        generation = self._generation + 1
        self._storage.write(_HEADS[slot], encode_head(generation, head, self.dropped,
                                                      self.reported))
        self._head_slot = slot
        self._generation = generation
        self._head = head
        self._committed = state
        return True
