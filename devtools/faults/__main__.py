"""`python -m devtools.faults` (`make faults`): the crash scenario, then hostile input, then
one household's webhook blackholed (the other households' order latency next to a run
without it); tables and one JSON line. Exit status 1 when a guarantee did not hold."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from devtools.faults.crash import CrashConfig, run_crash
from devtools.faults.isolation import (
    IsolationConfig,
    isolation_failures,
    print_isolation,
    run_isolation,
)
from devtools.faults.relay import Faults

TABLE = [("events sent", "sent"), ("acknowledged", "acknowledged"), ("stored", "stored"),
         ("orders created", "orders"), ("duplicates", "duplicates"), ("lost", "lost"),
         ("kills (SIGKILL)", "kills"), ("  of them mid-delivery", "mid_delivery_kills"),
         ("answers differing on resend", "answer_mismatches"),
         ("retransmissions", "retransmissions"),
         ("kept by devices, resent later", "kept_by_devices"),
         ("4.09 to own events", "conflicts"), ("still held by devices", "unanswered"),
         ("bare 5.03 (writer gone)", "unavailable_503"),
         ("outbox pending at end", "outbox_pending"), ("outbox dead", "outbox_dead"),
         ("orders failed", "orders_failed"), ("merchant: orders", "merchant_orders"),
         ("merchant: requests", "merchant_requests")]

MUST_BE_ZERO = ("lost", "duplicates", "answer_mismatches", "conflicts", "unanswered",
                "outbox_pending", "outbox_dead", "orders_failed")


def failures(result: dict) -> list[str]:
    """What did not hold (empty when everything did)."""
    bad = [f"{key} = {result[key]}" for key in MUST_BE_ZERO if result[key]]
    live = result.get("hostile_live", {})
    if live.get("bytes_out", 0) > live.get("bytes_in", 0):
        bad.append(f"hostile datagrams: {live['bytes_out']} bytes answered to "
                   f"{live['bytes_in']} received (amplification)")
    if result.get("hostile_findings"):
        bad.append(f"{result['hostile_findings']} hostile inputs broke a decoder")
    if result["kills"] < 3:
        bad.append(f"only {result['kills']} kills")
    if result["orders"] != result["merchant_orders"]:
        bad.append(f"{result['orders']} orders but the merchant has "
                   f"{result['merchant_orders']}")
    if result["stored"] < result["acknowledged"]:
        bad.append("fewer events stored than acknowledged")
    return bad


def print_table(result: dict, out=sys.stdout) -> None:
    width = max(len(label) for label, _ in TABLE)
    print(f"\n{'':{width}}  value", file=out)
    for label, key in TABLE:
        print(f"{label:{width}}  {result[key]}", file=out)
    for decoder, count in sorted(result.get("hostile", {}).items()):
        print(f"{'hostile inputs: ' + decoder:{width}}  {count}", file=out)
    if live := result.get("hostile_live"):
        print(f"{'  live: bytes in / out':{width}}  {live['bytes_in']} / {live['bytes_out']}",
              file=out)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.faults", description=__doc__)
    parser.add_argument("--devices", type=int, default=300)
    parser.add_argument("--rate", type=float, default=150.0, help="events per second")
    parser.add_argument("--duration", type=float, default=40.0, help="seconds of load")
    parser.add_argument("--kills", type=int, default=4)
    parser.add_argument("--merchant-down", type=float, default=6.0, help="seconds")
    parser.add_argument("--lease", type=float, default=5.0,
                        help="outbox lease in seconds (REPLENISH_OUTBOX_LEASE_S)")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--postgres", nargs="?", const="throwaway", metavar="URL",
                        help="PostgreSQL: a throwaway server, or the database at URL")
    parser.add_argument("--hostile", type=int, default=2000,
                        help="hostile inputs per decoder (0: none)")
    parser.add_argument("--workdir", type=Path, help="keep the database and logs here")
    parser.add_argument("--relay", action="store_true",
                        help="devices reach the backend through a lossy UDP relay "
                             "(5 %% drop, duplicate and reorder each way)")
    parser.add_argument("--no-isolation", action="store_true",
                        help="skip the blackholed-webhook runs")
    args = parser.parse_args(argv)
    config = CrashConfig(devices=args.devices, rate=args.rate, duration_s=args.duration,
                         kills=args.kills, merchant_down_s=args.merchant_down,
                         lease_s=args.lease, seed=args.seed, workdir=args.workdir,
                         relay=Faults(drop=0.05, duplicate=0.05, reorder=0.05)
                         if args.relay else None, hostile_live=args.hostile)
    postgres = None
    if args.postgres == "throwaway":
        from devtools.postgres import PostgresServer

        postgres = PostgresServer()
        postgres.start()
        config.db_url = postgres.new_database()
    elif args.postgres:
        config.db_url = args.postgres
    def say(line):
        print(line, flush=True)

    try:
        result = run_crash(config, log=say)
        if not args.no_isolation:
            fresh = None
            if postgres is not None:
                fresh = postgres.new_database
            elif args.postgres:
                say("isolation runs on SQLite (they need two fresh databases)")
            result["isolation"] = run_isolation(IsolationConfig(), fresh,
                                                args.workdir, log=say)
    finally:
        if postgres is not None:
            postgres.stop()
    if args.hostile:
        from devtools.faults.hostile import run_hostile

        hostile = run_hostile(args.hostile, seed=result["seed"])
        # Inputs tried per decoder; live_server: sent at the backend during the load.
        result["hostile"] = {**hostile["per_decoder"],
                             "live_server": result["hostile_live"]["sent"]}
        result["hostile_findings"] = hostile["findings"]
        result["hostile_known"] = hostile["known"]
        result["mpy_memory"] = hostile["mpy_memory"]
    bad = failures(result)
    if "isolation" in result:
        bad += isolation_failures(result["isolation"])
    result["ok"] = not bad
    print_table(result)
    if "isolation" in result:
        print_isolation(result["isolation"])
    if bad:
        print("FAILED: " + "; ".join(bad), flush=True)
    print(json.dumps(result, sort_keys=True), flush=True)
    return 0 if not bad else 1


if __name__ == "__main__":
    sys.exit(main())
