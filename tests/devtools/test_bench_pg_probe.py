"""make bench's PostgreSQL probe: its processes' CPU, and the checkpoints of a phase."""

import os
import time

import psycopg
import pytest

from devtools.bench import proc_cpu
from devtools.bench.pg_probe import PostgresProbe
from devtools.postgres import PostgresServer


@pytest.fixture
def probe(postgres_server):
    if not isinstance(postgres_server, PostgresServer):
        pytest.skip("DATABASE_URL names a server whose processes are not on this host")
    return PostgresProbe(postgres_server), postgres_server.port


def _connect(port: int):
    return psycopg.connect(f"host=127.0.0.1 port={port} user=postgres", autocommit=True)


def test_a_checkpoint_is_counted_between_two_reads(probe):
    probe, port = probe
    started, write_ms, sync_ms = probe.checkpoints()
    with _connect(port) as conn:
        conn.execute("CREATE TEMP TABLE t AS SELECT generate_series(1, 100000) AS n")
        conn.execute("CHECKPOINT")
    after, write_after, sync_after = probe.checkpoints()
    assert after == started + 1
    assert write_after >= write_ms and sync_after >= sync_ms


def test_a_backend_that_ended_mid_phase_still_counts(probe):
    """Its connection closed, the backend exited and the postmaster reaped it: its CPU
    is then in the postmaster's cutime, not in any live process."""
    probe, port = probe
    before = probe.cpu_s()
    with _connect(port) as conn:
        pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
        conn.execute("SELECT count(*) FROM generate_series(1, 3000000)")
        spent = proc_cpu.seconds(proc_cpu.ticks(pid)[0])
    for _ in range(500):  # until the postmaster has reaped it (bounded)
        if not os.path.exists(f"/proc/{pid}"):
            break
        time.sleep(0.01)
    else:
        raise AssertionError(f"backend {pid} still there after its connection closed")
    assert spent > 0
    assert probe.cpu_s() - before >= spent
