"""Hostile input for every decoder of untrusted bytes, seeded and counted.

Inputs are mutations of valid messages (bit flips, "interesting" bytes such as CBOR
heads that claim huge lengths or indefinite items, truncation, insertion, splicing,
length inflation) plus plain random bytes. Each decoder must either decode or raise
its documented exception, within a bounded time and memory:

| decoder | code | documented exceptions |
|---------|------|-----------------------|
| coap_message | aiocoap `Message.decode` + the options the server reads | `aiocoap.error.UnparsableMessage` (then aiocoap drops or resets) |
| cose_mac0 | `backend.protocol.parse_signed_event` | `MalformedEvent` |
| event_map | `backend.protocol.decode_event` | `MalformedEvent` |
| answer | `backend.protocol.decode_answer` (the device's side, on CPython) | `MalformedEvent` |
| fw_coap, fw_cbor, fw_cose, fw_answer | firmware/replenish/{coap,cbor,cose,protocol}.py on the MicroPython unix port | `ValueError` (`cose.CoseError` is one) |

`make faults` also sends hostile datagrams at the running backend while it is under
load and being killed (`LiveHostility`, counted as `live_server`): the server must
send back fewer bytes than it got, and store nothing of it.

Property-based tests with hypothesis over the same decoders (and the live server)
are in tests/backend/test_fuzz_protocol.py, tests/firmware/test_fuzz.py; this module is what `make faults` runs and counts.
"""

from __future__ import annotations

import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import aiocoap
import aiocoap.error

from backend import protocol
from backend.errors import MalformedEvent
from backend.protocol import Answer, Event, Kind, Result
from devtools.bench import coapwire

ROOT = Path(__file__).resolve().parents[2]
FUZZ_SCRIPT = ROOT / "devtools" / "mpy_scripts" / "fuzz_codecs.py"
MAX_INPUT_BYTES = 1400  # what one UDP datagram on Ethernet carries, about
MPY_HEAP = "160K"  # an ESP32 has roughly this much heap free for the application
_INTERESTING = [0x00, 0x01, 0x17, 0x18, 0x1b, 0x1f, 0x3b, 0x5b, 0x5f, 0x7b, 0x7f, 0x9b,
                0x9f, 0xbb, 0xbf, 0xc0, 0xd1, 0xdb, 0xf4, 0xf7, 0xf9, 0xfb, 0xff, 0x80,
                0x40, 0x4f, 0xd0, 0xe0, 0xee, 0xf0]

KEY = bytes(range(32))
KID = bytes.fromhex("0102030405060708")


def samples() -> list[bytes]:
    """Valid messages of each kind the decoders see: the seeds of the mutations."""
    events = [protocol.encode_event(KEY, KID, Event(seq=seq, kind=kind, slot=1, qty=2,
                                                    remaining=7, battery_mv=3000, fw="1.0"))
              for seq, kind in ((1, Kind.PRESS), (2**40, Kind.LEVEL), (3, Kind.STATUS))]
    tag = events[0][-protocol.TAG_BYTES:]
    answers = [protocol.encode_answer(KEY, tag, Answer(seq=1, result=Result.CREATED,
                                                       order=42, state="pending")),
               protocol.encode_answer(KEY, tag, Answer(seq=1, result=Result.CONFLICT,
                                                       last_seq=9))]
    payloads = [e[e.index(b"\x58") + 2:][:20] for e in events]  # parts of event maps
    prefix = coapwire.post_prefix()
    datagrams = [coapwire.encode_con_post(0x1234, b"\x01\x02\x03\x04", prefix, e)
                 for e in events[:2]]
    datagrams.append(coapwire.encode_empty_ack(7))
    return events + answers + payloads + datagrams


def mutate(rng: random.Random, data: bytes, pool: list[bytes]) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        choice = rng.randrange(8)
        pos = rng.randrange(len(out) + 1)
        if choice == 0 and out:
            out[pos % len(out)] ^= 1 << rng.randrange(8)
        elif choice == 1 and out:
            out[pos % len(out)] = rng.choice(_INTERESTING)
        elif choice == 2:
            del out[pos:]
        elif choice == 3:
            out[pos:pos] = rng.randbytes(rng.randint(1, 16))
        elif choice == 4:
            other = rng.choice(pool)
            start = rng.randrange(len(other) + 1)
            out[pos:pos] = other[start:start + rng.randint(1, 64)]
        elif choice == 5 and out:
            out[pos % len(out):pos % len(out) + 1] = bytes(
                [rng.choice((0x1b, 0x5b, 0x7b, 0x9b, 0xbb))]) + b"\xff" * 8
        elif choice == 6:
            out[pos:pos] = bytes([rng.choice((0x9f, 0xbf, 0x81, 0xa1, 0xd1))]) * rng.randint(1, 200)
        else:
            out = bytearray(rng.randbytes(rng.randint(0, 64)))
    return bytes(out[:MAX_INPUT_BYTES])


