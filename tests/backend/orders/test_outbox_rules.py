"""The outbox's rules (backend/orders/outbox.py) called directly on a migrated database,
no worker or merchant started: what is due, what a claim leases and counts, who may
complete, defer or retry an item, when it dies, and what the metrics see. Fast: `make
mutate` runs these first for the module; the workers and merchants are in test_outbox.py."""

from __future__ import annotations

import json
import random
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from backend.orders import outbox
from backend.storage.db import utcnow
from backend.storage.models import OutboxItem
from tests.conftest import DATABASES

pytestmark = pytest.mark.parametrize("db_url", DATABASES, indirect=True)


def put(sessions, *kinds: str) -> list[int]:
    """One pending item per kind, due now; their ids in order."""
    with sessions() as session, session.begin():
        for n, kind in enumerate(kinds):
            outbox.enqueue(session, kind, {"n": n, "a": [kind]}, key=f"{kind}-{n}")
    with sessions() as session:
        return list(session.scalars(select(OutboxItem.id).order_by(OutboxItem.id)))


def item(sessions, item_id: int) -> OutboxItem:
    with sessions() as session:
        found = session.get(OutboxItem, item_id)
        session.expunge(found)
        return found


def set_item(sessions, item_id: int, **values) -> None:
    with sessions() as session, session.begin():
        session.execute(update(OutboxItem).where(OutboxItem.id == item_id).values(**values))


def claim(sessions, worker="w", **options) -> list[outbox.Claimed]:
    with sessions() as session, session.begin():
        return outbox.claim(session, worker, **options)


def test_enqueue_writes_a_pending_item_due_now(sessions):
    before = utcnow()
    with sessions() as session, session.begin():
        outbox.enqueue(session, "order.place", {"order_id": 7, "a": 1}, key="k-7",
                       order_id=None)
    with sessions() as session:
        row = session.scalars(select(OutboxItem)).one()
        assert (row.kind, row.payload, row.idempotency_key, row.order_id, row.status,
                row.attempts, row.locked_by) == (
            "order.place", '{"a": 1, "order_id": 7}', "k-7", None, "pending", 0, None)
        assert before <= row.next_attempt_at <= utcnow()


def test_a_claim_leases_due_items_in_order_and_counts_the_attempt(sessions):
    ids = put(sessions, "a", "b", "c")
    now = utcnow()
    got = claim(sessions, "w1", limit=2, now=now, lease_s=30)
    assert got == [outbox.Claimed(ids[0], "a", {"n": 0, "a": ["a"]}, "a-0", 1),
                   outbox.Claimed(ids[1], "b", {"n": 1, "a": ["b"]}, "b-1", 1)]
    first = item(sessions, ids[0])
    assert (first.locked_by, first.locked_until, first.attempts) == (
        "w1", now + timedelta(seconds=30), 1)
    assert claim(sessions, "w2", now=now) == [outbox.Claimed(ids[2], "c", {"n": 2,
                                                                           "a": ["c"]},
                                                             "c-2", 1)]
    assert claim(sessions, "w3", now=now) == [], "all leased"
    assert claim(sessions, "w3") == [], "without a `now`: the clock, leases not run out"


def test_a_lease_is_taken_again_only_after_it_ran_out(sessions):
    (only,) = put(sessions, "a")
    now = utcnow()
    claim(sessions, "w1", now=now, lease_s=10)
    until = now + timedelta(seconds=10)
    assert claim(sessions, "w2", now=until) == [], "at the expiry instant it still holds"
    (again,) = claim(sessions, "w2", now=until + timedelta(microseconds=1))
    assert (again.id, again.attempts) == (only, 2)
    assert item(sessions, only).locked_by == "w2"


def test_an_item_is_due_from_its_next_attempt_time_and_only_while_pending(sessions):
    ids = put(sessions, "a", "b")
    at = utcnow() + timedelta(seconds=60)
    set_item(sessions, ids[0], next_attempt_at=at)
    set_item(sessions, ids[1], status="dead")
    assert claim(sessions, now=at - timedelta(microseconds=1)) == []
    assert [c.id for c in claim(sessions, now=at)] == [ids[0]]
    with sessions() as session:
        assert list(session.scalars(outbox.due_query(at))) == []  # leased now


def test_a_claim_takes_ten_items_unless_told(sessions):
    ids = put(sessions, *"abcdefghijk")
    assert [c.id for c in claim(sessions)] == ids[:10]
    assert [c.id for c in claim(sessions)] == ids[10:]


def test_kinds_and_other_than_choose_what_is_claimed(sessions):
    ids = put(sessions, "a", "b", "c")
    assert [c.id for c in claim(sessions, kinds=("b",))] == [ids[1]]
    assert [c.id for c in claim(sessions, other_than=("a",))] == [ids[2]]
    assert [c.id for c in claim(sessions, kinds=("b", "c"))] == []
    assert [c.id for c in claim(sessions)] == [ids[0]]


