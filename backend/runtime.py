"""Start and stop the whole backend: CoAP ingest, fulfillment worker and web app."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import signal
import sys
import threading

import aiocoap
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from waitress import wasyncore
from waitress.server import create_server

from backend.accounts.kek_guard import open_keyring
from backend.coap import port_owner
from backend.coap.event_path import LeanContext
from backend.coap.ratelimit import limiter_for
from backend.coap.server import OverloadGuard, OverloadPolicy, build_site
from backend.coap.unparsable import QuietUnparsable
from backend.config import Settings
from backend.errors import ConfigError
from backend.gc_tuning import tune_gc
from backend.metrics import Metrics
from backend.ingest.commit_log import CommitLog
from backend.ingest.decide import IngestConfig
from backend.ingest.pipeline import GroupCommitPipeline, Pipeline
from backend.ingest.writer_process import ProcessPipeline
from backend.orders.outbound import AddressPolicy, AddressRefused
from backend.orders import outbox
from backend.orders.worker import OrderWorker
from backend.storage.db import (
    check_schema,
    make_engine,
    make_sessionmaker,
    secure_data,
    sqlite_path,
    utcnow,
)
from backend.web import create_app

log = logging.getLogger(__name__)


ROLES = ("ingest", "web", "worker")
# Outbox kinds as metrics label them: a bounded set (never a household's own host).
_DESTINATIONS = {"household.webhook": "household_webhooks"}
# SIGTERM: each part gets this long to finish what it is doing (an answer being sent, a
# commit); a part still busy after it (an outbound call that hangs) is left behind.
STOP_GRACE_S = 3.0
# ... and if the process has still not exited this long after the signal, it exits
# anyway (threads that a library joins at exit, a hung socket): stopping is bounded.
STOP_DEADLINE_S = 10.0


class Backend:
    """One process worth of backend. `await start()`, then `await stop()`.

    `roles` picks what this process runs: the CoAP ingest, the web app, the order
    worker (holds, outbox, simulator). Every role keeps its state in the database, so
    any number of processes can run any roles against one database (docs/deployment.md).
    """

    def __init__(self, settings: Settings, create_kek: bool = False,
                 roles: tuple[str, ...] | frozenset[str] = ROLES):
        unknown = set(roles) - set(ROLES)
        if unknown or not roles:
            raise ConfigError(f"roles must be some of {', '.join(ROLES)}")
        self.roles = frozenset(roles)
        self.settings = settings
        if "worker" in self.roles:
            check_merchant_url(settings)
        secure_data(settings)
        self.engine = make_engine(settings.db_url)
        self.sessions = make_sessionmaker(self.engine)
        self.writer_sessions = make_sessionmaker(self.engine, writer=True)
        try:
            check_schema(self.engine, settings.db_url)  # else "run `replenish db upgrade`"
            # Never a new KEK over stored keys: a missing or wrong one stops the start here.
            self.keyring = open_keyring(settings, self.sessions, create=create_kek)
        except BaseException:
            self.engine.dispose()
            raise
        self.metrics = Metrics()
        self.commit_log = CommitLog()
        self.pipeline = _pipeline(settings, self.writer_sessions, self.keyring,
                                  self._on_batch)
        self.order_worker = OrderWorker(self.writer_sessions, settings, readers=self.sessions,
                                        metrics=self.metrics)
        self.metrics.add_source(self._collect)
        self._coap: aiocoap.Context | None = None
        self.overload: OverloadGuard | None = None
        self.unparsable: QuietUnparsable | None = None
        self._http = None
        self._http_thread: threading.Thread | None = None
        self.http_port = settings.http_port
        self.coap_port = settings.coap_port
        self._port: port_owner.PortOwner | None = None
        self._started: set[str] = set()

    async def start(self) -> None:
        """Start the roles; if one cannot start (a port in use), what started is stopped
        again and the ConfigError says why in one line."""
        try:
            # The web port is bound first: `replenish run` twice on one data folder is
            # refused there, before the second one joins the first's CoAP port.
            if "web" in self.roles:
                self._bind_web()
            if "ingest" in self.roles:
                await self._start_ingest()
            if "web" in self.roles:
                self._serve_web()
        except BaseException:
            await self.stop()
            raise
        if "worker" in self.roles:
            self.order_worker.start()
            self._started.add("worker")
            merchant = self.settings.merchant_url or "none (built-in simulator)"
            log.info("order worker running; merchant webhook: %s; simulator: one stage "
                     "every %.1f s", merchant, self.settings.simulator.step_s)

    async def _start_ingest(self) -> None:
        s = self.settings
        loop = asyncio.get_running_loop()
        self.unparsable = QuietUnparsable(loop)
        self.unparsable.install(loop)
        deployment = deployment_of(s.db_url)
        if s.coap_port:  # a fixed port: ours (or our deployment's) before we bind it
            self._port = port_owner.claim(s.run_dir, s.coap_port, deployment)
        self.pipeline.start()
        self._started.add("ingest")
        # UDP only: protocol v1 is CoAP over UDP (aiocoap would add CoAP over TCP).
        # aiocoap sets SO_REUSEPORT: several ingest processes can share the port.
        self.limiter = limiter_for(s)
        self.overload = OverloadGuard(self.pipeline, OverloadPolicy(
            max_waiting=s.overload_max_waiting, retry_after_s=s.overload_retry_s))
        try:
            self._coap = await LeanContext.create_server_context(
                build_site(self.pipeline, self.sessions, self.keyring, self.overload,
                           self.limiter, s.discovery_from),
                bind=(s.coap_host, s.coap_port), transports=["udp6"])
        except OSError as err:
            if err.errno != errno.EADDRINUSE:
                raise
            raise ConfigError(f"udp port {s.coap_port} on {s.coap_host} is in use by a "
                              "program that does not share it (not Replenish, or another "
                              "user's): stop it, or set REPLENISH_COAP_PORT / --coap-port"
                              ) from None
        self.overload.watch_socket(bound_udp_socket(self._coap))
        self.coap_port = bound_udp_port(self._coap)
        if self._port is None:  # port 0: the kernel chose a free one; record it as ours
            self._port = port_owner.claim(s.run_dir, self.coap_port, deployment)
        log.info("CoAP ingest listening on udp %s:%d (POST /ev)", s.coap_host, self.coap_port)

    def _bind_web(self) -> None:
        s = self.settings
        app = create_app(self.sessions, self.writer_sessions, s, metrics=self.metrics)
        try:
            self._http = create_server(app, host=s.http_host, port=s.http_port, threads=4)
        except OSError as err:
            if err.errno != errno.EADDRINUSE:
                raise
            raise ConfigError(f"tcp port {s.http_port} on {s.http_host} is in use (is "
                              "`replenish run` already running here?): stop it, or set "
                              "REPLENISH_HTTP_PORT / --http-port") from None
        self.http_port = int(self._http.effective_port)  # the real one when asked for 0

    def _serve_web(self) -> None:
        s = self.settings
        self._http_thread = threading.Thread(target=self._http.run, name="http", daemon=True)
        self._http_thread.start()
        log.info("web app listening on http://%s:%d/ (API under /api/v1)",
                 s.http_host, self.http_port)

    async def stop(self) -> None:
        """Stop every part that started, each within STOP_GRACE_S."""
        if self._coap is not None:
            try:
                await asyncio.wait_for(self._coap.shutdown(), STOP_GRACE_S)
            except asyncio.TimeoutError:
                log.warning("CoAP server did not shut down within %.0f s", STOP_GRACE_S)
            self._coap = None
        if self._http is not None:
            self._stop_http()
        if "worker" in self._started:
            self._stop_worker()
        if "ingest" in self._started:
            self.pipeline.stop()
            self.commit_log.flush()
        self._started.clear()
        if self._port is not None:
            self._port.release()
            self._port = None
        self.engine.dispose()

    def _on_batch(self, outcomes: dict[str, int], commit_s: float | None) -> None:
        self.metrics.count_batch(outcomes, commit_s)
        self.commit_log.batch(outcomes)

    def _stop_worker(self) -> None:
        """The order worker stops after its round; a round stuck in an outbound call
        (a merchant or household webhook that never answers) is not waited for. Its
        thread is a daemon, and the outbox item it holds is delivered again after its
        lease, with the same idempotency key: nothing is lost or done twice."""
        stopper = threading.Thread(target=self.order_worker.stop, name="stop-worker",
                                   daemon=True)
        stopper.start()
        stopper.join(STOP_GRACE_S)
        if stopper.is_alive():
            log.warning("order worker still busy after %.0f s (an outbound call that does "
                        "not answer?): not waiting for it; its outbox item is retried "
                        "after its lease", STOP_GRACE_S)

    def _collect(self):
        """Scrape time: what this process's CoAP ingest shed and refused, what waits for
        the writer, and the outbox's depth and age (read from the database)."""
        families = []
        if self.overload is not None:
            shed = CounterMetricFamily("replenish_coap_shed", "Events answered 5.03 at once "
                                       "(writer backlog or receive buffer too full)")
            shed.add_metric([], self.overload.shed_count)
            limited = CounterMetricFamily("replenish_coap_rate_limited", "Requests answered "
                                          "5.03 by the rate limits", labels=["by"])
            for which, count in sorted(self.limiter.refused.items()):
                limited.add_metric([which], count)
            waiting = GaugeMetricFamily("replenish_ingest_waiting", "Events waiting for the "
                                        "group-commit writer")
            waiting.add_metric([], self.pipeline.waiting())
            families += [shed, limited, waiting]
        depth = GaugeMetricFamily("replenish_outbox_items", "Outbox items not done, by "
                                  "destination and status (pending, dead)",
                                  labels=["destination", "status"])
        age = GaugeMetricFamily("replenish_outbox_oldest_seconds", "Age of the oldest "
                                "pending outbox item, by destination", labels=["destination"])
        now = utcnow()
        with self.sessions() as session:
            rows = outbox.depth(session)
        for kind, status, count, oldest in rows:
            where = _DESTINATIONS.get(kind, kind)
            if kind == "order.place":
                where = "merchant" if self.settings.merchant_url else "simulator"
            depth.add_metric([where, status], count)
            if status == "pending":
                age.add_metric([where], max(0.0, (now - oldest).total_seconds()))
        return families + [depth, age]

    def _stop_http(self) -> None:
        """Close waitress from its own loop thread: closing its sockets from here lets
        that thread select() on a closed descriptor (EBADF)."""
        server, self._http = self._http, None
        if self._http_thread is None:  # bound, never served: nothing else uses it
            wasyncore.close_all(server._map)
            return
        server.trigger.pull_trigger(lambda: wasyncore.close_all(server._map))
        self._http_thread.join(timeout=STOP_GRACE_S)


