"""writer_cpu --server-time: PostgreSQL's own time per statement kind (pg_stat_statements)."""

import psycopg
import pytest

from devtools.bench.pg_server_time import SETTINGS, ServerTime
from devtools.postgres import PostgresServer


@pytest.fixture(scope="module")
def server():
    server = PostgresServer(SETTINGS)  # pg_stat_statements is loaded at start only
    server.start()
    yield server
    server.stop()


def _connect(url: str):
    return psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"))


def test_statements_since_the_reset_of_this_database_only_by_kind(server):
    url, other = server.new_database(), server.new_database()
    timing = ServerTime(url)
    try:
        with _connect(url) as conn, _connect(other) as elsewhere:
            conn.execute("CREATE TABLE t (n integer)")
            conn.execute("SELECT n FROM t")  # before the reset: not counted
            conn.commit()
            elsewhere.execute("CREATE TABLE t (n integer)")
            elsewhere.commit()
            timing.reset()
            with conn.cursor() as cursor:
                cursor.executemany("INSERT INTO t (n) VALUES (%s)", [[1], [2], [3]])
                cursor.execute("SELECT n FROM t")
            conn.commit()
            elsewhere.execute("INSERT INTO t (n) SELECT generate_series(1, 5)")  # not ours
            elsewhere.commit()
        report = timing.per_event(3)
    finally:
        timing.close()
    assert {kind: (line["calls"], line["rows"]) for kind, line in report.items()
            if kind != "BEGIN" and kind != "COMMIT"} == {"INSERT t": (3, 3), "SELECT t": (1, 3)}
    assert all(line["exec_us_per_event"] >= 0 and line["plan_us_per_event"] >= 0
               for line in report.values())
    assert list(report) == sorted(report, key=lambda kind: -report[kind]["exec_us_per_event"])