def test_only_the_holder_completes_and_a_done_item_is_not_due(sessions):
    (only,) = put(sessions, "a")
    claim(sessions, "w1")
    with sessions() as session, session.begin():
        for other in ("w0", "w2"):  # names sorting before and after the holder's
            assert outbox.complete(session, only, other) is False
            assert outbox.defer(session, only, other, 5) is False
            assert outbox.retry_later(session, only, other, "boom") == "lost"
        assert outbox.complete(session, only + 1, "w1") is False
    before = utcnow()
    with sessions() as session, session.begin():
        assert outbox.complete(session, only, "w1") is True
    done = item(sessions, only)
    assert (done.status, done.locked_by, done.locked_until) == ("done", None, None)
    assert before <= done.done_at <= utcnow()
    with sessions() as session, session.begin():
        assert outbox.complete(session, only, "w1") is False, "not pending any more"
    assert claim(sessions, now=utcnow() + timedelta(days=1)) == []


def test_defer_gives_the_item_back_untried(sessions):
    (only,) = put(sessions, "a")
    claim(sessions, "w1")
    with sessions() as session, session.begin():
        assert outbox.defer(session, only, "w2", 5) is False
    before = utcnow()
    with sessions() as session, session.begin():
        assert outbox.defer(session, only, "w1", 5) is True
    back = item(sessions, only)
    assert (back.attempts, back.locked_by, back.locked_until, back.status) == (
        0, None, None, "pending")
    assert (before + timedelta(seconds=5) <= back.next_attempt_at
            <= utcnow() + timedelta(seconds=5))
    claim(sessions, "w1", now=back.next_attempt_at)
    set_item(sessions, only, attempts=3)  # three attempts counted, the last untried
    with sessions() as session, session.begin():
        assert outbox.defer(session, only, "w1", 0)
    assert item(sessions, only).attempts == 2
    claim(sessions, "w1", now=utcnow())
    set_item(sessions, only, attempts=0)
    with sessions() as session, session.begin():
        assert outbox.defer(session, only, "w1", 0)
    assert item(sessions, only).attempts == 0, "never below zero"


def test_a_failed_attempt_backs_off_and_the_last_one_kills_the_item(sessions):
    (only,) = put(sessions, "a")
    with sessions() as session, session.begin():
        assert outbox.retry_later(session, only, "nobody", "boom") == "lost"
    for attempt in range(1, outbox.MAX_ATTEMPTS):
        (got,) = claim(sessions, "w1", now=item(sessions, only).next_attempt_at)
        assert got.attempts == attempt
        random.seed(attempt)  # backoff_s draws from the module-level generator
        expected = timedelta(seconds=random.Random(attempt).uniform(
            0, min(outbox.MAX_DELAY_S, outbox.BASE_DELAY_S * 2 ** attempt)))
        before = utcnow()
        with sessions() as session, session.begin():
            assert outbox.retry_later(session, only, "w1", "x" * 600) == "pending"
        row = item(sessions, only)
        assert (row.status, row.locked_by, row.locked_until, row.last_error) == (
            "pending", None, None, "x" * 500)
        assert before + expected <= row.next_attempt_at <= utcnow() + expected
    (last,) = claim(sessions, "w1", now=item(sessions, only).next_attempt_at)
    assert last.attempts == outbox.MAX_ATTEMPTS == 8
    with sessions() as session, session.begin():
        assert outbox.retry_later(session, only, "w1", "still down") == "dead"
    dead = item(sessions, only)
    assert (dead.status, dead.last_error, dead.locked_by) == ("dead", "still down", None)
    assert claim(sessions, now=utcnow() + timedelta(days=1)) == []


def test_depth_counts_what_is_not_done_by_kind_and_status(sessions):
    ids = put(sessions, "a", "a", "b", "b")
    set_item(sessions, ids[1], created_at=utcnow() - timedelta(hours=1))
    set_item(sessions, ids[2], status="dead")
    set_item(sessions, ids[3], status="done")
    with sessions() as session:
        rows = sorted(outbox.depth(session))
        oldest = session.get(OutboxItem, ids[1]).created_at
        dead_at = session.get(OutboxItem, ids[2]).created_at
    assert rows == [("a", "pending", 2, oldest), ("b", "dead", 1, dead_at)]
    assert json.loads(item(sessions, ids[0]).payload) == {"a": ["a"], "n": 0}


def test_an_item_past_its_last_attempt_dies_at_the_next_failure(sessions):
    """A worker that died holding the last attempt: the item is claimed once more when
    the lease runs out (attempt 9); its failure must still kill it."""
    (only,) = put(sessions, "a")
    for _ in range(outbox.MAX_ATTEMPTS + 1):
        (got,) = claim(sessions, "w1", now=utcnow() + timedelta(days=1), lease_s=0)
    assert got.attempts == outbox.MAX_ATTEMPTS + 1
    with sessions() as session, session.begin():
        assert outbox.retry_later(session, only, "w1", "down") == "dead"


def test_a_claim_reports_the_counted_attempt_even_with_the_row_loaded(sessions):
    (only,) = put(sessions, "a")
    with sessions() as session, session.begin():
        loaded = session.get(OutboxItem, only)  # held: it stays in the identity map
        assert loaded.attempts == 0
        (got,) = outbox.claim(session, "w1")
        assert loaded.attempts == 1
    assert got.attempts == 1
    with pytest.raises(AttributeError):  # frozen: a handler cannot alter what it got
        got.attempts = 0
