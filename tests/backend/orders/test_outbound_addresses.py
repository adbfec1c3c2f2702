"""The outbound address policy where URLs are set and where calls are made, on the
real backend and both databases: the household's webhook_url (API), the merchant URL
(start-up), and each call again (a URL stored before, or a name that moved)."""

import logging
import threading
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from sqlalchemy import select

from backend.accounts import households
from backend.errors import ConfigError
from backend.orders import notifications
from backend.orders.fulfillment import MerchantUnreachable, PlaceRequest
from backend.orders.worker import OrderWorker
from backend.runtime import Backend
from backend.storage import db
from backend.storage.models import Household, OutboxItem
from devtools.net import api
from tests.worker_helpers import LOOPBACK_ALLOWED, Backends

REFUSED = [
    ("http://127.0.0.1:9/hook", "loopback"),
    ("http://[::1]:9/hook", "loopback"),
    ("http://169.254.169.254/latest/meta-data/", "link-local"),
    ("http://10.0.0.7/hook", "private"),
    ("http://2130706433/hook", "loopback"),
    ("http://localhost:9/hook", "loopback"),
]


class _Server:
    """Loopback HTTP: answers `status` (with `location` for redirects), counts calls."""

    def __init__(self, status=204, location=None):
        self.calls = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                self.rfile.read(int(self.headers["Content-Length"]))
                server.calls += 1
                self.send_response(status)
                if location:
                    self.send_header("Location", location)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def backends(settings, tmp_path):
    made = Backends(settings, tmp_path)
    yield made
    made.close()


@pytest.fixture
def sessions(settings):
    engine = db.make_engine(settings.db_url)
    yield db.make_sessionmaker(engine, writer=True)
    engine.dispose()


def test_webhook_url_is_refused_when_set_and_nothing_changes(backends, caplog):
    backend, world = backends.start()
    url = f"{world.api_url}/household"
    assert api("PATCH", url, world.token, {"webhook_url": "https://8.8.8.8/hook",
                                           "hold_window_s": 60})[0] == 200
    for refused, what in REFUSED:
        caplog.clear()
        status, body = api("PATCH", url, world.token,
                           {"webhook_url": refused, "hold_window_s": 5})
        assert status == 400 and body["error"]["code"] == "BadRequest", refused
        assert what in body["error"]["message"], body
        assert any("webhook_url refused" in r.getMessage() and r.levelno == logging.WARNING
                   for r in caplog.records), "a log line says so"
    with backend.sessions() as session:
        household = session.get(Household, world.household_id)
        assert (household.webhook_url, household.hold_window_s) == ("https://8.8.8.8/hook",
                                                                    60)


def test_the_allow_list_lets_an_operator_use_a_loopback_webhook(backends):
    _backend, world = backends.start(webhook_allow_networks=("127.0.0.0/8",))
    status, body = api("PATCH", f"{world.api_url}/household", world.token,
                       {"webhook_url": "http://127.0.0.1:9/hook"})
    assert status == 200 and body["webhook_url"] == "http://127.0.0.1:9/hook"
    status, _ = api("PATCH", f"{world.api_url}/household", world.token,
                    {"webhook_url": "http://[::1]:9/hook"})
    assert status == 400, "only the networks listed"


def test_a_refused_merchant_url_stops_the_start(settings):
    with pytest.raises(ConfigError, match="REPLENISH_MERCHANT_URL: 127.0.0.1 resolves to "
                                          "127.0.0.1, a loopback address"):
        Backend(settings.with_(merchant_url="http://127.0.0.1:9", merchant_secret="s"))
    with pytest.raises(ConfigError, match="link-local"):
        Backend(settings.with_(merchant_url="http://169.254.169.254", merchant_secret="s"),
                roles=("worker",))
    # An ingest-only process never calls the merchant.
    Backend(settings.with_(merchant_url="http://127.0.0.1:9"), roles=("ingest",)).engine \
        .dispose()


def _hooked_household(sessions, url: str) -> int:
    with sessions() as session, session.begin():
        household, _ = households.create(session, "Hooked")
        household.webhook_url, household.webhook_secret = url, "household-secret"
        session.flush()
        notifications.notify(session, household.id, "low_battery", "Battery low.")
        return household.id


def _item(sessions) -> OutboxItem:
    with sessions() as session:
        return session.scalars(select(OutboxItem)).one()


def test_a_stored_url_is_checked_again_at_send_time(settings, sessions, caplog):
    """A webhook_url stored while loopback was allowed (or before the policy existed)
    is not called once the allow-list no longer covers it."""
    hook = _Server()
    try:
        _hooked_household(sessions, hook.url + "/hook")
        worker = OrderWorker(sessions, settings, name="strict")  # no allow-list
        assert worker.deliver_outbox() == 1 and worker.wait_idle(30)
    finally:
        hook.close()
    assert hook.calls == 0
    item = _item(sessions)
    assert item.status == "pending" and item.last_error.startswith("refused: ")
    assert "loopback" in item.last_error and "household-secret" not in caplog.text
    assert any("webhook not sent" in r.getMessage() for r in caplog.records)


def test_a_webhook_redirect_is_not_followed(settings, sessions):
    target = _Server()
    redirect = _Server(status=302, location=target.url + "/internal")
    try:
        _hooked_household(sessions, redirect.url + "/hook")
        worker = OrderWorker(sessions, replace(settings, **LOOPBACK_ALLOWED), name="w")
        assert worker.deliver_outbox() == 1 and worker.wait_idle(30)
    finally:
        redirect.close()
        target.close()
    assert (redirect.calls, target.calls) == (1, 0)
    item = _item(sessions)
    assert item.status == "pending" and "redirects are not followed" in item.last_error


def test_a_merchant_redirect_is_not_followed(settings, sessions):
    target = _Server(status=200)
    redirect = _Server(status=308, location=target.url + "/orders")
    try:
        worker = OrderWorker(sessions, replace(settings, merchant_url=redirect.url,
                                               merchant_secret="s", **LOOPBACK_ALLOWED))
        with pytest.raises(MerchantUnreachable, match="redirects are not followed"):
            worker.merchant.place(PlaceRequest(1, "DETERGENT-1L", 1, 1, "k-1", False, 899, "EUR"),
                                  sessions)
    finally:
        redirect.close()
        target.close()
    assert (redirect.calls, target.calls) == (1, 0)
