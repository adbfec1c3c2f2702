"""backend.orders.forecast: robust consumption rate, refills, knocks, gaps, and a simulated household."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import pytest

from backend.orders.forecast import Forecast, Reading, estimate, learn_lead_time

T0 = datetime(2026, 3, 2)
STEP = timedelta(hours=6)
RATE = 60.0  # g/day
LEAD = 3.0
SAFETY = 2.0


def series(n: int, *, start: float = 2000.0, rate: float = RATE, noise: float = 5.0,
           seed: int = 1, t0: datetime = T0, step: timedelta = STEP) -> list[Reading]:
    """Steady use, readings every `step`, load-cell jitter of +-noise, integer grams."""
    rng = random.Random(seed)
    days = step / timedelta(days=1)
    return [Reading(t0 + i * step, round(start - rate * i * days + rng.uniform(-noise, noise)))
            for i in range(n)]


def true_level(r: Reading, start: float = 2000.0, t0: datetime = T0) -> float:
    return start - RATE * (r.at - t0) / timedelta(days=1)


def replace(rs: list[Reading], i: int, value: float) -> list[Reading]:
    return rs[:i] + [Reading(rs[i].at, value)] + rs[i + 1:]


def run(rs: list[Reading], **kw: float) -> Forecast:
    kw.setdefault("lead_time_days", LEAD)
    return estimate(rs, rs[-1].at, **kw)


# --- noise ---------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_noisy_steady_use_rate_within_10_percent(seed: int) -> None:
    rs = series(40, seed=seed)
    f = run(rs)
    assert f.rate_per_day is not None and f.remaining is not None
    assert f.rate_per_day == pytest.approx(RATE, rel=0.10)
    assert f.remaining == pytest.approx(true_level(rs[-1]), abs=10)
    assert f.readings_used == 40
    assert f.last_refill_at is None
    assert f.lead_time_days == LEAD
    assert f.safety_stock == pytest.approx(SAFETY * f.rate_per_day)
    assert f.reorder_point == pytest.approx(f.rate_per_day * (LEAD + SAFETY))
    assert f.run_out_at == rs[-1].at + timedelta(days=f.remaining / f.rate_per_day)
    assert f.should_order is False
    assert "days of use left, reorder point 5.0 days" in f.reason


def test_heavier_noise_still_within_10_percent() -> None:
    f = run(series(60, noise=25.0, seed=7))
    assert f.rate_per_day == pytest.approx(RATE, rel=0.10)


def test_irregular_spacing() -> None:
    rng = random.Random(11)
    t, rs = T0, []
    for _ in range(50):
        rs.append(Reading(t, round(true_level(Reading(t, 0)) + rng.uniform(-5, 5))))
        t += timedelta(hours=rng.uniform(0.5, 14))
    f = run(rs)
    assert f.rate_per_day == pytest.approx(RATE, rel=0.10)
    assert f.remaining == pytest.approx(true_level(rs[-1]), abs=10)


def test_dose_counter_steps_and_no_noise() -> None:
    # A cycle counter: one dose a day, reported every 6 h; level moves in whole steps.
    rs = [Reading(T0 + i * STEP, 30 - i // 4) for i in range(40)]
    f = run(rs, lead_time_days=2.0, safety_days=1.0)
    assert f.rate_per_day == pytest.approx(1.0, rel=0.10)
    assert f.remaining == pytest.approx(21, abs=1)
    assert f.should_order is False
    rs = [Reading(T0 + i * STEP, 30 - i // 4) for i in range(110)]
    f = run(rs, lead_time_days=2.0, safety_days=1.0)
    assert f.remaining == 3 and f.should_order is True


def test_reorder_when_at_reorder_point() -> None:
    # 2000 - 60*d <= 300 from day 28.33 on.
    rs = series(4 * 28 + 3, noise=0)  # last reading on day 28.5
    f = run(rs)
    assert f.remaining == pytest.approx(290) and f.should_order is True
    assert f.run_out_at == rs[-1].at + timedelta(days=290 / 60)
    f = run(rs[:-1])  # day 28.25
    assert f.remaining == pytest.approx(305) and f.should_order is False


# --- knocks --------------------------------------------------------------------------------


@pytest.mark.parametrize("where", [20, 38, 39])  # middle, second to last, last reading
@pytest.mark.parametrize("delta", [+300, "zero"])
def test_single_knock_changes_nothing(where: int, delta: int | str) -> None:
    rs = series(40)
    clean = run(rs)
    bad = rs[where].remaining + 300 if delta == 300 else 0
    f = run(replace(rs, where, bad))
    assert f.last_refill_at is None
    assert f.rate_per_day == pytest.approx(clean.rate_per_day, rel=0.03)
    assert f.remaining == pytest.approx(clean.remaining, abs=10)
    assert f.should_order is False


@pytest.mark.parametrize("bad", [0, "up"])
def test_two_knocks_in_a_row_change_nothing(bad: int | str) -> None:
    rs = series(40)
    for i in (38, 39):
        rs = replace(rs, i, rs[i].remaining + 300 if bad == "up" else 0)
    f = run(rs)
    assert f.last_refill_at is None
    assert f.rate_per_day == pytest.approx(RATE, rel=0.10)
    assert f.remaining == pytest.approx(true_level(rs[-1]), abs=15)
    assert f.should_order is False


def test_lift_near_reorder_point_does_not_order() -> None:
    rs = series(4 * 27 + 1)  # true level 380, above the 300 g reorder point
    assert run(rs).should_order is False
    for i in (-1, -2):
        f = run(replace(rs, len(rs) + i, 0))
        assert f.should_order is False
        assert f.remaining == pytest.approx(380, abs=10)


def test_lean_does_not_postpone_an_order_for_long() -> None:
    # At the reorder point, a lean holds the order (it might be a delivery) for 2 readings only.
    rs = series(4 * 29)
    assert run(rs).should_order is True
    rs = replace(rs, len(rs) - 1, rs[-1].remaining + 300)
    assert run(rs).should_order is False
    more = series(4 * 29 + 2)[-2:]
    assert run(rs + more[:1]).should_order is False
    assert run(rs + more).should_order is True


# --- refills -------------------------------------------------------------------------------


def refilled(before: int, after: int, *, level: float = 2000.0) -> list[Reading]:
    """`before` readings of a bottle, then a fresh one read `after` times."""
    rs = series(before)
    t1 = rs[-1].at + STEP
    return rs + series(after, start=level, seed=5, t0=t1)


def test_refill_starts_a_new_segment() -> None:
    rs = refilled(100, 20)
    f = run(rs)
    assert f.last_refill_at == rs[100].at
    assert f.readings_used == 20
    assert f.rate_per_day == pytest.approx(RATE, rel=0.10)
    assert f.remaining == pytest.approx(2000 - RATE * 19 / 4, abs=10)
    assert f.should_order is False


def test_refill_needs_three_readings_and_holds_orders_until_then() -> None:
    rs = refilled(116, 3)  # the old bottle was at ~265 g: below the reorder point
    for k in (1, 2):
        f = run(rs[:116 + k])
        assert f.last_refill_at is None
        assert f.should_order is False  # maybe the delivery: do not order again
        assert "waiting to confirm a refill" in f.reason
    f = run(rs)
    assert f.last_refill_at == rs[116].at
    assert f.should_order is False
    assert f.remaining == pytest.approx(2000 - RATE * 2 / 4, abs=10)


def test_rate_comes_from_the_current_bottle() -> None:
    # Habits changed with the new bottle: twice the use. The old bottle must not dilute it.
    rs = series(100)
    rs += series(20, rate=2 * RATE, seed=5, t0=rs[-1].at + STEP)
    f = run(rs)
    assert f.last_refill_at == rs[100].at
    assert f.rate_per_day == pytest.approx(2 * RATE, rel=0.10)


def test_short_segment_borrows_previous_rate() -> None:
    rs = refilled(100, 3)
    f = run(rs)
    assert f.last_refill_at == rs[100].at
    assert f.rate_per_day == pytest.approx(RATE, rel=0.10)
    assert f.readings_used == 100
    assert "rate from before the refill" in f.reason
    assert f.run_out_at is not None


def test_refill_with_a_knock_right_after() -> None:
    rs = refilled(100, 6)
    rs = replace(rs, 101, 0)
    f = run(rs)
    assert f.last_refill_at == rs[100].at
    assert f.remaining == pytest.approx(2000 - RATE * 5 / 4, abs=10)


def test_refill_threshold() -> None:
    # A 150 g top-up: below the default (10% of 2000 g) but above an explicit 100 g.
    rs = refilled(40, 10, level=series(41)[-1].remaining + 150)
    assert run(rs).last_refill_at is None
    assert run(rs, refill_threshold=100).last_refill_at == rs[40].at


def test_first_bottle_ever_with_no_history() -> None:
    rs = series(3)
    f = run(rs)
    assert f.rate_per_day is None and f.reorder_point is None and f.run_out_at is None
    assert f.should_order is False
    assert "not enough data" in f.reason


# --- gaps ----------------------------------------------------------------------------------


def with_holiday(days: float, *, use_during: bool) -> list[Reading]:
    """20 readings, `days` without any, 20 more; use continues only if `use_during`."""
    first = series(20)
    t1 = first[-1].at + STEP + timedelta(days=days)
    lost = RATE * (0.25 + (days if use_during else 0.0))
    level = true_level(first[-1]) - lost
    return first + series(20, start=level, seed=9, t0=t1)


def test_holiday_without_readings_or_use_keeps_the_rate() -> None:
    rs = with_holiday(10, use_during=False)
    f = run(rs)
    assert f.rate_per_day == pytest.approx(RATE, rel=0.10)
    assert f.remaining == pytest.approx(2000 - RATE * 39 / 4, abs=10)
    assert f.last_refill_at is None
    assert f.readings_used == 40


def test_just_back_from_holiday() -> None:
    rs = with_holiday(10, use_during=False)[:21]
    f = run(rs)
    assert f.rate_per_day == pytest.approx(RATE, rel=0.10)
    assert f.remaining == pytest.approx(2000 - RATE * 20 / 4, abs=10)


def test_device_off_but_use_continued() -> None:
    rs = with_holiday(4, use_during=True)
    f = run(rs)
    assert f.rate_per_day == pytest.approx(RATE, rel=0.10)
    assert f.remaining == pytest.approx(true_level(rs[-1]), abs=10)


def test_flat_week_with_readings_lowers_rate_only_as_the_data_says() -> None:
    # Device on, nobody home: 7 days of flat readings between two weeks of use.
    rng = random.Random(3)
    rs, level = [], 2000.0
    for i in range(4 * 21):
        if not 28 <= i < 56:
            level -= RATE / 4
        rs.append(Reading(T0 + i * STEP, round(level + rng.uniform(-5, 5))))
    f = run(rs)
    assert f.rate_per_day is not None
    average = RATE * 14 / 21
    assert average * 0.9 <= f.rate_per_day <= RATE * 1.1
    assert f.remaining == pytest.approx(level, abs=10)


# --- not enough data -----------------------------------------------------------------------


def test_no_readings() -> None:
    f = estimate([], T0, lead_time_days=LEAD)
    assert f == Forecast(None, None, None, LEAD, None, None, False, None, 0, f.reason)
    assert "no readings" in f.reason


@pytest.mark.parametrize("n,step", [(1, STEP), (2, STEP), (3, STEP), (10, timedelta(hours=2))])
def test_too_little_data(n: int, step: timedelta) -> None:
    f = run(series(n, step=step))
    assert f.rate_per_day is None and f.safety_stock is None and f.run_out_at is None
    assert f.should_order is False
    assert f.remaining is not None
    assert "not enough data" in f.reason


def test_empty_is_empty_without_statistics() -> None:
    rs = [Reading(T0, 0), Reading(T0 + STEP, 0)]
    f = run(rs)
    assert f.rate_per_day is None and f.remaining == 0 and f.should_order is True
    assert "empty" in f.reason


def test_no_consumption() -> None:
    f = run(series(40, rate=0.0))
    assert f.rate_per_day == 0.0 and f.run_out_at is None and f.reorder_point == 0.0
    assert f.should_order is False


def test_future_and_old_readings_ignored_and_window_capped() -> None:
    rs = series(4 * 100, start=8000)  # 100 days
    now = rs[300].at
    f = estimate(rs, now, lead_time_days=LEAD)
    assert f.readings_used == 4 * 60 + 1  # last 60 days, nothing after now
    assert f.remaining == pytest.approx(true_level(rs[300], start=8000), abs=10)
    rs = [Reading(T0 + timedelta(minutes=10 * i), 2000 - i) for i in range(3000)]
    f = estimate(rs, rs[-1].at, lead_time_days=LEAD)
    assert f.readings_used == 500
    assert f.rate_per_day == pytest.approx(144.0)


def test_unsorted_input() -> None:
    rs = series(40)
    assert run(rs) == estimate(list(reversed(rs)), rs[-1].at, lead_time_days=LEAD)


# --- lead time -----------------------------------------------------------------------------


def test_lead_time_defaults_with_few_samples() -> None:
    assert learn_lead_time([], 3.0) == 3.0
    assert learn_lead_time([5.0, 6.0], 3.0) == 3.0
    assert learn_lead_time([5.0, -1.0, math.nan, 400.0], 3.0) == 3.0


def test_lead_time_upper_quantile() -> None:
    got = learn_lead_time([2.0, 2.0, 3.0, 3.0, 4.0], 7.0)
    assert 3.0 <= got <= 4.0
    assert learn_lead_time([2.0, 2.0, 2.0], 7.0) == 2.0


def test_lead_time_ignores_nonsense() -> None:
    clean = learn_lead_time([2.0, 2.5, 3.0, 3.0, 3.5], 7.0)
    noisy = learn_lead_time([2.0, 2.5, 3.0, 3.0, 3.5, -2.0, math.inf, math.nan, 45.0, 1000.0], 7.0)
    assert noisy == clean


# --- a simulated household -----------------------------------------------------------------


@dataclass
class Household:
    """A 2000 g detergent bottle, ~60 g/day, read every 6 h; the backend orders from forecasts."""

    seed: int
    level: float = 1000.0
    readings: list[Reading] = field(default_factory=list)
    orders: list[tuple[datetime, float]] = field(default_factory=list)  # opened at, true level
    deliveries: list[datetime] = field(default_factory=list)
    open_until: datetime | None = None
    lowest: float = math.inf
    log: list[tuple[datetime, float, Forecast]] = field(default_factory=list)

    def simulate(self, days: int, *, holiday: tuple[float, float],
                 knocks: dict[float, str]) -> None:
        rng = random.Random(self.seed)
        for i in range(days * 4):
            now = T0 + i * STEP
            day = i / 4
            if self.open_until is not None and now >= self.open_until:
                self.level = 2000.0  # delivered: a fresh bottle
                self.deliveries.append(now)
                self.open_until = None
            if holiday[0] <= day < holiday[1]:
                continue  # away, device unplugged: no use, no readings
            self.level -= rng.uniform(10, 20)  # 60 g/day on average
            self.lowest = min(self.lowest, self.level)
            value = round(self.level + rng.uniform(-5, 5))
            knock = knocks.get(day)
            if knock == "lean":
                value += 300
            elif knock == "lift":
                value = 0
            self.readings.append(Reading(now, value))
            f = estimate(self.readings, now, lead_time_days=LEAD, safety_days=SAFETY)
            self.log.append((now, self.level, f))
            if f.should_order and self.open_until is None:
                assert knock is None, f"ordered on a {knock} at day {day}: {f}"
                self.orders.append((now, self.level))
                self.open_until = now + timedelta(days=LEAD)


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5, 6])
def test_simulated_weeks(seed: int) -> None:
    home = Household(seed)
    # Start at 1000 g; lean on it at 700 g, lift it at ~385 g (just above the reorder point);
    # a 10-day holiday and another lift in the second bottle.
    home.simulate(63, holiday=(20.0, 30.0), knocks={5.0: "lean", 10.25: "lift", 40.0: "lift"})

    # Never runs out, one order per bottle, each at the reorder point.
    assert home.lowest > 0
    assert len(home.orders) == 2
    assert len(home.deliveries) == 2
    for at, level in home.orders:
        # Within one reading interval (15 g) and the jitter (5 g) of the 300 g reorder point.
        assert 300 - 20 <= level <= 300 + 20, (at, level)
    # Each order within one reading interval of the moment the true level reached 300 g.
    starts = [T0, *home.deliveries]
    for (at, _), start in zip(home.orders, starts):
        crossed = next(now for now, level, _ in home.log if now >= start and level <= 300)
        assert abs(at - crossed) <= STEP, (at, crossed)
    # The second bottle (fresh on day ~14.75) lasted its ~28 days of use plus the holiday.
    second = (home.orders[1][0] - home.deliveries[0]) / timedelta(days=1)
    assert 28.3 + 10 - 2.5 <= second <= 28.3 + 10 + 2.5
    # Knocks never order, never look like a refill, never move the level much.
    for now, level, f in home.log:
        if (now - T0) / timedelta(days=1) in (5.0, 10.25, 40.0):
            assert f.should_order is False and f.remaining is not None
            assert f.remaining == pytest.approx(level, abs=15)
            assert f.last_refill_at is None or f.last_refill_at in home.deliveries
    # Each delivery is detected as a refill within 3 readings; nothing else is.
    refills = {f.last_refill_at for _, _, f in home.log} - {None}
    assert refills == set(home.deliveries)
    for delivered in home.deliveries:
        third = next(f for now, _, f in home.log if now == delivered + 2 * STEP)
        assert third.last_refill_at == delivered
    # After the holiday (days 20-30, second bottle) the rate is still ~60 g/day.
    after_holiday = [f for now, _, f in home.log
                     if T0 + timedelta(days=30) <= now < home.deliveries[1]]
    assert len(after_holiday) > 80
    assert all(f.rate_per_day == pytest.approx(RATE, rel=0.15) for f in after_holiday)


def test_a_new_sensors_explanation_never_says_over_0_hours():
    """Eight readings within a minute are 'less than an hour' of data, not '0 hours'."""
    from types import SimpleNamespace

    from backend.orders import sensors

    now = datetime(2026, 11, 20, 12)
    readings = [Reading(now - timedelta(seconds=60 - 8 * i), 900 - 5 * i) for i in range(8)]
    slot = SimpleNamespace(min_level=None, target_level=None)
    text = sensors.explain(estimate(readings, now, lead_time_days=2), slot, None, readings)
    assert "8 readings so far over less than an hour;" in text, text
