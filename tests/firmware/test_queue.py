"""The offline queue on MicroPython: FIFO across restarts, drop policy, power cuts."""

from devtools.mpy import run_snippet
from tests.firmware.test_counter import PRELUDE


def run(tmp_path, body):
    return run_snippet(PRELUDE + "from replenish.queue import Queue\n" + body,
                       tmp_path).stdout.split()


def test_fifo_survives_restart_and_one_write_per_event(tmp_path):
    out = run(tmp_path, r"""
flash = Flash()
q = Queue(flash, 4)
for seq in (5, 6, 7):
    q.push(1, 0, seq, b"ev%d" % seq)
print(flash.writes)
q = Queue(flash, 4)                       # reboot
e, data = q.oldest()
print(len(q), e.seq, data)
q.delivered(e)
q.commit()
q = Queue(flash, 4)                       # reboot: 5 delivered, 6 and 7 left, in order
print(len(q), [x.seq for x in q.entries()], flash.writes)
q.push(2, 1, 8, b"ev8")                   # reuses 5's page
q = Queue(flash, 4)
print([x.seq for x in q.entries()])
""")
    assert out == ["3", "3", "5", "b'ev5'", "2", "[6,", "7]", "4", "[6,", "7,", "8]"]


def test_full_queue_drops_level_reports_before_presses(tmp_path):
    out = run(tmp_path, r"""
flash = Flash()
q = Queue(flash, 3)
q.push(1, 0, 1, b"p1")
q.push(2, 0, 2, b"l2")
q.push(1, 0, 3, b"p3")
q.push(1, 0, 4, b"p4")                    # full: the level report goes
print([x.seq for x in q.entries()], q.dropped)
q.push(1, 0, 5, b"p5")                    # only presses: the oldest press goes
q = Queue(flash, 3)
print([x.seq for x in q.entries()], q.dropped, q.reported)
q.note_reported(2)
while q.oldest():
    q.delivered(q.oldest()[0])
q.commit()
q = Queue(flash, 3)
print(len(q), q.dropped, q.reported)
""")
    assert out == ["[1,", "3,", "4]", "1", "[3,", "4,", "5]", "2", "0", "0", "2", "2"]


def test_power_cut_at_every_write_step_never_corrupts_or_reuses(tmp_path):
    # A device's life: presses while offline (counter + queue writes), flushes that
    # deliver (head writes). Cut power at the k-th flash write, in every tear mode,
    # restart, go on. Afterwards: seqs never reused, each seq delivered (at least once on
    # the wire, and at most once as a *fresh* event: resends are byte-identical),
    # delivery in increasing seq order, every queued event whose write returned is
    # delivered, and nothing else.
    out = run(tmp_path, r"""
from replenish.counter import SeqCounter

def life(flash, log):
    # log: dict with "used" seqs, "kept" (push returned), "wire" delivered seqs+bytes
    boots = 0
    step = 0
    while step < 30:
        c = SeqCounter(flash, 8)
        q = Queue(flash, 4)
        boots += 1
        if boots > 60:
            raise Exception("no progress")
        try:
            while step < 30:
                if step % 5 == 4:                  # backend reachable: flush
                    while True:
                        head = q.oldest()
                        if head is None:
                            break
                        e, data = head
                        log["wire"].append((e.seq, data))
                        q.delivered(e)
                    q.commit()
                else:                              # offline press
                    seq = c.next()
                    log["used"].append(seq)
                    data = b"event-%d-" % seq + bytes(20)
                    q.push(1, 0, seq, data)
                    log["kept"].append(seq)
                step += 1
        except PowerCut:
            step += 1                              # the interrupted step is not retried
    q = Queue(flash, 4)
    while True:
        head = q.oldest()
        if head is None:
            break
        log["wire"].append((head[0].seq, head[1]))
        q.delivered(head[0])
    q.commit()

uncut = Flash()
life(uncut, {"used": [], "kept": [], "wire": []})
cases = 0
for mode in MODES:
    for cut in range(1, uncut.writes + 1):   # every write this life makes
        flash = Flash()
        flash.cut_at, flash.mode = cut, mode
        log = {"used": [], "kept": [], "wire": []}
        life(flash, log)
        assert flash.did_cut, ("no cut", mode, cut)
        used = log["used"]
        assert len(used) == len(set(used)), ("reused", mode, cut)
        fresh = []
        for seq, data in log["wire"]:
            assert data == b"event-%d-" % seq + bytes(20), ("corrupt", mode, cut)
            if seq not in fresh:
                fresh.append(seq)
        assert fresh == sorted(fresh), ("order", mode, cut, fresh)
        for seq in log["kept"]:
            assert seq in fresh, ("lost", mode, cut, seq)
        for seq in fresh:
            assert seq in log["used"], ("invented", mode, cut)
        # resends only of what a cut interrupted: each seq on the wire at most twice
        for seq in fresh:
            assert sum(1 for s, _ in log["wire"] if s == seq) <= 2, ("resent", mode, cut)
        cases += 1
print(uncut.writes, cases)
""")
    writes, cases = int(out[0]), int(out[1])
    assert writes >= 30  # counter, page and head writes of the whole life
    assert cases == 7 * writes


