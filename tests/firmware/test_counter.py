"""The persisted sequence counter, on MicroPython: numbers are never reused."""

from devtools.mpy import run_snippet

PRELUDE = r"""
from replenish.counter import SeqCounter, decode_record

class PowerCut(Exception):
    pass

class Rtc:
    # RTC memory: survives deep sleep, not a power cut.
    def __init__(self, data=None):
        self.data = data
    def read(self):
        return self.data
    def write(self, data):
        self.data = bytes(data)

MODES = ("none", "half", "garbage", "flipped", "after", "mixed8", "mixedhalf")

class Flash:
    # Dict-backed storage that can tear the k-th write (counting from 1):
    #   none       nothing written (the old content stays)
    #   half       the first half written, the record cut short
    #   garbage    zeros of the right length
    #   after      written in full, then the power went
    # and tears that keep the length and the magic, so that only the checksum can tell:
    #   flipped    one bit of the body flipped (the byte before the checksum)
    #   mixed8     the first 8 bytes new (magic, generation or position), the rest
    #              still the old record there (or erased, 0xff, where there was none)
    #   mixedhalf  the first half new, the rest old (or erased)
    def __init__(self):
        self.files = {}
        self.writes = 0
        self.cut_at = None
        self.mode = None
        self.did_cut = False

    def read(self, name):
        return self.files.get(name)

    def write(self, name, data):
        self.writes += 1
        if self.writes == self.cut_at:
            self.did_cut = True
            data = bytes(data)
            old = self.files.get(name)
            if old is None or len(old) != len(data):
                old = b"\xff" * len(data)
            if self.mode == "half":
                self.files[name] = data[:len(data) // 2]
            elif self.mode == "garbage":
                self.files[name] = bytes(len(data))
            elif self.mode == "flipped":
                self.files[name] = data[:-5] + bytes([data[-5] ^ 1]) + data[-4:]
            elif self.mode == "after":
                self.files[name] = data
            elif self.mode == "mixed8":
                self.files[name] = data[:8] + old[8:]
            elif self.mode == "mixedhalf":
                self.files[name] = data[:len(data) // 2] + old[len(data) // 2:]
            raise PowerCut()
        self.files[name] = bytes(data)
"""


def run(tmp_path, body):
    result = run_snippet(PRELUDE + body, tmp_path)
    return result.stdout.split()


def test_restarts_never_reuse_and_one_write_per_block(tmp_path):
    out = run(tmp_path, r"""
flash = Flash()
used = []
for boot in range(7):
    c = SeqCounter(flash)
    for i in range(boot * 13 % 40):  # 0..39 events per boot, across block borders
        used.append(c.next())
assert len(used) == len(set(used)), "reused"
assert used == sorted(used), "not increasing"
print(len(used), flash.writes)
c = SeqCounter(flash)
w = flash.writes
for i in range(320):
    c.next()
print(flash.writes - w)
""")
    n_used, n_writes = int(out[0]), int(out[1])
    assert n_used > 64
    assert n_writes <= 7 + n_used // 32 + 1  # one per boot that used numbers + one per block
    assert out[2] == "10"  # exactly one write per 32 events


def test_power_cut_at_every_write_never_reuses(tmp_path):
    """A life of 300 numbers with restarts, cut at each of its flash writes (counted
    from an uncut run of the same life) in every tear mode; each case did cut."""
    out = run(tmp_path, r"""
def life(flash):
    used = []
    c = SeqCounter(flash)
    while len(used) < 300:
        try:
            used.append(c.next())
        except PowerCut:
            c = SeqCounter(flash)  # restart after the cut
        if len(used) % 23 == 22:
            c = SeqCounter(flash)  # ordinary restarts too
    return used

uncut = Flash()
life(uncut)
cases = 0
for mode in MODES:
    for cut in range(1, uncut.writes + 1):
        flash = Flash()
        flash.cut_at, flash.mode = cut, mode
        used = life(flash)
        assert flash.did_cut, (mode, cut)
        assert len(used) == len(set(used)), (mode, cut, used)
        assert used == sorted(used), (mode, cut)
        # both records never torn at once: at least one decodes
        valid = [decode_record(flash.files.get(n)) for n in ("seq.a", "seq.b")]
        assert any(valid), (mode, cut)
        cases += 1
print(uncut.writes, cases)
""")
    writes, cases = int(out[0]), int(out[1])
    assert writes >= 8  # both records rewritten several times
    assert cases == 7 * writes


def test_torn_record_is_ignored_and_other_record_used(tmp_path):
    out = run(tmp_path, r"""
flash = Flash()
c = SeqCounter(flash)
for i in range(32):
    last = c.next()           # reservation 32 in seq.a
flash.cut_at, flash.mode = flash.writes + 1, "half"
try:
    c.next()                  # needs reservation 64: the write into seq.b is torn
    print("handed-out")
except PowerCut:
    pass
print(len(flash.files["seq.b"]), decode_record(flash.files["seq.b"]))
c = SeqCounter(flash)
print(last, c.peek(), c.next())
""")
    assert out == ["10", "None", "32", "33", "33"]  # 33 was never handed out before


def test_resync_past_last_seq(tmp_path):
    out = run(tmp_path, r"""
flash = Flash()
c = SeqCounter(flash)
print(c.next())
w = flash.writes
c.resync(500)
n = c.next()
print(n, flash.writes - w)
c.resync(10)               # lower than what we have: no change
print(c.next())
c = SeqCounter(flash)      # restart: never back to <= 501
print(c.next())
""")
    assert out == ["1", "501", "1", "502", "533"]


