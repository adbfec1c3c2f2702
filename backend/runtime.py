"""Start and stop the whole backend: CoAP ingest, fulfillment worker and web app."""

from __future__ import annotations

import asyncio
import logging
import signal
import threading

import aiocoap
from waitress import wasyncore
from waitress.server import create_server

from backend.coap.pipeline import GroupCommitPipeline
from backend.coap.server import build_site
from backend.config import Settings
from backend.db import make_engine, make_sessionmaker
from backend.engine import OrderEngine
from backend.ingest import IngestConfig
from backend.keys import load_keyring
from backend.web import create_app

log = logging.getLogger(__name__)


class Backend:
    """One process worth of backend. `await start()`, then `await stop()`."""

    def __init__(self, settings: Settings, create_kek: bool = False):
        self.settings = settings
        self.engine = make_engine(settings.db_url)
        self.sessions = make_sessionmaker(self.engine)
        self.writer_sessions = make_sessionmaker(self.engine, writer=True)
        self.keyring = load_keyring(settings, create=create_kek)
        self.pipeline = GroupCommitPipeline(
            self.writer_sessions, self.keyring, settings.group_commit_max,
            IngestConfig(low_battery_mv=settings.low_battery_mv))
        self.engine_worker = OrderEngine(self.writer_sessions, settings)
        self._coap: aiocoap.Context | None = None
        self._http = None
        self._http_thread: threading.Thread | None = None
        self.http_port = settings.http_port
        self.coap_port = settings.coap_port

    async def start(self) -> None:
        s = self.settings
        self.pipeline.start()
        # UDP only: protocol v1 is CoAP over UDP (aiocoap would add CoAP over TCP).
        self._coap = await aiocoap.Context.create_server_context(
            build_site(self.pipeline), bind=(s.coap_host, s.coap_port), transports=["udp6"])
        self.coap_port = bound_udp_port(self._coap)
        log.info("CoAP ingest listening on udp %s:%d (POST /ev)", s.coap_host, self.coap_port)
        app = create_app(self.sessions, self.writer_sessions, s)
        self._http = create_server(app, host=s.http_host,
                                   port=s.http_port, threads=4)
        self.http_port = int(self._http.effective_port)  # the real one when asked for 0
        self._http_thread = threading.Thread(target=self._http.run, name="http", daemon=True)
        self._http_thread.start()
        log.info("web app listening on http://%s:%d/ (API under /api/v1)",
                 s.http_host, self.http_port)
        self.engine_worker.start()
        merchant = s.merchant_url or "none (built-in simulator)"
        log.info("order engine running; merchant webhook: %s; simulator: one stage "
                 "every %.1f s", merchant, s.simulator.step_s)

    async def stop(self) -> None:
        if self._coap is not None:
            await self._coap.shutdown()
        if self._http is not None:
            self._stop_http()
        self.engine_worker.stop()
        self.pipeline.stop()
        self.engine.dispose()


    def _stop_http(self) -> None:
        """Close waitress from its own loop thread: closing its sockets from here lets
        that thread select() on a closed descriptor (EBADF)."""
        server = self._http
        server.trigger.pull_trigger(lambda: wasyncore.close_all(server._map))
        self._http_thread.join(timeout=30)
        self._http = None


def bound_udp_port(context: aiocoap.Context) -> int:
    """The UDP port the server got (differs from the setting when that was 0)."""
    for interface in context.request_interfaces:
        messages = getattr(getattr(interface, "token_interface", None),
                           "message_interface", None)
        transport = getattr(messages, "transport", None)
        if transport is not None:
            return transport.get_extra_info("socket").getsockname()[1]
    raise RuntimeError("aiocoap opened no UDP transport")


async def serve_forever(settings: Settings) -> None:
    """Run until SIGINT or SIGTERM, then stop cleanly (answers in flight are sent)."""
    backend = Backend(settings, create_kek=True)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stopping.set)
    await backend.start()
    try:
        await stopping.wait()
        log.info("stopping")
    finally:
        await backend.stop()
    log.info("stopped")
