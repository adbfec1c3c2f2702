"""The order state machine and its audit trail, on SQLite and on PostgreSQL."""

from __future__ import annotations

import itertools
import threading

import pytest
from sqlalchemy import func, select, update

from backend.errors import Conflict
from backend.orders import lifecycle as orders
from backend.orders.lifecycle import ALLOWED, OPEN_STATES, IllegalTransition, State
from backend.storage.models import Order, OrderTransition
from tests.conftest import DATABASES, household_with_device

on_every_database = pytest.mark.parametrize("db_url", DATABASES, indirect=True)

LEGAL = [(a, b) for a, nexts in ALLOWED.items() for b in sorted(nexts)]
ILLEGAL = [(a, b) for a, b in itertools.product(State, State) if b not in ALLOWED[a]]


@pytest.fixture
def new_order(sessions):
    """Factory: a fresh order in `state` (history: its creation only); returns its id."""
    with sessions() as session, session.begin():
        ids = household_with_device(session, "orders-test", "00112233445566aa")

    def make(state: State = State.PENDING) -> int:
        with sessions() as session, session.begin():
            order = orders.create(session, actor="test:create", hold_window_s=900,
                                  household_id=ids[0], device_pk=ids[1], slot_index=0,
                                  product_sku="SKU-1", quantity=1)
            if state is not State.PENDING:  # put it there directly, as a fixture
                session.execute(update(Order).where(Order.id == order.id)
                                .values(state=state))
            return order.id

    return make


def history(sessions, order_id: int) -> list[tuple]:
    with sessions() as session:
        return [(t.from_state, t.to_state, t.actor, t.at) for t in session.scalars(
            select(OrderTransition).where(OrderTransition.order_id == order_id)
            .order_by(OrderTransition.id))]


def state_of(sessions, order_id: int) -> str:
    with sessions() as session:
        return session.scalar(select(Order.state).where(Order.id == order_id))


def test_the_state_table():
    # awaiting_consent is open: a second press waits behind it, never a second order.
    assert OPEN_STATES == {State.AWAITING_CONSENT, State.PENDING, State.CONFIRMED,
                           State.PLACED, State.BACKORDERED, State.SHIPPED}
    assert set(ALLOWED) == set(State)
    assert {s for s in State if not ALLOWED[s]} == {
        State.DELIVERED, State.CANCELLED, State.FAILED}
    assert issubclass(IllegalTransition, Conflict)


@on_every_database
def test_create_records_the_first_step(sessions, new_order):
    order_id = new_order()
    assert state_of(sessions, order_id) == "pending"
    [(from_state, to_state, actor, at)] = history(sessions, order_id)
    assert (from_state, to_state, actor) == (None, "pending", "test:create")
    assert at is not None


@on_every_database
@pytest.mark.parametrize("from_state, to_state", LEGAL, ids=lambda s: str(s))
def test_every_allowed_transition_is_recorded(sessions, new_order, from_state, to_state):
    order_id = new_order(from_state)
    before = history(sessions, order_id)
    with sessions() as session, session.begin():
        order = session.get(Order, order_id)
        reason = "delivery_failed" if to_state is State.FAILED else None
        assert orders.transition(session, order, to_state, actor="test:worker",
                                 reason=reason) is True
        assert order.state == to_state
    after = history(sessions, order_id)
    assert after[:-1] == before and len(after) == len(before) + 1
    from_, to, actor, at = after[-1]
    assert (from_, to, actor) == (from_state, to_state, "test:worker")
    with sessions() as session:
        order = session.get(Order, order_id)
        assert order.state == to_state
        assert at == order.updated_at and at >= order.created_at


@on_every_database
def test_a_whole_life_pending_to_delivered(sessions, new_order):
    order_id = new_order()
    with sessions() as session, session.begin():
        order = session.get(Order, order_id)
        for step in (State.CONFIRMED, State.PLACED, State.SHIPPED, State.DELIVERED):
            assert orders.transition(session, order, step, actor=f"test:{step}")
    steps = history(sessions, order_id)
    assert [(f, t, a) for f, t, a, _ in steps] == [
        (None, "pending", "test:create"), ("pending", "confirmed", "test:confirmed"),
        ("confirmed", "placed", "test:placed"),
        ("placed", "shipped", "test:shipped"), ("shipped", "delivered", "test:delivered")]
    times = [at for *_, at in steps]
    assert times == sorted(times)


@on_every_database
@pytest.mark.parametrize("from_state, to_state", ILLEGAL, ids=lambda s: str(s))
def test_illegal_transitions_raise_and_record_nothing(sessions, new_order, from_state,
                                                      to_state):
    order_id = new_order(from_state)
    before = history(sessions, order_id)
    with sessions() as session, session.begin():
        order = session.get(Order, order_id)
        with pytest.raises(IllegalTransition, match=f"from {from_state} to {to_state}"):
            orders.transition(session, order, to_state, actor="test:worker")
        assert order.state == from_state
    assert history(sessions, order_id) == before
    assert state_of(sessions, order_id) == from_state


@on_every_database
def test_named_illegal_transitions(sessions, new_order):
    assert (State.DELIVERED, State.PLACED) in ILLEGAL
    assert (State.PENDING, State.DELIVERED) in ILLEGAL
    for start, target in ((State.DELIVERED, State.PLACED), (State.PENDING, State.DELIVERED)):
        order_id = new_order(start)
        with sessions() as session, session.begin():
            with pytest.raises(IllegalTransition):
                orders.transition(session, session.get(Order, order_id), target,
                                  actor="test")
        assert len(history(sessions, order_id)) == 1 and state_of(sessions, order_id) == start


@on_every_database
def test_stale_transition_returns_false_and_records_nothing(sessions, new_order):
    """A worker holding an old copy loses: the guarded UPDATE matches no row."""
    order_id = new_order()
    with sessions() as stale:
        with stale.begin():
            old = stale.get(Order, order_id)
        with sessions() as fresh, fresh.begin():
            orders.transition(fresh, fresh.get(Order, order_id), State.CANCELLED,
                              actor="test:first")
        with stale.begin():
            assert orders.transition(stale, old, State.CONFIRMED, actor="test:late") is False
        assert old.state == "cancelled", "the loser sees the winner's state"
    assert [t for _, t, _, _ in history(sessions, order_id)] == ["pending", "cancelled"]


@on_every_database
def test_concurrent_transitions_record_the_step_once(sessions, new_order):
    for round_ in range(5):
        order_id = new_order()
        loaded = threading.Barrier(2)
        results, errors = [], []

        def worker(name: str):
            try:
                with sessions() as session:
                    with session.begin():
                        order = session.get(Order, order_id)
                        assert order.state == "pending"
                    loaded.wait(timeout=30)  # both hold a "pending" copy now
                    with session.begin():
                        results.append(orders.transition(session, order, State.CONFIRMED,
                                                         actor=f"test:{name}"))
            except BaseException as err:  # reported below, in the test's thread
                errors.append(err)
                loaded.abort()

        threads = [threading.Thread(target=worker, args=(n,)) for n in ("a", "b")]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert not errors, errors
        assert sorted(results) == [False, True], f"round {round_}: {results}"
        steps = history(sessions, order_id)
        assert [(f, t) for f, t, _, _ in steps] == [(None, "pending"),
                                                    ("pending", "confirmed")]
        assert state_of(sessions, order_id) == "confirmed"
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(OrderTransition).where(
            OrderTransition.to_state == "confirmed")) == 5
