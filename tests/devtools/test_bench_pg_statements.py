"""writer_cpu --statements: what a PostgreSQL client sends, counted per kind."""

import psycopg
import pytest

from devtools.bench.pg_statements import StatementCounter, kind_of


def test_a_statement_is_named_by_its_verb_and_first_table():
    assert kind_of('SELECT "id" FROM "devices" AS d WHERE x = ANY(%s)') == "SELECT devices"
    assert kind_of("INSERT INTO events (a) VALUES (%s)") == "INSERT events"
    assert kind_of('UPDATE "devices" SET a = v.a FROM unnest(%s) AS v') == "UPDATE devices"
    assert kind_of(";") == ";"


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_a_transaction_counts_its_begin_each_row_of_executemany_and_its_commit(db_url):
    counter = StatementCounter()
    with psycopg.connect(db_url.replace("postgresql+psycopg://", "postgresql://")) as conn:
        conn.execute("CREATE TABLE t (n integer)")
        conn.commit()  # outside the counting
        with counter.counting():
            with conn.cursor() as cursor:
                cursor.execute("SELECT count(*) FROM t")
                cursor.executemany("INSERT INTO t (n) VALUES (%s)", [[1], [2], [3]])
            conn.commit()
            conn.rollback()  # nothing open: nothing sent, nothing counted
        conn.execute("SELECT 1 FROM t")  # after the counting: not counted
    assert dict(counter.statements) == {"BEGIN": 1, "SELECT t": 1, "INSERT t": 3,
                                        "COMMIT": 1}
    assert dict(counter.calls) == {"BEGIN": 1, "SELECT t": 1, "INSERT t": 1, "COMMIT": 1}
    assert counter.per_batch(1)["statements_per_batch"] == 6
