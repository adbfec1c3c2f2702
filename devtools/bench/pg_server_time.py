"""Where PostgreSQL's own time goes, per statement kind (issue 18).

`writer_cpu --postgres --server-time` starts its PostgreSQL with pg_stat_statements
(`SETTINGS`) and reports, for each scenario, every statement kind's executions and its
execution and planning time inside the server per event, from the server's own
accounting: the CPU ticks of PostgreSQL's processes say how much, this says where. Only
statements the client sent are counted ("top"): a foreign-key check's time is in the
INSERT that fired it. Kinds are named as `pg_statements.kind_of` names them.
"""

from __future__ import annotations

from collections import defaultdict

from devtools.bench.pg_statements import kind_of

SETTINGS = {"shared_preload_libraries": "pg_stat_statements",
            "pg_stat_statements.track": "top",
            "pg_stat_statements.track_planning": "on"}

_READ = ("SELECT query, calls, plans, rows, total_exec_time, total_plan_time "
         "FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database "
         "WHERE datname = current_database())")


class ServerTime:
    """pg_stat_statements of one database, read through its own connection (autocommit:
    its statements are not counted in a transaction of the writer's)."""

    def __init__(self, url: str):
        import psycopg

        self._conn = psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"),
                                     autocommit=True)
        self._conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")

    def reset(self) -> None:
        self._conn.execute("SELECT pg_stat_statements_reset()")

    def per_event(self, events: int) -> dict[str, dict]:
        """Since the last `reset`, by statement kind, dearest first: executions, plans
        made, rows, and execution and planning time in microseconds per event."""
        kinds: dict[str, list[float]] = defaultdict(lambda: [0, 0, 0, 0.0, 0.0])
        for query, calls, plans, rows, exec_ms, plan_ms in self._conn.execute(_READ):
            if "pg_stat_statements" in query:
                continue  # this class's own reads and resets
            totals = kinds[kind_of(query)]
            for i, value in enumerate((calls, plans, rows, exec_ms, plan_ms)):
                totals[i] += value
        n = events or 1
        return {kind: {"calls": calls, "plans": plans, "rows": rows,
                       "exec_us_per_event": round(exec_ms * 1e3 / n, 1),
                       "plan_us_per_event": round(plan_ms * 1e3 / n, 1)}
                for kind, (calls, plans, rows, exec_ms, plan_ms)
                in sorted(kinds.items(), key=lambda item: -item[1][3])}

    def close(self) -> None:
        self._conn.close()
