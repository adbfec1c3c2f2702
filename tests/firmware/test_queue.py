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
class Rtc:
    data = None
    def read(self):
        return self.data
    def write(self, data):
        self.data = bytes(data)
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
