"""What `synchronous=FULL` costs a group commit on this disk, next to NORMAL.

    python -m devtools.bench.sync_cost [--commits N] [--events N] [--dir DIR]

Through the product's own engine (`backend.storage.db.make_engine`: WAL, the pragmas of
`SQLITE_PRAGMAS`), N transactions of E rows each (a group commit's size; one row of
~100 bytes per event), first with the product's setting (FULL: one fsync of the WAL per
commit), then with `PRAGMA synchronous=NORMAL` set on the same kind of connection (no
fsync until a checkpoint). Prints one JSON line: commits per second and the mean and p99
time per commit for each, and the ratio. The database goes in --dir (default: a
temporary folder on the disk that holds /tmp; give the data folder's disk to measure
that one).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

from sqlalchemy import event, text

from backend.storage.db import make_engine


def measure(folder: Path, synchronous: str | None, commits: int, events: int) -> dict:
    path = folder / f"sync-{synchronous or 'product'}.db"
    engine = make_engine(f"sqlite:///{path}")
    if synchronous:  # after the product's own pragmas, on each new connection
        event.listen(engine, "connect",
                     lambda dbapi, _r: dbapi.execute(f"PRAGMA synchronous={synchronous}"))
    times = []
    try:
        with engine.connect() as connection:
            mode = connection.exec_driver_sql("PRAGMA synchronous").scalar()
            connection.exec_driver_sql("CREATE TABLE events (id INTEGER PRIMARY KEY, "
                                       "device INTEGER, seq INTEGER, body BLOB)")
            connection.commit()
            body = os.urandom(100)
            for n in range(commits):
                started = time.perf_counter()
                connection.execute(text("INSERT INTO events (device, seq, body) "
                                        "VALUES (:d, :s, :b)"),
                                   [{"d": e, "s": n, "b": body} for e in range(events)])
                connection.commit()
                times.append(time.perf_counter() - started)
    finally:
        engine.dispose()
    times.sort()
    return {"synchronous": {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}[mode],
            "commits_per_s": round(len(times) / sum(times), 1),
            "mean_ms": round(statistics.fmean(times) * 1000, 3),
            "p99_ms": round(times[int(len(times) * 0.99) - 1] * 1000, 3)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--commits", type=int, default=500)
    parser.add_argument("--events", type=int, default=16, help="rows per commit")
    parser.add_argument("--dir", type=Path)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        full = measure(Path(tmp), None, args.commits, args.events)
        normal = measure(Path(tmp), "NORMAL", args.commits, args.events)
    print(json.dumps({"bench": "sqlite-sync-cost", "events_per_commit": args.events,
                      "product": full, "normal": normal,
                      "full_over_normal_mean": round(full["mean_ms"] / normal["mean_ms"], 2)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