def deployment_of(db_url: str) -> str:
    """What names a deployment: its database (SQLite: the file's real path; otherwise
    the URL without its password)."""
    from sqlalchemy.engine import make_url

    if (path := sqlite_path(db_url)) is not None:
        return f"sqlite:///{path.resolve()}"
    return make_url(db_url).render_as_string(hide_password=True)


def check_merchant_url(settings: Settings) -> None:
    """Refuse to start with a merchant URL the outbound policy refuses (it is checked
    again at each call: the name may resolve elsewhere later)."""
    if not settings.merchant_url:
        return
    policy = AddressPolicy(settings.webhook_allow_networks)
    try:
        policy.check(settings.merchant_url, "REPLENISH_MERCHANT_URL")
    except AddressRefused as err:
        log.error("%s", err)
        raise ConfigError(str(err)) from None


def _pipeline(settings: Settings, sessions, keyring, on_batch) -> Pipeline:
    config = IngestConfig(low_battery_mv=settings.low_battery_mv)
    if settings.ingest_writer == "thread":
        return GroupCommitPipeline(sessions, keyring, settings.group_commit_max, config,
                                   on_batch)
    if settings.ingest_writer == "process":
        if settings.writer_lanes < 1:
            raise ConfigError(f"REPLENISH_WRITER_LANES must be 1 or more, "
                              f"not {settings.writer_lanes}")
        return ProcessPipeline(settings, settings.group_commit_max, config, on_batch)
    raise ConfigError(f"REPLENISH_INGEST_WRITER must be 'process' or 'thread', "
                      f"not {settings.ingest_writer!r}")