def test_head_in_rtc_memory_costs_no_flash_write(tmp_path):
    out = run(tmp_path, r"""
flash, rtc = Flash(), Rtc()
q = Queue(flash, 4, rtc=rtc)
for seq in (1, 2, 3):
    q.push(1, 0, seq, b"e%d" % seq)
while q.oldest():
    q.delivered(q.oldest()[0])
q.commit()
print(flash.writes)                       # three pages, no head write
print(len(Queue(flash, 4, rtc=rtc)))      # deep-sleep wake: nothing to resend
print([e.seq for e in Queue(flash, 4, rtc=Rtc()).entries()])  # power lost: sent once more
""")
    assert out == ["3", "0", "[1,", "2,", "3]"]


def test_dropped_count_reaches_the_backend_once(tmp_path):
    out = run(tmp_path, r"""
from replenish import cbor, cose, protocol
from replenish.counter import SeqCounter
from replenish.hmac_sha256 import HmacSha256
from replenish.identity import Identity
from replenish.sender import Sender

KEY = bytes(range(32))

class Peer:
    def __init__(self):
        self.mac, self.up, self.events = HmacSha256(KEY), False, []
    def request(self, code, path, payload=b"", content_format=None):
        if not self.up:
            raise OSError(110)
        event = cbor.decode(cose.verify(self.mac, payload)[0])
        self.events.append(event)
        answer = cbor.encode({1: event[1], 2: protocol.CHANGED})
        return protocol.CHANGED, 17, cose.create(self.mac, answer, None, payload[-32:])[0]

class Led:
    def show(self, name):
        pass

flash, peer = Flash(), Peer()
ident = Identity(b"\x01" * 8, KEY, "sensor", "h", 1, "0.2.0")
sender = Sender(ident, SeqCounter(flash), peer, Queue(flash, 2), None, Led())
for remaining in (900, 800, 700, 600):
    sender.send(protocol.KIND_LEVEL, 0, remaining=remaining)   # offline: 2 kept, 2 dropped
peer.up = True
sender = Sender(ident, SeqCounter(flash), peer, Queue(flash, 2), None, Led())  # reboot
done, failure = sender.flush()
print(len(done), failure, [e.get(5) for e in peer.events], peer.events[-1][2], peer.events[-1][8])
seqs = [e[1] for e in peer.events]
print(seqs == sorted(seqs))
sender = Sender(ident, SeqCounter(flash), peer, Queue(flash, 2), None, Led())  # reboot
sender.flush()
print(len(peer.events))                                   # reported once, not again
""")
    assert out == ["2", "None", "[700,", "600,", "None]", "3", "2", "True", "3"]


