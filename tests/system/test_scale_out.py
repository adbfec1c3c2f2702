"""Several ingest processes on one CoAP port (SO_REUSEPORT) and one database.

Three `replenish run --role ingest` processes bind the same UDP port; the kernel
spreads devices over them by source address. On SQLite (one machine) and on
PostgreSQL (what a deployment over several hosts behind a UDP load balancer uses):

- every event from 48 devices, each on its own source port, is answered, checked
  (MAC, seq, result) and recorded once, and more than one process committed events;
- the same event sent again from many other source ports (so: other processes) gets
  the answer that was committed, and a different event reusing its seq is refused:
  replay state and answers live in the database, not in a process.
"""

import os
import re
import secrets
import subprocess
import sys
import threading
import time
from pathlib import Path

import aiocoap

from backend import protocol
from backend.protocol import Kind, Result, WireEvent
from devtools.bench.fleet import provision_fleet
from devtools.bench.loadgen import Workload
from devtools.net import coap_post_each_from_own_port
from tests.devtools.test_bench_loadgen import drive
from tests.worker_helpers import events_and_orders

ROOT = Path(__file__).resolve().parents[2]
PROCESSES, DEVICES, PRESSES = 3, 48, 5
LISTENING = re.compile(r"CoAP ingest listening on udp [\d.]+:(\d+)")


class IngestProcess:
    """`replenish run --role ingest` with its log lines collected."""

    def __init__(self, env: dict, port: int):
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "backend", "run", "--role", "ingest",
             "--coap-port", str(port)],
            cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE, text=True)
        self.port_seen = threading.Event()
        self.port = None
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for line in self.proc.stderr:
            self.lines.append(line)
            if match := LISTENING.search(line):
                self.port = int(match.group(1))
                self.port_seen.set()

    def committed(self) -> int:
        """Events this process's writer committed (from its "committed N events" lines)."""
        return sum(int(m.group(1)) for line in self.lines
                   if (m := re.search(r"committed (\d+) events", line)))

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        self._reader.join(10)


def _start_all(settings, kek: bytes) -> list[IngestProcess]:
    env = {**os.environ, "DATABASE_URL": settings.db_url, "REPLENISH_KEK": kek.hex(),
           "REPLENISH_DATA_DIR": str(settings.data_dir), "REPLENISH_COAP_HOST": "127.0.0.1",
           "REPLENISH_COAP_PORT": "0", "PYTHONPATH": str(ROOT)}
    first = IngestProcess(env, 0)  # port 0: it reports the port it got
    started = [first]
    try:
        assert first.port_seen.wait(60), "".join(first.lines)
        for _ in range(PROCESSES - 1):
            started.append(IngestProcess(env, first.port))
        for process in started[1:]:
            assert process.port_seen.wait(60), "".join(process.lines)
            assert process.port == first.port
    except BaseException:
        for process in started:
            process.stop()
        raise
    return started


def test_ingest_processes_share_the_port_and_the_guarantees(settings):
    kek = secrets.token_bytes(32)
    fleet = provision_fleet(settings.db_url, kek, DEVICES)
    processes = _start_all(settings, kek)
    try:
        port = processes[0].port
        workload = Workload(fleet)
        workload.prepare(DEVICES * PRESSES)
        (result,) = drive(port, workload, [dict(duration_s=30, window=16, drain_s=30)],
                          sockets=DEVICES, expected_codes=frozenset({65, 67}))
        assert result.sent == result.answered == DEVICES * PRESSES
        assert (result.lost, result.errors) == (0, 0)
        assert result.summary()["codes"] == {"2.01": DEVICES, "2.03": DEVICES * (PRESSES - 1)}
        assert events_and_orders(settings.db_url) == (DEVICES * PRESSES, DEVICES)
        # A busy ingest logs what it committed once per interval (commit_log.py): the
        # last lines come within one.
        for _ in range(300):  # bounded: 30 s
            busy = [p.committed() for p in processes]
            if sum(busy) >= DEVICES * PRESSES:
                break
            time.sleep(0.1)
        assert sum(busy) == DEVICES * PRESSES
        assert sum(1 for n in busy if n) >= 2, busy  # the kernel spread the devices

        # Device 0's first press again, from 12 new source ports (other processes).
        device = fleet[0]
        first = protocol.encode_event(device.key, device.kid,
                                      WireEvent(seq=1, kind=Kind.PRESS, slot=0))
        url = f"coap://127.0.0.1:{port}/ev"
        answers = coap_post_each_from_own_port(url, [first] * 12)
        decoded = [protocol.decode_answer(device.key, first[-protocol.TAG_BYTES:], a.payload)
                   for a in answers]
        assert {(a.result, a.seq) for a in decoded} == {(Result.CREATED, 1)}
        assert len({a.order for a in decoded}) == 1
        # A different event that reuses seq 1: refused everywhere, with the last seq.
        forged_replay = protocol.encode_event(device.key, device.kid,
                                              WireEvent(seq=1, kind=Kind.PRESS, slot=0, qty=3))
        refused = coap_post_each_from_own_port(url, [forged_replay] * 6)
        assert {a.code for a in refused} == {aiocoap.Code.CONFLICT}
        assert events_and_orders(settings.db_url) == (DEVICES * PRESSES, DEVICES)  # nothing changed
    finally:
        for process in processes:
            process.stop()
    for process in processes:
        assert process.proc.returncode == 0, "".join(process.lines[-20:])