def bound_udp_port(context: aiocoap.Context) -> int:
    """The UDP port the server got (differs from the setting when that was 0)."""
    return bound_udp_socket(context).getsockname()[1]


def bound_udp_socket(context: aiocoap.Context):
    """aiocoap's UDP server socket."""
    for interface in context.request_interfaces:
        messages = getattr(getattr(interface, "token_interface", None),
                           "message_interface", None)
        transport = getattr(messages, "transport", None)
        if transport is not None:
            return transport.get_extra_info("socket")
    raise RuntimeError("aiocoap opened no UDP transport")


async def serve_forever(settings: Settings, roles: tuple[str, ...] = ROLES,
                        ingest_processes: int = 1) -> None:
    """Run until SIGINT or SIGTERM, then stop cleanly (answers in flight are sent).

    With `ingest_processes` > 1, that many more ingest-only processes share the CoAP
    port (SO_REUSEPORT: the kernel spreads devices over them by source address)."""
    backend = Backend(settings, create_kek=True, roles=roles)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stopping.set)
    await backend.start()
    extra = IngestSiblings(backend.coap_port, ingest_processes - 1)
    await extra.start()
    tune_gc(loop, settings)
    try:
        await stopping.wait()
        log.info("stopping")
        _exit_after(STOP_DEADLINE_S)
    finally:
        await extra.stop()
        await backend.stop()
    log.info("stopped")


