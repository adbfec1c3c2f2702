"""Prometheus metrics, one registry per backend process (docs/operations.md, "Metrics").

Two kinds, to keep the ingest hot path cheap:
- measured where it happens, once per batch or per call (never per datagram): events
  by outcome, batch size and commit time (the writer child measures its commit and
  sends the figure up the pipe with the batch's answers), outbound call time, items
  deferred, breakers opened, order-worker round time;
- read at scrape time from counters the code keeps anyway (`add_source`): requests
  shed by the overload guard, refused by the rate limits, events waiting for the
  writer, outbox depth and age, calls in flight.

A registry per `Metrics` rather than prometheus_client's global one: several backends
can live in one process (the tests do), and each serves only its own figures.
"""

from __future__ import annotations

from typing import Callable, Iterable

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import Metric

SECONDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
           30.0)
BATCH = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class _Source:
    def __init__(self, collect: Callable[[], Iterable[Metric]]):
        self.collect = collect


class Metrics:
    def __init__(self):
        r = self.registry = CollectorRegistry(auto_describe=False)
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        GCCollector(registry=r)
        self.events = Counter("replenish_events", "Events answered by the writer, by "
                              "outcome (docs/protocol.md)", ["outcome"], registry=r)
        self.batch_events = Histogram("replenish_ingest_batch_events", "Events per group "
                                      "commit", buckets=BATCH, registry=r)
        self.commit_seconds = Histogram("replenish_ingest_commit_seconds", "Deciding and "
                                        "committing one batch, in the writer",
                                        buckets=SECONDS, registry=r)
        self.outbound_seconds = Histogram("replenish_outbound_seconds", "Outbound calls "
                                          "(lane orders: merchant or simulator; lane "
                                          "webhooks: household webhooks) by outcome",
                                          ["lane", "outcome"], buckets=SECONDS, registry=r)
        self.outbound_deferred = Counter("replenish_outbound_deferred", "Outbox items given "
                                         "back untried: destination or household busy, or "
                                         "the destination's breaker open",
                                         ["lane", "why"], registry=r)
        self.breaker_opened = Counter("replenish_outbound_breaker_opened", "Circuit "
                                      "breakers opened", ["lane"], registry=r)
        self.worker_round_seconds = Histogram("replenish_worker_round_seconds", "One order "
                                              "worker round (holds, outbox hand-off, "
                                              "simulator, offline checks)",
                                              buckets=SECONDS, registry=r)

    def add_source(self, collect: Callable[[], Iterable[Metric]]) -> None:
        """Figures read when scraped: `collect()` yields metric families."""
        self.registry.register(_Source(collect))

    def count_batch(self, outcomes: dict[str, int], commit_s: float | None) -> None:
        """One group commit: how many events per outcome, and its commit time."""
        for outcome, count in outcomes.items():
            self.events.labels(outcome).inc(count)
        self.batch_events.observe(sum(outcomes.values()))
        if commit_s is not None:
            self.commit_seconds.observe(commit_s)

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