def test_record_format_generations_and_counts(tmp_path):
    """What the records hold (docs/protocol.md: alternate slots, generation + 1 per
    write), the writes count, `reserved`, and a read error taken as a missing record."""
    out = run(tmp_path, r"""
from replenish.counter import encode_record
import hashlib, struct
flash = Flash()
c = SeqCounter(flash)
seen = []
for i in range(97):
    c.next()
    seen.append((decode_record(flash.files.get("seq.a")), decode_record(flash.files.get("seq.b"))))
print(seen[0], seen[32], seen[64], c.writes, c.reserved, flash.writes)
# a record with a good checksum but another magic (above or below ours) is not ours
for magic in (b"XSQ1", b"ASQ1"):
    body = struct.pack(">4sIQ", magic, 9, 5000)
    print(decode_record(body + hashlib.sha256(body).digest()[:4]))
print(decode_record(encode_record(4, 128) + b"\x00"), decode_record(encode_record(4, 128)[:19]))

class Broken(Flash):
    def read(self, name):
        raise OSError(5)
b = Broken()
print(SeqCounter(b).next(), decode_record(b.files["seq.a"]))
""")
    assert out == ["((1,", "32),", "None)", "((1,", "32),", "(2,", "64))", "((3,", "96),", "(2,",
                   "64))", "4", "128", "4", "None", "None", "None", "None", "1", "(1,",
                   "32)"]


def test_resync_to_odd_and_even_numbers_and_to_the_next_one(tmp_path):
    """resync to exactly the number next() would give, and to odd and even numbers:
    never a number the server has, and a restart continues past the reservation."""
    out = run(tmp_path, r"""
flash = Flash()
c = SeqCounter(flash)
c.next()
c.resync(c.peek())          # the server has what next() would give: skip it
print(c.next())
c.resync(501)               # odd
print(c.next(), c.reserved)
c = SeqCounter(flash)       # restart
print(c.next())
c.resync(c.peek() + 9)      # even target, odd next: the reservation is odd
print(c.next(), c.reserved)
c = SeqCounter(flash)
print(c.next())
""")
    assert out == ["3", "502", "533", "534", "545", "565", "566"]


def test_rtc_record_continues_the_block_and_any_damaged_bit_is_ignored(tmp_path):
    """The RTC record lets a wake continue inside the current block; a record with any
    one bit flipped (a lower number most of all: it would reuse numbers) is ignored and
    the counter skips to the next block, as after a power cut."""
    out = run(tmp_path, r"""
flash, rtc = Flash(), Rtc()
c = SeqCounter(flash, rtc=rtc)
print(",".join(str(c.next()) for _ in range(5)), c.writes)  # one write: up to 32
good = rtc.data

def woken(record):
    # The next number after a wake with `record` in RTC memory, on a copy of the flash
    # (a wake that skips the block writes a new reservation).
    copy = Flash()
    copy.files = dict(flash.files)
    return SeqCounter(copy, rtc=Rtc(record)).next()

print(woken(good))  # the wake goes on at 6
ignored = 0
for bit in range(len(good) * 8):
    bad = bytearray(good)
    bad[bit // 8] ^= 1 << (bit % 8)
    ignored += woken(bytes(bad)) == 33
print(ignored)
print(woken(good[:15]), woken(None))  # cut short; power cut: RTC memory empty
print(woken(good + bytes(1)))  # too long

# Records with a valid check: only one of this reservation's generation, for a number
# it covers, is believed.
import struct
from replenish.counter import _rtc_check
def record(generation, nxt):
    return struct.pack(">IQI", generation, nxt, _rtc_check(generation, nxt))
print(woken(record(1, 32)), woken(record(1, 34)), woken(record(2, 5)), woken(record(0, 5)))
from replenish.counter import encode_record
flash.files = {"seq.a": encode_record(1, 33)}  # an odd reservation (after a resync)
print(woken(record(1, 33)))  # its last number
""")
    assert out == ["1,2,3,4,5", "1", "6", "128", "33", "33", "33", "32", "33", "33", "33",
                   "33"]


def test_rtc_records_written_by_this_firmware_are_read_by_the_next(tmp_path):
    """The RTC record's layout, pinned: generation, next number (64 bits), and the check
    (generation ^ low word ^ high word ^ 0x52535131). A device updated over the air wakes
    with the old firmware's record in RTC memory; another layout would skip a block."""
    out = run(tmp_path, r"""
from replenish.counter import encode_record
import binascii
for reserved, record in ((32, "00000001000000000000000552535135"),
                         (0x100000020, "00000001000000010000000552535134"),
                         (0xADACAEEF, "0000000100000000adacaecfffffffff")):  # check all ones
    flash = Flash()
    flash.files["seq.a"] = encode_record(1, reserved)
    rtc = Rtc(binascii.unhexlify(record))
    n = SeqCounter(flash, rtc=rtc).next()
    print(hex(n), binascii.hexlify(rtc.data).decode())  # and the record it leaves
""")
    assert out == ["0x5", "00000001000000000000000652535136",
                   "0x100000005", "00000001000000010000000652535137",
                   "0xadacaecf", "0000000100000000adacaed0ffffffe0"]