def test_records_commits_and_restarts_in_detail(tmp_path):
    """What the head and page records hold (docs/firmware.md), what commit() returns,
    RTC memory merged field by field, and restarts over torn or unreadable pages."""
    out = run(tmp_path, r"""
from replenish.queue import decode_head, decode_page, encode_head, encode_page, MAX_EVENT_BYTES
def show(*values):
    print(repr(values).replace(" ", ""))

# page and head records round-trip, and are refused one byte short or long
page = encode_page(2, 3, 70000, 123456, 9, b"event")
show(decode_page(page), decode_page(page[:-1]), decode_page(page + b"\0"))
head = encode_head(5, 70001, 4, 3)
show(decode_head(head), decode_head(head[:-1]), decode_head(head + b"\0"))

flash = Flash()
q = Queue(flash)                                  # default capacity 16
for seq in range(1, 18):
    q.push(1, 0, seq, b"p%d" % seq)
show(len(q), q.dropped, q.capacity)
q.push(1, 0, 18, bytes(MAX_EVENT_BYTES))          # the largest event is kept
try:
    q.push(1, 0, 19, bytes(MAX_EVENT_BYTES + 1))
except ValueError:
    show("too large")
show(q.commit())                                  # dropped changed: a head write
show(q.commit())                                  # nothing changed: no write
first, second = q.entries()[0], q.entries()[1]
q.delivered(second)                               # not the oldest: ignored
show(len(q), q.oldest()[0].seq)
q.delivered(first)
q.note_reported(2)
q.note_reported(1)                                # lower: ignored
show(q.reported, q.commit())
show(decode_head(flash.files["qh.a"]), decode_head(flash.files["qh.b"]))
q = Queue(flash)                                  # restart: the newer head wins
show(len(q), q.dropped, q.reported, q.oldest()[0].seq)

# RTC memory: each field is the larger of RTC and flash
f2 = Flash()
q = Queue(f2, 4)
for seq in (1, 2, 3):
    q.push(2, 0, seq, b"l%d" % seq)
q.commit()
show(Queue(f2, 4, rtc=Rtc(encode_head(0, 2, 7, 5))).entries()[0].seq,
     Queue(f2, 4, rtc=Rtc(encode_head(0, 2, 7, 5))).dropped,
     Queue(f2, 4, rtc=Rtc(encode_head(0, 2, 7, 5))).reported)
r = Rtc()
q = Queue(f2, 4, rtc=r)
q.delivered(q.oldest()[0])
show(q.commit(), decode_head(r.data), q.commit())

# a torn first page: the pages after it are still read
f3 = Flash()
q = Queue(f3, 4)
for seq in (1, 2, 3):
    q.push(1, 0, seq, b"e%d" % seq)
f3.files["q.0"] = bytes(len(f3.files["q.0"]))
show([e.seq for e in Queue(f3, 4).entries()])
# a page that goes bad after the start is skipped when its turn comes
q = Queue(f3, 4)
f3.files["q.1"] = f3.files["q.2"]                 # position no longer the one expected
show(q.oldest()[0].seq)

class Unreadable(Flash):
    def read(self, name):
        if name == "q.1":
            raise OSError(5)
        return Flash.read(self, name)
f4 = Unreadable()
q = Queue(f4, 4)
for seq in (1, 2, 3):
    q.push(1, 0, seq, b"u%d" % seq)
show([e.seq for e in Queue(f4, 4).entries()])
""")
    assert out == [
        "((2,3,70000,123456,9,b'event'),None,None)",
        "((5,70001,4,3),None,None)",
        "(16,1,16)",
        "('toolarge',)",
        "(True,)",
        "(False,)",
        "(16,3)",
        "(2,True)",
        "((1,2,2,0),(2,3,2,2))",
        "(15,2,2,4)",
        "(3,7,5)",
        "(True,(0,1,0,0),False)",
        "([2,3],)",
        "(3,)",
        "([1,3],)",
    ]


