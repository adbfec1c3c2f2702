"""The group-commit writer's CPU per event, by kind, without CoAP (issue 18's guide).

    python -m devtools.bench.writer_cpu [--devices N] [--batch B] [--postgres] [--profile FILE]
                                        [--statements] [--server-time]

Provisions a fleet day (devtools/bench/fleetday.py), then hands `BatchWriter.commit`
batches of B pre-encoded events (each from a different device) and measures this
process's CPU time (`time.process_time`) per event: for the mix and for each kind
alone. CPU time, unlike a rate, hardly depends on what else runs on the machine. On
PostgreSQL the CPU of PostgreSQL's own processes (the postmaster's process tree) is
reported apart and in the total. `--profile` writes a cProfile (CPU time) of the mix's
batches. `--statements` (PostgreSQL) counts the statements each batch sends, per kind
(devtools/bench/pg_statements.py); the counting costs CPU, so its CPU figures are not
comparable with a run without it. `--server-time` (PostgreSQL) adds each statement kind's
execution and planning time inside the server per event (devtools/bench/pg_server_time.py).
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import json
import os
import secrets
import sys
import tempfile
import time
from pathlib import Path

from backend.accounts.keys import Keyring
from backend.ingest.pipeline import BatchWriter
from backend.storage import db
from devtools.bench import fleetday
from devtools.bench.pg_server_time import SETTINGS as SERVER_TIME_SETTINGS
from devtools.bench.pg_server_time import ServerTime
from devtools.bench.pg_statements import StatementCounter
from devtools.bench.proc_cpu import tree_cpu_s


def _ms(seconds: list[float], quantile: float) -> float:
    ordered = sorted(seconds) or [0.0]
    return round(ordered[int(quantile * (len(ordered) - 1))] * 1e3, 2)


def run_scenario(writer: BatchWriter, pools, mix: dict[str, int] | None, events: int,
                 batch: int, pg_pid: int | None, profile: cProfile.Profile | None = None,
                 seed: int = 1, counter: StatementCounter | None = None,
                 server_time: ServerTime | None = None) -> dict:
    workload = fleetday.FleetWorkload(pools, mix, seed=seed)
    workload.prepare(events)
    requests = [q[0].payload for q in workload.queues]
    expected = [q[0].expected for q in workload.queues]
    cpu = 0.0
    pg0 = tree_cpu_s(pg_pid) if pg_pid else 0.0
    wall0 = time.perf_counter()
    wrong = 0
    fallbacks = writer.fallbacks
    commit_s = []  # each batch's decide-and-commit time: what a device waits at moderate load
    if counter:
        counter.clear()
    if server_time:
        server_time.reset()
    for start in range(0, len(requests), batch):
        chunk = requests[start:start + batch]
        t0 = time.process_time()
        if profile:
            profile.enable()
        replies = writer.commit(chunk)
        if profile:
            profile.disable()
        cpu += time.process_time() - t0
        commit_s.append(writer.last_commit_s)
        wrong += sum(int(r.result) != e for r, e in zip(replies, expected[start:start + batch]))
    wall = time.perf_counter() - wall0
    pg = (tree_cpu_s(pg_pid) - pg0) if pg_pid else 0.0
    n = len(requests) or 1
    line = {"events": len(requests), "batch": batch,
            "writer_cpu_us_per_event": round(cpu * 1e6 / n, 1),
            "wrong_answers": wrong, "fallbacks": writer.fallbacks - fallbacks,
            "wall_events_per_s": round(len(requests) / wall, 1),
            "commit_ms_median": _ms(commit_s, 0.5), "commit_ms_p99": _ms(commit_s, 0.99)}
    if pg_pid:
        line["postgres_cpu_us_per_event"] = round(pg * 1e6 / n, 1)
        line["total_cpu_us_per_event"] = round((cpu + pg) * 1e6 / n, 1)
    if counter:
        line.update(counter.per_batch(len(commit_s)))
    if server_time:
        line["server_time"] = server_time.per_event(n)
    if workload.exhausted_kind:
        line["exhausted"] = workload.exhausted_kind
    return line


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m devtools.bench.writer_cpu",
                                description=__doc__.split("\n")[0])
    p.add_argument("--devices", type=int, default=20_000)
    p.add_argument("--events", type=int, default=3000, help="events per scenario")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--postgres", action="store_true")
    p.add_argument("--profile", type=Path, help="cProfile of the mix's batches, to this file")
    p.add_argument("--kinds", default="mix," + ",".join(fleetday.KINDS))
    p.add_argument("--statements", action="store_true",
                   help="count each batch's statements per kind (PostgreSQL)")
    p.add_argument("--server-time", action="store_true",
                   help="each statement kind's execution and planning time inside "
                        "PostgreSQL, per event (pg_stat_statements)")
    args = p.parse_args(argv)
    if (args.statements or args.server_time) and not args.postgres:
        p.error("--statements and --server-time need --postgres")
    kek = secrets.token_bytes(32)
    server = None
    if args.postgres:
        from devtools.postgres import PostgresServer

        server = PostgresServer(SERVER_TIME_SETTINGS if args.server_time else None)
        server.start()
        url = server.new_database()
    else:
        url = f"sqlite:///{Path(tempfile.mkdtemp(prefix='writer-cpu-')) / 'w.db'}"
    try:
        t0 = time.perf_counter()
        pools = fleetday.provision_fleet_day(url, kek, args.devices)
        print(json.dumps({"provisioned": args.devices, "s": round(time.perf_counter() - t0, 1),
                          "db": "postgresql" if server else "sqlite"}), flush=True)
        engine = db.make_engine(url, pre_ping=False, generic_plans=True)  # as the writer's
        writer = BatchWriter(db.make_sessionmaker(engine, writer=True), Keyring(kek))
        pg_pid = server.postmaster_pid() if server else None
        # Warm-up: imports, statement caches, the first connection.
        run_scenario(writer, pools, None, min(200, args.events), args.batch, None, seed=0)
        # CPU time, not wall time: a commit's fsync waits but costs (almost) no CPU.
        profile = cProfile.Profile(time.process_time) if args.profile else None
        counter = StatementCounter() if args.statements else None
        server_time = ServerTime(url) if args.server_time else None
        with counter.counting() if counter else contextlib.nullcontext():
            for name in args.kinds.split(","):
                mix = None if name == "mix" else {name: 1}
                line = run_scenario(writer, pools, mix, args.events, args.batch, pg_pid,
                                    profile if name == args.kinds.split(",")[0] else None,
                                    counter=counter, server_time=server_time)
                print(json.dumps({"scenario": name, **line}), flush=True)
        if profile:
            profile.dump_stats(str(args.profile))
        if server_time:
            server_time.close()
        engine.dispose()
    finally:
        if server:
            server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