def _exit_after(seconds: float) -> None:
    """The last resort of a bounded stop: exit the process `seconds` from now if it is
    still there (a daemon timer: it never holds the process up itself)."""
    def exit_now():
        log.error("still not stopped %.0f s after the signal: exiting now", seconds)
        logging.shutdown()
        os._exit(1)

    timer = threading.Timer(seconds, exit_now)
    timer.daemon = True
    timer.start()


class IngestSiblings:
    """Extra `replenish run --role ingest` processes on the same CoAP port, restarted
    if one dies (each holds nothing the others need: state is in the database)."""

    def __init__(self, port: int, count: int):
        self._argv = [sys.executable, "-m", "backend", "run", "--role", "ingest",
                      "--coap-port", str(port)]
        self._count = max(0, count)
        self._procs: list[asyncio.subprocess.Process] = []
        self._watchers: list[asyncio.Task] = []
        self._stopping = False

    async def start(self) -> None:
        for number in range(self._count):
            self._watchers.append(asyncio.create_task(self._keep(number)))

    async def _keep(self, number: int) -> None:
        while not self._stopping:
            proc = await asyncio.create_subprocess_exec(*self._argv)
            self._procs.append(proc)
            log.info("ingest process %d started (pid %d)", number + 2, proc.pid)
            code = await proc.wait()
            self._procs.remove(proc)
            if not self._stopping:
                log.error("ingest process %d (pid %d) exited with %s; restarting",
                          number + 2, proc.pid, code)
                await asyncio.sleep(1.0)

    async def stop(self) -> None:
        self._stopping = True
        for proc in list(self._procs):
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
        for proc in list(self._procs):
            try:
                await asyncio.wait_for(proc.wait(), STOP_DEADLINE_S)
            except asyncio.TimeoutError:
                proc.kill()
        for watcher in self._watchers:
            watcher.cancel()