def test_record_layout_and_records_only_a_checksum_or_magic_can_refuse(tmp_path):
    """Pages and heads byte for byte as docs/firmware.md lays them out (built here with
    struct and hashlib, not by the module), and records whose checksum matches but whose
    magic, length field or size is wrong: refused, never unpacked."""
    out = run(tmp_path, r"""
import hashlib, struct
from replenish.queue import decode_head, decode_page, encode_head, encode_page
def sealed(body):
    return body + hashlib.sha256(body).digest()[:4]
def show(*values):
    print(repr(values).replace(" ", ""))

page = sealed(struct.pack(">2sBBIIIH", b"RQ", 2, 3, 70000, 123456, 9, 5) + b"event")
head = sealed(struct.pack(">4sIIII", b"RQH1", 5, 70001, 4, 3))
show(encode_page(2, 3, 70000, 123456, 9, b"event") == page,
     encode_head(5, 70001, 4, 3) == head)
show(decode_page(sealed(struct.pack(">2sBBIIIH", b"RQ", 1, 0, 0, 1, 0, 0))))  # empty event
show(decode_page(sealed(struct.pack(">2sBBIIIH", b"XX", 1, 0, 0, 1, 0, 5) + b"event")),
     decode_page(sealed(struct.pack(">2sBBIIIH", b"AA", 1, 0, 0, 1, 0, 5) + b"event")),
     decode_page(sealed(struct.pack(">2sBBIIIH", b"RQ", 1, 0, 0, 1, 0, 4) + b"event")),
     decode_page(sealed(struct.pack(">2sBBIIIH", b"RQ", 1, 0, 0, 1, 0, 6) + b"event")),
     decode_page(sealed(b"RQ")), decode_page(sealed(bytes(17))))
show(decode_head(sealed(struct.pack(">4sIIII", b"ZZZZ", 5, 1, 0, 0))),
     decode_head(sealed(struct.pack(">4sIIII", b"AAAA", 5, 1, 0, 0))),
     decode_head(head[:-4] + bytes(4)), decode_head(head[:-4] + b"\xff" * 4))
q = Queue(Flash(), 2)
q.push(1, 0, 1, bytes(512))                 # a whole protocol message (512 bytes at most)
try:
    q.push(1, 0, 2, bytes(513))
except ValueError:
    show(len(q))
""")
    assert out == ["(True,True)", "((1,0,0,1,0,b''),)",
                   "(None,None,None,None,None,None)", "(None,None,None,None)", "(1,)"]


def test_positions_only_grow_across_restarts_and_reused_pages(tmp_path):
    """The next position after a restart is one past the largest on any page, whatever
    the page order; and a boot event is dropped before presses like a level report."""
    out = run(tmp_path, r"""
flash = Flash()
def restart_and_push(seq):
    q = Queue(flash, 4)
    q.push(1, 0, seq, b"e%d" % seq)
    print(repr([(e.position, e.page) for e in q.entries()]).replace(" ", ""))
    return q
q = Queue(flash, 4)
q.push(1, 0, 1, b"e1")
restart_and_push(2)                         # one page, at the head position
restart_and_push(3)
q = restart_and_push(4)
q.delivered(q.oldest()[0])
q.delivered(q.oldest()[0])
q.commit()
q.push(1, 0, 5, b"e5")                      # page 0 again, position 4
restart_and_push(6)                         # pages no longer in position order

f2 = Flash()
q = Queue(f2, 3)
q.push(1, 0, 1, b"p1")
q.push(0, 0, 2, b"b2")                      # a boot event (kind 0)
q.push(1, 0, 3, b"p3")
q.push(1, 0, 4, b"p4")                      # full: the boot event goes
print(repr([e.seq for e in q.entries()]).replace(" ", ""))

f3 = Flash()                                # a page found holding an older position
q = Queue(f3, 4)
for seq in (1, 2, 3):
    q.push(1, 0, seq, b"e%d" % seq)
q.delivered(q.oldest()[0])
f3.files["q.1"] = f3.files["q.0"]
print(repr(q.oldest()[0].seq))              # not the event that was delivered
""")
    assert out == ["[(0,0),(1,1)]", "[(0,0),(1,1),(2,2)]", "[(0,0),(1,1),(2,2),(3,3)]",
                   "[(2,2),(3,3),(4,0),(5,1)]", "[1,3,4]", "3"]


def test_a_restart_takes_generation_dropped_and_reported_from_the_head(tmp_path):
    out = run(tmp_path, r"""
from replenish.queue import decode_head, encode_head
flash = Flash()
flash.files["qh.a"] = encode_head(6, 0, 7, 3)
q = Queue(flash, 4)
print(len(q), q.dropped, q.reported)
q.push(1, 0, 1, b"e1")
q.delivered(q.oldest()[0])
print(q.commit(), decode_head(flash.files["qh.b"]))
""")
    assert out == ["0", "7", "3", "True", "(7,", "1,", "7,", "3)"]
