"""The writer's per-event decision CPU, as the least of N repetitions (a loaded host's guide).

    python -m devtools.bench.decide_cpu [--devices N] [--events E] [--reps R] [--kinds K]

`writer_cpu` times each batch once, commit included; on a shared machine its figure
moves by a third between runs of the same code, so a change of a few per cent cannot
show. This decides the same batches of 64 fleet-day events again and again (the batch's
reads, every `decide`, the batch's writes; then a rollback, so each repetition does the
same work, with the device keys' unwrap cache emptied as on a fleet's day) and keeps
each batch's least CPU time: contention only ever adds time. The commit itself (an
fsync) is not in it. One JSON line: microseconds per event for each kind.
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys
import tempfile
import time
from pathlib import Path

from backend.accounts.keys import Keyring
from backend.ingest.decide import IngestConfig, decide
from backend.ingest.lookups import BatchLookups, LeadTimes
from backend.storage import db
from devtools.bench import fleetday

BATCH = 64


def least_cpu_us_per_event(sessions, keyring: Keyring, requests: list[bytes],
                           reps: int) -> float:
    """Each batch's least CPU time over `reps` decisions of it, summed, per event."""
    config, lead_times = IngestConfig(), LeadTimes()
    batches = [requests[i:i + BATCH] for i in range(0, len(requests), BATCH)]
    least = [float("inf")] * len(batches)
    for _ in range(reps):
        for i, batch in enumerate(batches):
            keyring.unwrap.cache_clear()  # each device speaks once: every unwrap misses
            with sessions() as session, session.begin():
                started = time.process_time()
                lookups = BatchLookups(session, batch, lead_times)
                with session.no_autoflush:
                    for request in batch:
                        decide(session, keyring, request, config, lookups)
                lookups.flush(session)
                least[i] = min(least[i], time.process_time() - started)
                session.rollback()  # the next repetition decides the same events
    return sum(least) * 1e6 / max(1, len(requests))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m devtools.bench.decide_cpu",
                                description=__doc__.split("\n")[0])
    p.add_argument("--devices", type=int, default=30_000)
    p.add_argument("--events", type=int, default=640, help="events per kind")
    p.add_argument("--reps", type=int, default=12)
    p.add_argument("--kinds", default="mix," + ",".join(fleetday.KINDS))
    args = p.parse_args(argv)
    kek = secrets.token_bytes(32)
    url = f"sqlite:///{Path(tempfile.mkdtemp(prefix='decide-cpu-')) / 'd.db'}"
    pools = fleetday.provision_fleet_day(url, kek, args.devices)
    engine = db.make_engine(url)
    sessions, keyring = db.make_sessionmaker(engine, writer=True), Keyring(kek)
    line = {"devices": args.devices, "events": args.events, "reps": args.reps}
    for kind in args.kinds.split(","):
        workload = fleetday.FleetWorkload(pools, None if kind == "mix" else {kind: 1}, seed=7)
        workload.prepare(args.events)
        requests = [queue[0].payload for queue in workload.queues]
        line[f"{kind}_cpu_us_per_event"] = round(
            least_cpu_us_per_event(sessions, keyring, requests, args.reps), 1)
    engine.dispose()
    print(json.dumps(line), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
