"""What a benchmark phase cost PostgreSQL: its processes' CPU and its checkpoints."""

from __future__ import annotations

from devtools.bench.proc_cpu import tree_cpu_s


class PostgresProbe:
    """Read before and after a phase (`devtools.bench.__main__.Usage`)."""

    def __init__(self, server):
        self._pid = server.postmaster_pid()
        self._dsn = f"host=127.0.0.1 port={server.port} user=postgres dbname=postgres"

    def cpu_s(self) -> float:
        """CPU seconds of the postmaster and every process under it, those that ended
        too (a closed connection's backend, an autovacuum worker)."""
        return tree_cpu_s(self._pid) if self._pid else 0.0

    def checkpoints(self) -> tuple[int, float, float]:
        """Checkpoints started so far, and the milliseconds they spent writing and
        syncing the data files (pg_stat_bgwriter)."""
        import psycopg

        with psycopg.connect(self._dsn, autocommit=True) as conn:
            return conn.execute(
                "SELECT checkpoints_timed + checkpoints_req, checkpoint_write_time, "
                "checkpoint_sync_time FROM pg_stat_bgwriter").fetchone()
