"""make bench's PostgreSQL probe: its processes' CPU, and the checkpoints of a phase."""

import psycopg
import pytest

from devtools.bench.pg_probe import PostgresProbe
from devtools.postgres import PostgresServer


def test_a_checkpoint_and_cpu_are_counted_between_two_reads(postgres_server):
    if not isinstance(postgres_server, PostgresServer):
        pytest.skip("DATABASE_URL names a server whose processes are not on this host")
    probe = PostgresProbe(postgres_server)
    started, write_ms, sync_ms = probe.checkpoints()
    cpu = probe.cpu_s()
    with psycopg.connect(f"host=127.0.0.1 port={postgres_server.port} user=postgres",
                         autocommit=True) as conn:
        conn.execute("CREATE TEMP TABLE t AS SELECT generate_series(1, 300000) AS n")
        conn.execute("CHECKPOINT")
        busy = probe.cpu_s()  # a backend's CPU counts while it lives (/proc)
    after, write_after, sync_after = probe.checkpoints()
    assert after == started + 1
    assert write_after >= write_ms and sync_after >= sync_ms
    assert busy > cpu