def inputs(count: int, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    pool = samples()
    return [mutate(rng, rng.choice(pool), pool) for _ in range(count)]


def _coap_message(data: bytes) -> None:
    message = aiocoap.Message.decode(data)
    # What aiocoap and our resources read from a request (option values decode lazily).
    message.opt.uri_path, message.opt.content_format, message.opt.uri_query
    message.opt.block2, message.opt.max_age, message.opt.accept, len(message.payload)


BACKEND_DECODERS = {
    "coap_message": (_coap_message, (aiocoap.error.UnparsableMessage,)),
    "cose_mac0": (protocol.parse_signed_event, (MalformedEvent,)),
    "event_map": (protocol.decode_event, (MalformedEvent,)),
    "answer": (lambda data: protocol.decode_answer(KEY, b"\x00" * 32, data), (MalformedEvent,)),
}

# Known and documented (docs/security.md), counted apart from findings:
# - aiocoap's Message.decode raises UnicodeDecodeError (not UnparsableMessage) for a
#   Uri-Path or Uri-Query that is not UTF-8: its UDP transport drops the datagram
#   unanswered and asyncio logs a traceback for each one (log volume, not a crash).
KNOWN = {
    "coap_message": (UnicodeDecodeError,),
}


def run_backend(batch: list[bytes]) -> tuple[dict, list[str], dict]:
    """Every input through every backend decoder; (counts, findings, known)."""
    counts, findings, known = {}, [], {}
    for name, (decode, allowed) in BACKEND_DECODERS.items():
        for data in batch:
            try:
                decode(data)
            except allowed:
                pass
            except KNOWN.get(name, ()):
                known[name] = known.get(name, 0) + 1
            except Exception as err:  # a finding: an undocumented exception
                findings.append(f"{name}: {type(err).__name__}: {err} on {data.hex()}")
        counts[name] = len(batch)
    return counts, findings, known


def run_firmware(batch: list[bytes], timeout_s: float = 120) -> tuple[dict, list[str], dict]:
    """Every input through the firmware codecs in ONE MicroPython process (heap capped
    at MPY_HEAP); (counts, findings, memory figures)."""
    from devtools.unix_device import micropython_binary

    with tempfile.NamedTemporaryFile("w", suffix=".hex", delete=False) as f:
        f.write("".join(data.hex() + "\n" for data in batch))
        path = f.name
    try:
        done = subprocess.run(
            [micropython_binary(), "-X", f"heapsize={MPY_HEAP}", str(FUZZ_SCRIPT), path],
            cwd=ROOT, env={"MICROPYPATH": f"{ROOT / 'firmware'}:.frozen"},
            capture_output=True, text=True, timeout=timeout_s)
    finally:
        Path(path).unlink()
    counts, findings, memory = {}, [], {}
    for line in done.stdout.splitlines():
        word, _, rest = line.partition(" ")
        if word == "COUNT":
            name, n = rest.split()
            counts[name] = int(n)
        elif word == "FINDING":
            findings.append(rest)
        elif word == "MEM":
            key, value = rest.split()
            memory[key] = int(value)
    if done.returncode != 0:
        findings.append(f"micropython exited {done.returncode}: {done.stderr[-500:]}")
    return counts, findings, memory


def run_hostile(per_decoder: int, seed: int) -> dict:
    """`make faults`' hostile-input pass: counts per decoder, findings, timing."""
    batch = inputs(per_decoder, seed)
    started = time.monotonic()
    counts, findings, known = run_backend(batch)
    fw_counts, fw_findings, memory = run_firmware(batch)
    counts.update(fw_counts)
    for finding in findings + fw_findings:
        print(f"hostile input finding: {finding}", file=sys.stderr)
    return {"per_decoder": counts, "findings": len(findings) + len(fw_findings),
            "known": known, "seconds": round(time.monotonic() - started, 1),
            "mpy_memory": memory}


class LiveHostility(threading.Thread):
    """Hostile datagrams at a running server while it is under load and being killed:
    half well-formed POSTs to /ev carrying mutated events, half mutated datagrams of
    any kind. Paced; never acknowledges anything (a forged source would not). Counts
    what was sent and the bytes each way."""

    def __init__(self, port: int, count: int, seed: int, per_s: float = 200.0):
        super().__init__(name="hostile-live", daemon=True)
        rng = random.Random(seed)
        pool = samples()
        prefix = coapwire.post_prefix()
        self.datagrams = [
            coapwire.encode_con_post(n & 0xFFFF, rng.randbytes(rng.randint(0, 8)), prefix,
                                     mutate(rng, rng.choice(pool), pool)[:512])
            if n % 2 else mutate(rng, rng.choice(pool), pool)
            for n in range(count)]
        self.port, self.per_s = port, per_s
        self.bytes_in = self.bytes_out = 0

    def run(self) -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind(("127.0.0.1", 0))
            sock.setblocking(False)
            for n, datagram in enumerate(self.datagrams):
                try:
                    sock.sendto(datagram, ("127.0.0.1", self.port))
                except OSError:
                    pass  # the server is being restarted: lost like any datagram
                self.bytes_in += len(datagram)
                self._drain(sock)
                time.sleep(1 / self.per_s)
            deadline = time.monotonic() + 5.0  # late (separate) answers
            while time.monotonic() < deadline:
                self._drain(sock)
                time.sleep(0.05)

    def _drain(self, sock) -> None:
        for _ in range(1000):
            try:
                self.bytes_out += len(sock.recv(65536))
            except (BlockingIOError, ConnectionRefusedError):
                return
