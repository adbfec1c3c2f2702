"""`GET /metrics` on the real backend (CoAP ingest with its writer process, order worker,
web app), both databases: the figures move with what happened, the writer child's
commit times arrive through its pipe, and only allowed networks may read them."""

import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from backend.config import Settings
from backend.metrics import Metrics
from backend.protocol import Result
from backend.storage.models import Household, Order
from backend.web import create_app
from devtools.faults.blackhole import Blackhole
from devtools.net import coap_post
from tests.backend.ingest.test_ingest import answer_of, press
from tests.conftest import BackendThread, make_world
from tests.worker_helpers import LOOPBACK_ALLOWED, until


def scrape(port: int) -> dict[tuple[str, tuple], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as answer:
        assert answer.headers["Content-Type"].startswith("text/plain")
        text = answer.read().decode()
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples}


def test_metrics_follow_events_orders_and_the_outbox(settings, tmp_path):
    with Blackhole() as blackhole, \
            BackendThread(settings.with_(**LOOPBACK_ALLOWED)) as backend:
        world = make_world(backend, tmp_path / "bundles")
        before = scrape(backend.http_port)
        with backend.writer_sessions() as session, session.begin():
            household = session.get(Household, world.household_id)
            household.webhook_url, household.webhook_secret = blackhole.url, "s"
        answers = []
        for button in world.buttons:
            request = press(button, 1)
            answers.append(answer_of(button, request, coap_post(world.event_url, request)))
            coap_post(world.event_url, request)  # a retransmission: answered again
        assert [a.result for a in answers] == [Result.CREATED] * 2
        until(backend, lambda s: all(s.get(Order, a.order).state != "confirmed"
                                     and s.get(Order, a.order).placed_at
                                     for a in answers))
        until(backend, lambda s: blackhole.accepted >= 1)
        after = scrape(backend.http_port)

    def delta(name, **labels):
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0.0) - before.get(key, 0.0)

    # Two presses, each sent twice: a retransmission gets the stored answer again.
    assert delta("replenish_events_total", outcome="ordered") == 4
    assert delta("replenish_ingest_batch_events_sum") == 4, "every answer counted once"
    batches = delta("replenish_ingest_batch_events_count")
    assert batches >= 1 and delta("replenish_ingest_commit_seconds_count") == batches, \
        "the writer child's commit time came with each batch"
    assert delta("replenish_outbound_seconds_count", lane="orders", outcome="ok") == 2
    assert after[("replenish_worker_round_seconds_count", ())] >= 1
    assert after[("replenish_outbox_items", (("destination", "household_webhooks"),
                                             ("status", "pending")))] >= 1
    assert after[("replenish_outbox_oldest_seconds",
                  (("destination", "household_webhooks"),))] >= 0
    assert after[("replenish_outbound_in_flight", (("lane", "webhooks"),))] >= 1
    for name, labels in [("replenish_coap_shed_total", ()),
                         ("replenish_coap_rate_limited_total", (("by", "source"),)),
                         ("replenish_ingest_waiting", ())]:
        assert (name, labels) in after


def test_metrics_are_only_for_allowed_networks(tmp_path):
    app = create_app(None, settings=Settings(data_dir=tmp_path,
                                             metrics_from=("10.0.0.0/8",)),
                     metrics=Metrics())
    client = app.test_client()
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "10.1.2.3"}).status_code \
        == 200
    for outsider in ("127.0.0.1", "192.0.2.7", "::1"):
        assert client.get("/metrics", environ_base={"REMOTE_ADDR": outsider}).status_code \
            == 404
