"""`make bench`: bare aiocoap and the full ingest, measured side by side in one run.

Prints one JSON line per configuration and mode (saturation with a window of
outstanding requests; a moderate fixed rate = half the bare server's saturation rate
in this run), the firmware's own figures on the MicroPython unix port, and a last line
with `ratio_ingest_vs_bare`. Method and results: docs/performance.md.

    python -m devtools.bench [--phase-s S] [--devices N] [--large N] [--no-postgres] [--no-large]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import shutil
import sys
import tempfile
import time
from pathlib import Path

from devtools.bench.fleet import provision_fleet
from devtools.bench.loadgen import LoadGenerator, Workload, anonymous_devices
from devtools.bench.pg_probe import PostgresProbe
from devtools.bench.server import ServerProcess

SUCCESS = frozenset({65, 67, 68})  # 2.01 created, 2.03 suppressed, 2.04 recorded


def emit(line: dict) -> None:
    print(json.dumps(line), flush=True)


def loadavg() -> list[float]:
    with open("/proc/loadavg") as f:
        return [float(x) for x in f.read().split()[:3]]


def host_cpu_s() -> tuple[float, float]:
    """(busy, stolen) CPU seconds of this machine so far, all cores (/proc/stat).
    Busy is every process's time; stolen is time the hypervisor gave to other
    machines while ours wanted to run. With the server's and the generator's own
    figures they show whether the machine, not the server, was the limit."""
    with open("/proc/stat") as f:
        user, nice, system, idle, iowait, irq, softirq, steal = (
            int(x) for x in f.readline().split()[1:9])
    tick = os.sysconf("SC_CLK_TCK")
    return (user + nice + system + irq + softirq) / tick, steal / tick


class Usage:
    """CPU use over one phase: the server's process tree, this load generator, the host;
    with `database` (a PostgresProbe) PostgreSQL's processes too, in the total, and the
    checkpoints PostgreSQL started meanwhile."""

    def __init__(self, server: ServerProcess, database: PostgresProbe | None = None):
        self._server = server
        self._database = database
        self._checkpoints = database.checkpoints() if database else None
        self._start = self._now()

    def _now(self) -> tuple[float, ...]:
        main, children = self._server.cpu_split_s()
        database = self._database.cpu_s() if self._database else 0.0
        return (main + children, main, children, database, time.process_time(),
                *host_cpu_s(), time.perf_counter())

    def figures(self, answered: int) -> dict:
        server, main, children, database, client, host, stolen, wall = (
            b - a for a, b in zip(self._start, self._now()))
        per_event = (lambda s: round(s * 1e6 / answered, 1)) if answered else (lambda s: None)
        out = {"cpu_us_per_event": per_event(server + database),
               "server_cpu_util": round((server + database) / wall, 3)}
        if children and self._server.processes == 1:  # the ingest: loop and writer apart
            out.update(loop_cpu_us_per_event=per_event(main),
                       writer_cpu_us_per_event=per_event(children))
        if self._database:
            out.update(ingest_cpu_us_per_event=per_event(server),
                       postgres_cpu_us_per_event=per_event(database))
            # A checkpoint's writes and fsyncs share the disk with the commits' WAL
            # flushes: the first suspect when a phase's p99 jumps.
            started, write_ms, sync_ms = (b - a for a, b in zip(
                self._checkpoints, self._database.checkpoints()))
            out.update(postgres_checkpoints=started,
                       postgres_checkpoint_write_sync_ms=[round(write_ms), round(sync_ms)])
        out.update({"client_cpu_us_per_event": per_event(client),
                    "host_cpu_util": round(host / wall, 3),
                    "stolen_cpu_util": round(stolen / wall, 3)})
        return out


async def measure(config: str, server: ServerProcess, workload: Workload, args,
                  fixed_rate: float | None, expected=SUCCESS, extra: dict | None = None,
                  window: int | None = None, max_rate: float | None = None,
                  phase_s: float | None = None,
                  database: PostgresProbe | None = None) -> dict:
    """Warm up, then a saturation phase and (when given) a fixed-rate phase."""
    window = window or args.window
    phase_s = phase_s or args.phase_s
    max_rate = max_rate or args.max_rate
    warmup_window = min(window, args.window)
    workload.prepare(_warmup_events(args))  # before the sockets: a fleet workload grows here
    gen = LoadGenerator("127.0.0.1", server.port, workload, sockets=args.sockets,
                        expected_codes=expected, check_after=True)
    await gen.open()
    lines = {}
    try:
        gen.check(await gen.run(args.warmup_s, window=warmup_window, drain_s=args.drain_s))
        phases = [("saturation", dict(window=window), max_rate * phase_s)]
        if fixed_rate:
            phases.append(("fixed_rate", dict(rate=fixed_rate), _fixed_rate_events(fixed_rate, phase_s)))
        for mode, how, budget in phases:
            workload.prepare(max(0, int(budget) - workload.pending()))
            usage = Usage(server, database)
            result = await gen.run(phase_s, drain_s=args.drain_s, **how)
            figures = usage.figures(result.answered)
            gen.check(result)  # every answer's MAC and code, after the phase's figures
            line = {"config": config, **(extra or {}), **result.summary(), **figures}
            emit(line)
            lines[mode] = line
    finally:
        gen.close()
    return lines


def _warmup_events(args) -> int:
    """Events encoded for a warm-up (a saturation phase's window, briefly)."""
    return args.window * 20


def _fixed_rate_events(rate: float, phase_s: float) -> float:
    return rate * phase_s * 1.1


def firmware(args) -> None:
    """Point 7: the firmware's CPU time per event and peak heap (devtools/firmware_bench.py)."""
    from devtools import firmware_bench

    variants = [("source", None)]
    if not args.no_mpy:
        from devtools.mpy import ROOT
        from provisioning.firmware_build import build_firmware

        out = ROOT / "build" / "bench-firmware"
        build_firmware(out)
        variants.append(("mpy", out))
    for label, path in variants:
        f = firmware_bench.measure(args.firmware_presses, path)
        emit({"config": f"firmware-micropython-unix-{label}",
              "presses": int(f["presses"]),
              "cpu_us_per_event": round(f["firmware_us_per_press"], 1),
              "peak_heap_bytes_per_send": int(f["peak_heap_bytes_per_send"]),
              "flash_writes_per_press_online": f["flash_writes_per_press_online"],
              "note": "CBOR+COSE+CoAP encode and answer check on the unix port, no "
                      "network waits; an ESP32 is roughly 50-100x slower"})


def recorded_events(db_url: str) -> int:
    from sqlalchemy import func, select

    from backend.storage import db
    from backend.storage.models import Event

    engine = db.make_engine(db_url)
    try:
        with engine.connect() as conn:
            return conn.execute(select(func.count()).select_from(Event)).scalar_one()
    finally:
        engine.dispose()


async def ingest_config(config: str, db_url: str, devices: int, workdir: Path, args,
                        fixed_rate: float | None, spread: bool = False, processes: int = 1,
                        window: int | None = None, default_gc: bool = False) -> dict:
    """The full ingest on `db_url` with `devices` provisioned. The measured presses
    come from `args.devices` of them (first press orders, later ones are suppressed);
    with `spread`, a further saturation phase sends one press from each device in turn
    (every press a first one: an order each, and no key cache can hold them all)."""
    kek = secrets.token_bytes(32)
    t0 = time.perf_counter()
    fleet = provision_fleet(db_url, kek, devices)
    provision_s = time.perf_counter() - t0
    data_dir = workdir / config
    data_dir.mkdir(parents=True, exist_ok=True)
    server = ServerProcess("ingest", db_url=db_url, data_dir=data_dir, kek_hex=kek.hex(),
                           log_path=data_dir / "server.log", log_level=args.server_log_level,
                           processes=processes, default_gc=default_gc)
    active = min(devices, max(args.devices, window or 0))
    extra = {"devices": devices, "active_devices": active}
    if processes > 1:
        extra["processes"] = processes
    try:
        lines = await measure(config, server, Workload(fleet[:active]), args, fixed_rate,
                              extra=extra, window=window)
        if spread:
            lines.update({f"spread-{mode}": line for mode, line in (await measure(
                f"{config}-spread", server, Workload(fleet), args, None,
                extra={"devices": devices, "active_devices": devices})).items()})
    finally:
        server.stop()
    answered_ok = sum(line["codes"].get(c, 0) for line in lines.values()
                      for c in ("2.01", "2.03", "2.04"))
    shed = sum(line.get("shed", 0) for line in lines.values())
    emit({"config": config, "check": "recorded", "devices": devices,
          "provision_s": round(provision_s, 2),
          "events_recorded": recorded_events(db_url),
          "measured_success_answers": answered_ok, "shed_5_03": shed,
          "note": "events_recorded also counts warm-up events"})
    return lines


def count_rows(db_url: str, model) -> int:
    from sqlalchemy import func, select

    from backend.storage import db

    engine = db.make_engine(db_url)
    try:
        with engine.connect() as conn:
            return conn.execute(select(func.count()).select_from(model)).scalar_one()
    finally:
        engine.dispose()


async def fleet_day(config: str, db_url: str, workdir: Path, args, fixed_rate: float,
                    database: PostgresProbe | None = None) -> dict:
    """Issue 18's fleet day (devtools/bench/fleetday.py): `args.fleet_devices` claimed
    devices, each sending one event in the whole run, 60 % level reports, 30 %
    heartbeats, 9 % suppressed presses, 1 % first presses; saturation and half the bare
    rate for the mix, then each kind alone at saturation (`--fleet-kind-s`)."""
    from backend.storage.models import Event, Order
    from devtools.bench import fleetday

    kek = secrets.token_bytes(32)
    t0 = time.perf_counter()
    # The mix's devices and each kind's own in proportion to the events each set of
    # phases may send, so that no kind runs out before its last phase.
    rate_cap = args.fleet_max_rate
    mix_events = (_warmup_events(args) + rate_cap * args.phase_s
                  + _fixed_rate_events(fixed_rate, args.phase_s))
    alone_events = _warmup_events(args) + rate_cap * args.fleet_kind_s
    pools = fleetday.provision_fleet_day(
        db_url, kek, args.fleet_devices,
        mixed_share=mix_events / (mix_events + len(fleetday.KINDS) * alone_events))
    provision_s = time.perf_counter() - t0
    orders_before = count_rows(db_url, Order)
    data_dir = workdir / config
    data_dir.mkdir(parents=True, exist_ok=True)
    server = ServerProcess("ingest", db_url=db_url, data_dir=data_dir, kek_hex=kek.hex(),
                           log_path=data_dir / "server.log", log_level=args.server_log_level,
                           profile=_profile_path(args, config))
    extra = {"devices": args.fleet_devices, "mix": "60/30/9/1"}
    lines: dict = {}
    try:
        mix = fleetday.FleetWorkload(pools)
        lines.update(await measure(config, server, mix, args, fixed_rate, extra=extra,
                                   window=args.fleet_window, max_rate=rate_cap,
                                   database=database))
        for kind in fleetday.KINDS:
            alone = fleetday.FleetWorkload(pools, {kind: 1})
            got = await measure(f"{config}-{kind}", server, alone, args, None,
                                extra={"devices": args.fleet_devices, "kind": kind},
                                window=args.fleet_window, max_rate=rate_cap,
                                phase_s=args.fleet_kind_s,
                                database=database)
            lines[kind] = got["saturation"]
    finally:
        server.stop()
    answered = {mode: line["codes"] for mode, line in lines.items()}
    emit({"config": config, "check": "recorded", "devices": args.fleet_devices,
          "provision_s": round(provision_s, 2),
          "events_recorded": count_rows(db_url, Event),
          "measured_success_answers": sum(n for codes in answered.values()
                                          for c, n in codes.items() if c in ("2.01", "2.03", "2.04")),
          "orders_created": count_rows(db_url, Order) - orders_before,
          "measured_2_01_answers": sum(codes.get("2.01", 0) for codes in answered.values()),
          "devices_left": {kind: len(pool) for kind, pool in pools.items()},
          "note": "recorded events and orders also count the warm-ups'"})
    return lines


async def run(args) -> int:
    """Every configuration, in a work folder of its own (databases, server logs) that
    is removed after the run: a full run leaves about 170 MB. Kept when asked
    (`--keep-workdir`) or when the run fails, and then its path is printed."""
    if not args.no_firmware:
        firmware(args)
    workdir = Path(tempfile.mkdtemp(prefix="replenish-bench-"))
    try:
        code = await _run_in(workdir, args)
    except BaseException:
        print(f"bench: databases and server logs kept in {workdir}", file=sys.stderr)
        raise
    if args.keep_workdir:
        print(f"bench: databases and server logs kept in {workdir}", file=sys.stderr)
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return code


async def _run_in(workdir: Path, args) -> int:
    with ServerProcess("bare") as bare:
        lines = await measure("bare-aiocoap", bare,
                              Workload(anonymous_devices(args.devices), verify=False),
                              args, None, expected=frozenset({68}))
    bare_eps = lines["saturation"]["events_per_s"]
    with ServerProcess("bare-event-path",  # what the ingest's own settings save
                       profile=_profile_path(args, "bare-aiocoap-event-path-settings")) as bare:
        same = await measure("bare-aiocoap-event-path-settings", bare,
                             Workload(anonymous_devices(args.devices), verify=False),
                             args, None, expected=frozenset({68}))
        same_eps = same["saturation"]["events_per_s"]
        if not args.no_fleet and args.fleet_window != args.window:
            # The fleet day's denominator is this server at its best: also measured
            # with the fleet day's window, and the higher rate of the two counts.
            wide = await measure("bare-aiocoap-event-path-settings", bare,
                                 Workload(anonymous_devices(args.devices), verify=False),
                                 args, None, expected=frozenset({68}),
                                 window=args.fleet_window)
            same_eps = max(same_eps, wide["saturation"]["events_per_s"])
    fixed_rate = args.fixed_rate or max(100, round(bare_eps / 2, -2))
    with ServerProcess("bare") as bare:  # a fresh server: no state from the first run
        lines = await _fixed_only("bare-aiocoap", bare, args, fixed_rate)

    fleet_sqlite = fleet_pg = None
    if not args.no_fleet:
        fleet_sqlite = await fleet_day("fleet-day-sqlite", f"sqlite:///{workdir / 'fleet.db'}",
                                       workdir, args, fixed_rate)
        if not args.no_postgres:
            fleet_pg = await postgres_fleet_day(args, workdir, fixed_rate)
    if args.fleet_only:
        emit(fleet_summary(fleet_sqlite, fleet_pg, same_eps, bare_eps, fixed_rate))
        return 0
    sqlite = await ingest_config("ingest-sqlite", f"sqlite:///{workdir / 'bench.db'}",
                                 args.devices, workdir, args, fixed_rate)
    if not args.no_gc_compare:  # the same ingest with CPython's GC settings
        await ingest_config("ingest-sqlite-default-gc", f"sqlite:///{workdir / 'gc.db'}",
                            args.devices, workdir, args, fixed_rate, default_gc=True)
    two = await ingest_config("ingest-sqlite-2proc", f"sqlite:///{workdir / 'two.db'}",
                              args.devices, workdir, args, None, processes=2)
    await ingest_config("ingest-sqlite-overload", f"sqlite:///{workdir / 'overload.db'}",
                        args.overload_devices, workdir, args, None,
                        window=args.overload_devices)
    if not args.no_large:
        await ingest_config("ingest-sqlite-large", f"sqlite:///{workdir / 'large.db'}",
                            args.large, workdir, args, fixed_rate, spread=True)
    if not args.no_postgres:
        await postgres_configs(args, workdir, fixed_rate)
    ingest_eps = sqlite["saturation"]["events_per_s"]
    two_eps = two["saturation"]["events_per_s"]
    emit({"ratio_ingest_vs_bare": round(ingest_eps / bare_eps, 3) if bare_eps else None,
          "bare_events_per_s": bare_eps, "ingest_sqlite_events_per_s": ingest_eps,
          "ratio_ingest_vs_bare_event_path_settings":
              round(ingest_eps / same_eps, 3) if same_eps else None,
          "bare_event_path_settings_events_per_s": same_eps,
          "ratio_2proc_vs_1proc": round(two_eps / ingest_eps, 3) if ingest_eps else None,
          "fixed_rate_per_s": fixed_rate, "loadavg": loadavg(), "cpus": _cpus(),
          **fleet_summary(fleet_sqlite, fleet_pg, same_eps, bare_eps, fixed_rate)})
    return 0


def fleet_summary(sqlite: dict | None, pg: dict | None, same_eps: float, bare_eps: float,
                  fixed_rate: float) -> dict:
    """Issue 18's keys for the last line (None where a configuration did not run)."""
    if not sqlite:
        return {}
    eps = sqlite["saturation"]["events_per_s"]
    out = {"ratio_fleet_vs_bare_event_path_settings": round(eps / same_eps, 3) if same_eps else None,
           "fleet_events_per_s": eps,
           "fleet_new_orders_per_s": sqlite["first"]["events_per_s"],
           "fleet_p99_ms_at_half_load": sqlite["fixed_rate"]["p99_ms"],
           "fleet_cpu_us_per_event": sqlite["saturation"]["cpu_us_per_event"],
           "fleet_cpu_us_per_event_by_kind": {
               kind: sqlite[kind]["cpu_us_per_event"] for kind in
               ("level", "heartbeat", "suppressed", "first")},
           "ratio_fleet_postgresql_vs_sqlite": None}
    if pg:
        pg_eps = pg["saturation"]["events_per_s"]
        out.update(ratio_fleet_postgresql_vs_sqlite=round(pg_eps / eps, 3) if eps else None,
                   fleet_postgresql_events_per_s=pg_eps,
                   fleet_postgresql_new_orders_per_s=pg["first"]["events_per_s"],
                   fleet_postgresql_p99_ms_at_half_load=pg["fixed_rate"]["p99_ms"],
                   fleet_postgresql_cpu_us_per_event=pg["saturation"]["cpu_us_per_event"])
    out.update(fleet_bare_events_per_s=bare_eps, fleet_half_load_per_s=fixed_rate)
    return out


async def postgres_fleet_day(args, workdir: Path, fixed_rate: float) -> dict | None:
    try:
        from devtools.postgres import PostgresServer

        server = PostgresServer()
        server.start()
    except BaseException as err:  # devtools.system.unavailable raises pytest's Skipped
        if isinstance(err, KeyboardInterrupt):
            raise
        emit({"config": "fleet-day-postgresql", "skipped": f"PostgreSQL unavailable: {err}"})
        return None
    try:
        return await fleet_day("fleet-day-postgresql", server.new_database(), workdir, args,
                               fixed_rate, database=PostgresProbe(server))
    finally:
        server.stop()


async def _fixed_only(config, server, args, rate):
    saved = args.phase_s
    workload = Workload(anonymous_devices(args.devices), verify=False)
    gen = LoadGenerator("127.0.0.1", server.port, workload, sockets=args.sockets,
                        expected_codes=frozenset({68}))
    await gen.open()
    try:
        workload.prepare(int(rate * saved * 1.1))
        usage = Usage(server)
        result = await gen.run(saved, rate=rate, drain_s=args.drain_s)
        line = {"config": config, **result.summary(), **usage.figures(result.answered)}
        emit(line)
        return line
    finally:
        gen.close()


async def postgres_configs(args, workdir: Path, fixed_rate: float) -> None:
    try:
        from devtools.postgres import PostgresServer

        server = PostgresServer()
        server.start()
    except BaseException as err:  # devtools.system.unavailable raises pytest's Skipped
        if isinstance(err, KeyboardInterrupt):
            raise
        emit({"config": "ingest-postgresql", "skipped": f"PostgreSQL unavailable: {err}"})
        return
    try:
        await ingest_config("ingest-postgresql", server.new_database(), args.devices,
                            workdir, args, fixed_rate)
        if args.large_postgres:
            await ingest_config("ingest-postgresql-large", server.new_database(),
                                args.large, workdir, args, fixed_rate, spread=True)
    finally:
        server.stop()


def _profile_path(args, config: str) -> Path | None:
    """Where `--profile-dir` wants the cProfile of `config`'s server (None: not profiled)."""
    if args.profile_dir is None:
        return None
    args.profile_dir.mkdir(parents=True, exist_ok=True)
    return args.profile_dir / f"{config}.prof"


def _cpus() -> int:
    return os.cpu_count() or 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m devtools.bench", description=__doc__.split("\n")[0])
    p.add_argument("--phase-s", type=float, default=6.0, help="seconds per measured phase")
    p.add_argument("--warmup-s", type=float, default=1.0)
    p.add_argument("--drain-s", type=float, default=4.0,
                   help="after a phase, wait this long for answers; the rest is lost")
    p.add_argument("--window", type=int, default=64, help="outstanding requests (saturation)")
    p.add_argument("--fixed-rate", type=float, help="default: half the bare saturation rate")
    p.add_argument("--max-rate", type=float, default=9000,
                   help="events encoded ahead per second of a saturation phase")
    p.add_argument("--devices", type=int, default=100)
    p.add_argument("--overload-devices", type=int, default=2000,
                   help="devices (and window) of the overload phase: far past saturation")
    p.add_argument("--large", type=int, default=100_000)
    p.add_argument("--sockets", type=int, default=256, help="source UDP sockets (pool)")
    p.add_argument("--server-log-level", default="INFO")
    p.add_argument("--firmware-presses", type=int, default=320)
    p.add_argument("--no-firmware", action="store_true")
    p.add_argument("--no-mpy", action="store_true")
    p.add_argument("--no-large", action="store_true")
    p.add_argument("--no-postgres", action="store_true")
    p.add_argument("--no-gc-compare", action="store_true",
                   help="skip the ingest run with CPython's default GC settings")
    p.add_argument("--large-postgres", action="store_true",
                   help="also run the large fleet on PostgreSQL")
    p.add_argument("--no-fleet", action="store_true", help="skip the fleet day (issue 18)")
    p.add_argument("--fleet-only", action="store_true",
                   help="only the bare servers and the fleet day")
    p.add_argument("--fleet-devices", type=int, default=100_000,
                   help="fleet day: claimed devices, each sending one event (1000000: a "
                        "million; provisioning takes minutes)")
    p.add_argument("--fleet-kind-s", type=float, default=3.0,
                   help="fleet day: seconds of each kind alone at saturation")
    p.add_argument("--fleet-window", type=int, default=256,
                   help="fleet day: outstanding requests at saturation. A group-commit "
                        "server needs more than --window to be saturated: with 64 the "
                        "writer and the event loop each idled a third of the time, "
                        "waiting on each other (docs/performance.md)")
    p.add_argument("--fleet-max-rate", type=float, default=4000,
                   help="fleet day: events prepared per second of a saturation phase: "
                        "enough for any rate this host reaches, few enough that 100,000 "
                        "devices last the run (unsent ones serve the next phase)")
    p.add_argument("--no-sync-cost", action="store_true",
                   help="skip what synchronous=FULL costs a group commit (sync_cost.py)")
    p.add_argument("--profile-dir", type=Path,
                   help="write a cProfile of the event loop thread's CPU time (all phases) "
                        "of the bare server with /ev's settings and of each fleet day's "
                        "ingest here, as <config>.prof; profiling slows the loop, so its "
                        "CPU figures compare only with another profiled run")
    p.add_argument("--keep-workdir", action="store_true",
                   help="keep the run's databases and server logs (removed by default; "
                        "always kept when the run fails); the path goes to stderr")
    p.add_argument("--quick", action="store_true",
                   help="the fleet day's short form: --fleet-only, 60,000 devices, 3 s "
                        "phases, 2 s per kind, no firmware")
    args = p.parse_args(argv)
    if args.quick:
        args.fleet_only = args.no_firmware = True
        args.fleet_devices = min(args.fleet_devices, 60_000)
        args.phase_s, args.fleet_kind_s, args.drain_s = 3.0, 2.0, 3.0
    if not (args.no_sync_cost or args.fleet_only):
        # What durable acknowledgements cost on this disk (one line, first).
        from devtools.bench import sync_cost

        sync_cost.main(["--commits", "300"])
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
