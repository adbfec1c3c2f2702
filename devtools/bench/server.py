"""The servers under test, each in its own process so its CPU time is its own.

    python -m devtools.bench.server bare              (stock aiocoap, one resource doing nothing)
    python -m devtools.bench.server bare-event-path   (the same with /ev's three aiocoap settings)
    python -m devtools.bench.server ingest --db-url URL --data-dir DIR   (REPLENISH_KEK in env)

Prints one JSON line `{"port": N}` once it answers, then serves until stdin closes.
`ServerProcess` starts one and reads its CPU time (all threads) from /proc.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

from devtools.bench import proc_cpu

ROOT = Path(__file__).resolve().parents[2]


async def _serve_bare(ready, event_path_settings: bool = False) -> None:
    """Stock aiocoap with one resource that does nothing; with `event_path_settings`,
    given the three settings the ingest's /ev has (backend/coap/event_path.py)."""
    import aiocoap
    import aiocoap.resource as resource

    from backend.coap.event_path import DirectEventSite, LeanContext, OneDatagramResource

    class Nothing(resource.Resource):
        async def render_post(self, request):
            return aiocoap.Message(code=aiocoap.CHANGED)

    class NothingOneDatagram(OneDatagramResource, Nothing):
        pass

    site = DirectEventSite() if event_path_settings else resource.Site()
    site.add_resource(["ev"], NothingOneDatagram() if event_path_settings else Nothing())
    context_type = LeanContext if event_path_settings else aiocoap.Context
    context = await context_type.create_server_context(
        site, bind=("127.0.0.1", 0), transports=["udp6"])
    from backend.runtime import bound_udp_port

    ready(bound_udp_port(context))
    try:
        await _stdin_closed()
    finally:
        await context.shutdown()


async def _serve_ingest(ready, db_url: str, data_dir: Path, tune: bool,
                        processes: int = 1) -> None:
    from backend.config import Settings
    from backend.gc_tuning import tune_gc
    from backend.runtime import Backend, IngestSiblings

    settings = Settings.from_env().with_(
        data_dir=data_dir, database_url=db_url, coap_host="127.0.0.1", coap_port=0,
        http_host="127.0.0.1", http_port=0)
    if not tune:  # CPython's defaults, in the writer process too
        settings = settings.with_(gc_thresholds=(700, 10, 10))
    backend = Backend(settings)
    await backend.start()
    # More ingest-only processes on the same port, as `replenish run --ingest-processes`.
    os.environ.update(DATABASE_URL=db_url, REPLENISH_DATA_DIR=str(data_dir),
                      REPLENISH_COAP_HOST="127.0.0.1")
    siblings = IngestSiblings(backend.coap_port, processes - 1)
    await siblings.start()
    await _until_bound(backend.coap_port, processes)
    if tune:
        tune_gc(asyncio.get_running_loop(), settings)
    ready(backend.coap_port)
    try:
        await _stdin_closed()
    finally:
        await siblings.stop()
        await backend.stop()


async def _until_bound(port: int, sockets: int) -> None:
    """Wait (bounded) until `sockets` UDP sockets listen on `port` (/proc/net/udp*)."""
    for _ in range(600):
        found = 0
        for table in ("/proc/net/udp", "/proc/net/udp6"):
            with open(table) as f:
                found += sum(1 for line in f.readlines()[1:]
                             if int(line.split()[1].rsplit(":", 1)[1], 16) == port)
        if found >= sockets:
            return
        await asyncio.sleep(0.1)
    raise RuntimeError(f"only {found} of {sockets} ingest processes bound port {port}")


async def _stdin_closed() -> None:
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.buffer.read)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.bench.server")
    parser.add_argument("kind", choices=["bare", "bare-event-path", "ingest"])
    parser.add_argument("--db-url")
    parser.add_argument("--data-dir", type=Path)
    parser.add_argument("--profile", type=Path,
                        help="write a cProfile (the event loop thread's CPU time) here")
    parser.add_argument("--processes", type=int, default=1,
                        help="ingest processes sharing the port (SO_REUSEPORT)")
    parser.add_argument("--default-gc", action="store_true",
                        help="ingest: keep CPython's GC settings (`replenish run` tunes them)")
    parser.add_argument("--log-level", default="INFO",
                        help="INFO is what `replenish run` logs (one line per event)")
    args = parser.parse_args(argv)
    # As `replenish run` sets it up (backend/cli.py), to stderr.
    logging.basicConfig(level=args.log_level,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("coap").setLevel(logging.WARNING)

    def ready(port: int) -> None:
        print(json.dumps({"port": port}), flush=True)

    if args.kind in ("bare", "bare-event-path"):
        serve = lambda: _serve_bare(ready, args.kind != "bare")  # noqa: E731
    else:
        serve = lambda: _serve_ingest(ready, args.db_url, args.data_dir,  # noqa: E731
                                      not args.default_gc, args.processes)
    if args.profile:
        import cProfile
        import time

        # The event loop thread's CPU time (not wall time: idle waits in epoll and a
        # loaded host's preemptions would dominate; not the process's, which counts the
        # web app's threads against whatever the loop thread was running).
        profile = cProfile.Profile(time.thread_time)
        try:
            profile.runcall(asyncio.run, serve())
        finally:
            profile.dump_stats(str(args.profile))
    else:
        asyncio.run(serve())
    return 0


class ServerProcess:
    """A server under test in a child process; `cpu_s()` is its CPU time so far."""

    def __init__(self, kind: str, *, db_url: str | None = None, data_dir: Path | None = None,
                 kek_hex: str | None = None, log_path: Path | None = None,
                 log_level: str = "INFO", profile: Path | None = None, processes: int = 1,
                 default_gc: bool = False):
        argv = [sys.executable, "-m", "devtools.bench.server", kind, "--log-level", log_level,
                "--processes", str(processes)] + (["--default-gc"] if default_gc else [])
        if profile:
            argv += ["--profile", str(profile)]
        if db_url:
            argv += ["--db-url", db_url, "--data-dir", str(data_dir)]
        env = dict(os.environ)
        if kek_hex:
            env["REPLENISH_KEK"] = kek_hex
        self._log = open(log_path, "wb") if log_path else subprocess.DEVNULL
        self.proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self._log)
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait(30)
            raise RuntimeError(f"bench server {kind} did not start (exit {self.proc.returncode})"
                               + (f"; see {log_path}" if log_path else ""))
        self.port = json.loads(line)["port"]
        self.pid = self.proc.pid
        self.processes = processes

    def cpu_s(self) -> float:
        """User + system CPU seconds of the server: all threads of the process and of
        its descendants (the ingest writer runs in a child of the fork server), those
        that ended too (proc_cpu.py)."""
        return proc_cpu.tree_cpu_s(self.pid)

    def cpu_split_s(self) -> tuple[float, float]:
        """(this process, its descendants): for the ingest, the event loop's process
        (with the web app's and the order worker's threads) and the writer process
        (with the fork server it comes from, which idles; and any that ended)."""
        own, reaped = proc_cpu.ticks(self.pid)
        descendants = [pid for pid in proc_cpu.tree(self.pid) if pid != self.pid]
        return (proc_cpu.seconds(own), proc_cpu.seconds(
            reaped + sum(sum(proc_cpu.ticks(pid)) for pid in descendants)))

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc.stdout.close()
        if self._log is not subprocess.DEVNULL:
            self._log.close()

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


if __name__ == "__main__":
    sys.exit(main())
