"""The statements a PostgreSQL client sends, counted per kind (issue 18).

On PostgreSQL a group commit's cost is mostly its statement count (docs/performance.md),
so `writer_cpu --statements` counts what each batch sends: every statement psycopg runs
(an `executemany` counts one per row: PostgreSQL executes each) and the round trips,
keyed by verb and table ("SELECT devices", "INSERT events"), plus the BEGIN psycopg
sends on its own before a transaction's first statement and each COMMIT. It wraps
psycopg's cursor and connection methods while counting, which costs CPU itself: count
and time in separate runs.
"""

from __future__ import annotations

import re
from collections import Counter
from contextlib import contextmanager

_TARGET = re.compile(r"\b(?:FROM|INTO|UPDATE)\s+\"?(\w+)", re.IGNORECASE)


def kind_of(query) -> str:
    """"VERB table" of a statement, e.g. "SELECT devices" (the first table named)."""
    text = query.decode() if isinstance(query, bytes) else str(query)
    verb = text.split(None, 1)[0].upper() if text.strip() else "?"
    target = _TARGET.search(text)
    return f"{verb} {target.group(1)}" if target else verb


class StatementCounter:
    def __init__(self):
        self.statements: Counter[str] = Counter()  # executed by PostgreSQL
        self.calls: Counter[str] = Counter()  # client calls (executemany: one)

    def clear(self) -> None:
        self.statements.clear()
        self.calls.clear()

    def _count(self, connection, kind: str, rows: int = 1) -> None:
        import psycopg

        if (not connection.autocommit
                and connection.info.transaction_status == psycopg.pq.TransactionStatus.IDLE):
            self.statements["BEGIN"] += 1  # psycopg opens the transaction first
            self.calls["BEGIN"] += 1
        self.statements[kind] += rows
        self.calls[kind] += 1

    @contextmanager
    def counting(self):
        """Count while inside (psycopg's classes are patched, then restored)."""
        import psycopg

        cursor, connection = psycopg.Cursor, psycopg.Connection
        execute, executemany = cursor.execute, cursor.executemany
        commit, rollback = connection.commit, connection.rollback
        counter = self

        def counted_execute(self, query, params=None, **kwargs):
            counter._count(self.connection, kind_of(query))
            return execute(self, query, params, **kwargs)

        def counted_executemany(self, query, params_seq, **kwargs):
            params_seq = list(params_seq)
            counter._count(self.connection, kind_of(query), len(params_seq))
            return executemany(self, query, params_seq, **kwargs)

        def ends(name, method):
            def counted(self):
                if self.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                    counter.statements[name] += 1  # an idle connection sends nothing
                    counter.calls[name] += 1
                return method(self)
            return counted

        cursor.execute, cursor.executemany = counted_execute, counted_executemany
        connection.commit = ends("COMMIT", commit)
        connection.rollback = ends("ROLLBACK", rollback)
        try:
            yield self
        finally:
            cursor.execute, cursor.executemany = execute, executemany
            connection.commit, connection.rollback = commit, rollback

    def per_batch(self, batches: int) -> dict:
        """Statements and calls per batch, per kind and in total."""
        batches = batches or 1
        return {
            "statements_per_batch": round(sum(self.statements.values()) / batches, 2),
            "calls_per_batch": round(sum(self.calls.values()) / batches, 2),
            "by_kind": {kind: [round(self.statements[kind] / batches, 2),
                               round(self.calls[kind] / batches, 2)]
                        for kind in sorted(self.statements)},
        }
