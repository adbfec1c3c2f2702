"""The household's order policies (backend/orders/policies.py) on their own, on SQLite
and PostgreSQL: which order is open on a slot, and the daily and monthly limits at
their edges. Fast (no backend started): `make mutate` runs these for the module; the
same rules through real presses are in test_worker.py."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from sqlalchemy import update

from backend.orders import lifecycle as orders
from backend.orders import policies
from backend.orders.lifecycle import OPEN_STATES, State
from backend.storage.models import Household, Order
from tests.conftest import DATABASES, household_with_device

pytestmark = pytest.mark.parametrize("db_url", DATABASES, indirect=True)

NOW = datetime(2026, 3, 15, 12, 0, 0)


@pytest.fixture
def home(sessions):
    with sessions() as session, session.begin():
        return household_with_device(session, "policies", "00112233445566bb")


def add(session, home, slot=0, state=State.PENDING, total=100, created=NOW) -> int:
    order = orders.create(session, actor="test", hold_window_s=0, household_id=home[0],
                          device_pk=home[1], slot_index=slot, product_sku="SKU-1",
                          quantity=1, total_cents=total)
    session.execute(update(Order).where(Order.id == order.id)
                    .values(state=state, created_at=created))
    return order.id


def test_open_order_is_per_slot_newest_first_and_only_in_open_states(sessions, home):
    with sessions() as session, session.begin():
        assert policies.open_order(session, home[1], 0) is None
        first = add(session, home, slot=0)
        newer = add(session, home, slot=0, state=State.SHIPPED)
        other_slot = add(session, home, slot=1, state=State.PLACED)
        assert policies.open_order(session, home[1], 0).id == newer
        assert policies.open_order(session, home[1], 1).id == other_slot
        assert policies.open_order(session, home[1], 2) is None
        assert policies.open_order(session, home[1] + 1, 0) is None
        session.execute(update(Order).where(Order.id == newer).values(state=State.DELIVERED))
        assert policies.open_order(session, home[1], 0).id == first
        for state in State:
            session.execute(update(Order).where(Order.id == first).values(state=state))
            found = policies.open_order(session, home[1], 0)
            assert (found is not None) == (state in OPEN_STATES), state


def _household(session, home, **limits) -> Household:
    household = session.get(Household, home[0])
    household.max_orders_per_day, household.monthly_limit_cents = None, None
    for name, value in limits.items():
        setattr(household, name, value)
    return household


def test_open_order_and_limits_look_at_this_device_and_household_only(sessions, home):
    """A second household with a second device (higher ids) and its own orders."""
    with sessions() as session, session.begin():
        other = household_with_device(session, "policies-2", "00112233445566cc")
        add(session, other, slot=0, total=900)
        assert policies.open_order(session, home[1], 0) is None
        household = _household(session, home, max_orders_per_day=1, monthly_limit_cents=100)
        assert policies.blocked(session, household, 100, NOW) is None
        add(session, home, slot=0, total=50)
        assert policies.open_order(session, other[1], 0).household_id == other[0]
        assert policies.blocked(session, household, 1, NOW) is policies.Blocked.DAILY_LIMIT
        theirs = _household(session, other, max_orders_per_day=2)  # their one order only
        assert policies.blocked(session, theirs, 1, NOW) is None
    # docs/protocol.md, answer key 6: 1 daily limit, 2 monthly limit
    assert (int(policies.Blocked.DAILY_LIMIT), int(policies.Blocked.MONTHLY_LIMIT)) == (1, 2)


def test_no_limits_block_nothing(sessions, home):
    with sessions() as session, session.begin():
        for _ in range(3):
            add(session, home, total=10_000)
        assert policies.blocked(session, _household(session, home), 10_000, NOW) is None


def test_daily_limit_counts_the_last_24_hours_without_cancelled_or_failed(sessions, home):
    with sessions() as session, session.begin():
        household = _household(session, home, max_orders_per_day=2)
        add(session, home, created=NOW - timedelta(days=1))  # exactly a day ago: not counted
        add(session, home, state=State.CANCELLED, created=NOW - timedelta(hours=1))
        add(session, home, state=State.FAILED, created=NOW - timedelta(hours=1))
        add(session, home, created=NOW - timedelta(hours=23, minutes=59))
        assert policies.blocked(session, household, 1, NOW) is None  # 1 of 2
        add(session, home, state=State.DELIVERED, created=NOW - timedelta(hours=2))
        assert policies.blocked(session, household, 1, NOW) is policies.Blocked.DAILY_LIMIT
        household.max_orders_per_day = 3
        assert policies.blocked(session, household, 1, NOW) is None
        household.max_orders_per_day = 0
        assert policies.blocked(session, household, 1, NOW) is policies.Blocked.DAILY_LIMIT


def test_monthly_limit_sums_this_calendar_month_and_the_new_order(sessions, home):
    with sessions() as session, session.begin():
        household = _household(session, home, monthly_limit_cents=1000)
        month_start = NOW.replace(day=1, hour=0, minute=0, second=0)
        add(session, home, total=400, created=month_start - timedelta(seconds=1))  # last month
        add(session, home, total=300, created=month_start)  # counted: the month's first second
        add(session, home, total=900, state=State.CANCELLED, created=NOW)
        add(session, home, total=900, state=State.FAILED, created=NOW)
        add(session, home, total=200, state=State.SHIPPED, created=NOW)
        assert policies.blocked(session, household, 500, NOW) is None  # 300 + 200 + 500 = 1000
        assert policies.blocked(session, household, 501, NOW) is policies.Blocked.MONTHLY_LIMIT
        household.max_orders_per_day = 3  # 2 counted today and in the last day: not reached
        assert policies.blocked(session, household, 501, NOW) is policies.Blocked.MONTHLY_LIMIT
        household.max_orders_per_day = 1  # the daily limit is checked first
        assert policies.blocked(session, household, 1, NOW) is policies.Blocked.DAILY_LIMIT


def test_monthly_limit_with_no_orders_this_month(sessions, home):
    with sessions() as session, session.begin():
        household = _household(session, home, monthly_limit_cents=1000)
        assert policies.blocked(session, household, 999, NOW) is None
        assert policies.blocked(session, household, 1000, NOW) is None
        assert policies.blocked(session, household, 1001, NOW) is policies.Blocked.MONTHLY_LIMIT
