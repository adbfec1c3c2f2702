"""Consumption forecast from level readings: when will a product run out, and is it time to order?

Pure and cheap (stdlib only, no I/O): the order engine calls `estimate` on every level event.

Level sensors are messy. A load cell jitters by a few grams, people lean on the bottle or lift
it for a moment, bottles get refilled, households go on holiday and devices get unplugged.
Every step below is therefore median-based:

1. Window: readings at or before `now`, the last 60 days, at most 500 readings.
2. Noise: robust sigma of each reading against the straight line through its two neighbours
   (a steady trend cancels out; MAD ignores knocks).
3. Refills: a reading more than `refill_threshold` above the median of the (up to) 5 readings
   before it starts a new segment only if at least 3 of the 5 readings from it on are also up:
   one or two knocks can never be a refill. While such a jump is still unconfirmed (in the last
   two readings) we hold the order: it may be the delivery we just ordered.
4. Rate: Theil-Sen slope (median of pairwise slopes; fine with irregular spacing, ignores up to
   ~29% bad points) over the current segment. Gaps (days without readings) whose level did not
   drop are squeezed to one normal reading interval first, so an unplugged week is not read as
   a week of slow use. A segment that is too short borrows the previous segment's rate.
5. Level: median of the segment's last 5 readings, each moved along the slope to the time of
   the latest one (unbiased on a trend, one or two knocks cannot move it).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

WINDOW_DAYS = 60.0
MAX_READINGS = 500
MAX_FIT_POINTS = 200  # Theil-Sen is O(n^2): 200 points is ~20k slopes
MIN_READINGS = 4  # per segment, for a rate of its own
LEVEL_READINGS = 5  # latest readings the current level is the median of
REFILL_LOOKBACK = 5
REFILL_CONFIRM = 3  # of the REFILL_LOOKBACK readings from the jump on (so 2 knocks never count)
GAP_MIN_DAYS = 1.0  # a gap is at least a day and at least 3 typical intervals
GAP_FACTOR = 3.0
MAD_TO_SIGMA = 1.4826

# Lead-time learning.
LEAD_MIN_SAMPLES = 3
LEAD_MAX_DAYS = 90.0  # longer than a quarter: a data error, not a delivery
LEAD_MAX_FACTOR = 5.0  # more than 5x the median: a lost parcel or a typo, not the norm
LEAD_QUANTILE = 0.8  # plan for the slow end of normal so we are rarely late


@dataclass(frozen=True)
class Reading:
    at: datetime  # naive UTC
    remaining: float  # amount left, in the slot's unit


@dataclass(frozen=True)
class Forecast:
    rate_per_day: float | None  # robust consumption rate (>= 0), None if not enough data
    remaining: float | None  # robust current level (not fooled by a single knock)
    run_out_at: datetime | None  # predicted date the product runs out (None if rate is 0/unknown)
    lead_time_days: float  # as given
    safety_stock: float | None
    reorder_point: float | None  # rate * lead_time_days + safety_stock
    should_order: bool  # remaining <= reorder_point (caller also checks no open order)
    last_refill_at: datetime | None  # latest detected refill (a jump up)
    readings_used: int  # readings in the window the estimate used
    reason: str  # short human explanation


def estimate(readings: Sequence[Reading], now: datetime, *, lead_time_days: float,
             safety_days: float = 2.0, min_span_days: float = 1.0,
             refill_threshold: float | None = None) -> Forecast:
    """Forecast one slot from its level readings (any order; later than `now` is ignored)."""
    window = sorted((r for r in readings if r.at <= now), key=lambda r: r.at)
    start = now - timedelta(days=WINDOW_DAYS)
    window = [r for r in window if r.at >= start][-MAX_READINGS:]

    if not window:
        return Forecast(rate_per_day=None, remaining=None, run_out_at=None,
                        lead_time_days=lead_time_days, safety_stock=None, reorder_point=None,
                        should_order=False, last_refill_at=None, readings_used=0,
                        reason=f"no readings in the last {WINDOW_DAYS:.0f} days")

    t0 = window[0].at
    ts = [(r.at - t0).total_seconds() / 86400.0 for r in window]
    ys = [float(r.remaining) for r in window]

    sigma = _noise(ts, ys)
    if refill_threshold is None:
        # Well above the jitter, and a real fraction of a container (not a partial top-up).
        refill_threshold = max(0.10 * _recent_max(ys), 20.0 * sigma, 1.0)
    starts, pending = _segments(ys, refill_threshold)
    last_refill_at = window[starts[-1]].at if starts[-1] > 0 else None

    cur_ts, cur_ys = ts[starts[-1]:], ys[starts[-1]:]
    fit: float | None = None
    used = len(cur_ys)
    borrowed = False
    if _enough(cur_ts, min_span_days):
        fit = _segment_slope(cur_ts, cur_ys)
    elif len(starts) >= 2:
        # Just refilled: habits survive a refill, so the previous bottle's rate still holds.
        prev_ts, prev_ys = ts[starts[-2]:starts[-1]], ys[starts[-2]:starts[-1]]
        if _enough(prev_ts, min_span_days):
            fit = _segment_slope(prev_ts, prev_ys)
            used, borrowed = len(prev_ys), fit is not None

    rate = None if fit is None else max(0.0, -fit)
    remaining = max(0.0, _level(cur_ts, cur_ys, rate or 0.0))
    empty = remaining <= 0.0

    def result(should_order: bool, reason: str, run_out_at: datetime | None = None) -> Forecast:
        return Forecast(
            rate_per_day=rate, remaining=remaining, run_out_at=run_out_at,
            lead_time_days=lead_time_days,
            safety_stock=None if rate is None else safety_days * rate,
            reorder_point=None if rate is None else rate * (lead_time_days + safety_days),
            should_order=should_order, last_refill_at=last_refill_at, readings_used=used,
            reason=reason)

    if rate is None:
        span = cur_ts[-1] - cur_ts[0]
        why = (f"not enough data: {len(cur_ys)} reading(s) over {span:.1f} days since "
               f"{'the refill' if last_refill_at else 'the start'} (need {MIN_READINGS} over "
               f"{min_span_days:.1f} days)")
        # An empty container is empty whatever the statistics say.
        return result(empty, why + ("; empty" if empty else ""))
    if rate == 0.0:
        return result(empty, "empty" if empty else f"no consumption measured, {remaining:g} left")

    should_order = remaining <= rate * (lead_time_days + safety_days)
    why = (f"{remaining / rate:.1f} days of use left, reorder point "
           f"{lead_time_days + safety_days:.1f} days")
    if borrowed:
        why += " (rate from before the refill)"
    if should_order and pending and not empty:
        # Up-jump not yet confirmed: if it is the delivery, ordering now would order twice.
        should_order = False
        why += "; holding: level jumped up, waiting to confirm a refill"
    return result(should_order, why, now + timedelta(days=remaining / rate))


def learn_lead_time(durations_days: Sequence[float], default_days: float) -> float:
    """Lead time from delivered orders of a product: robust (median-based, e.g. an upper
    quantile so we are rarely late), ignores nonsense (negative, absurdly long), falls back to
    default_days with fewer than 2-3 samples."""
    sane = [float(d) for d in durations_days if math.isfinite(d) and 0.0 <= d <= LEAD_MAX_DAYS]
    if len(sane) < LEAD_MIN_SAMPLES:
        return default_days
    med = statistics.median(sane)
    # One lost parcel must not make every later order weeks early.
    sane = [d for d in sane if d <= LEAD_MAX_FACTOR * max(med, 0.5)]
    if len(sane) < LEAD_MIN_SAMPLES:
        return default_days
    sane.sort()
    pos = LEAD_QUANTILE * (len(sane) - 1)  # linear interpolation between order statistics
    lo = math.floor(pos)
    hi = min(lo + 1, len(sane) - 1)
    return sane[lo] + (sane[hi] - sane[lo]) * (pos - lo)


def _enough(ts: Sequence[float], min_span_days: float) -> bool:
    return len(ts) >= MIN_READINGS and ts[-1] - ts[0] >= min_span_days


def _noise(ts: Sequence[float], ys: Sequence[float]) -> float:
    """Robust sigma of a reading: its distance to the line through its two neighbours."""
    devs = []
    for i in range(1, len(ys) - 1):
        span = ts[i + 1] - ts[i - 1]
        if span <= 0.0:
            continue
        w = (ts[i] - ts[i - 1]) / span
        devs.append(ys[i] - (ys[i - 1] * (1.0 - w) + ys[i + 1] * w))
    if len(devs) < 3:
        return 0.0
    med = statistics.median(devs)
    mad = statistics.median(abs(d - med) for d in devs)
    # For even spacing the deviation has variance 1.5 sigma^2.
    return MAD_TO_SIGMA * mad / math.sqrt(1.5)


def _recent_max(ys: Sequence[float]) -> float:
    """Largest level, but from a median of 3 so a lean on the bottle does not count."""
    if len(ys) < 3:
        return max(ys)
    return max(statistics.median(ys[i - 1:i + 2]) for i in range(1, len(ys) - 1))


def _segments(ys: Sequence[float], threshold: float) -> tuple[list[int], bool]:
    """Start indexes of refill segments, and whether an up-jump at the end awaits confirmation."""
    # Typical change per reading: the trend, so a partial refill is not hidden by the drop
    # since the readings it is compared with. Per reading, not per day: a gap without use
    # must not look like a jump up.
    steps = [b - a for a, b in zip(ys, ys[1:])]
    drift = min(0.0, statistics.median(steps)) if steps else 0.0
    starts = [0]
    pending = False
    n = len(ys)
    for i in range(1, n):
        before = range(max(starts[-1], i - REFILL_LOOKBACK), i)
        if len(before) < REFILL_CONFIRM:
            continue  # too soon after the last refill to judge (and never refilled twice so fast)
        base = statistics.median(ys[j] + drift * (i - j) for j in before)
        if ys[i] <= base + threshold:
            continue
        after = range(i, min(n, i + REFILL_LOOKBACK))
        up = sum(1 for k in after if ys[k] > base + drift * (k - i) + threshold)
        if up >= REFILL_CONFIRM:
            starts.append(i)
        elif i >= n - 2:
            pending = True  # a knock or a refill: the next readings will tell
    return starts, pending


def _runs(ts: Sequence[float]) -> tuple[list[int], float]:
    """Run id per reading (a new run after each gap) and the typical reading interval."""
    dts = [b - a for a, b in zip(ts, ts[1:]) if b > a]
    typical = statistics.median(dts) if dts else 0.0
    gap = max(GAP_MIN_DAYS, GAP_FACTOR * typical)
    ids = [0]
    for a, b in zip(ts, ts[1:]):
        ids.append(ids[-1] + (1 if b - a > gap else 0))
    return ids, typical


def _theil_sen(ts: Sequence[float], ys: Sequence[float],
               runs: Sequence[int] | None = None) -> float | None:
    """Median of pairwise slopes (only pairs within one run if `runs` is given)."""
    n = len(ts)
    if n > MAX_FIT_POINTS:
        # Even subsample, keeping both ends.
        idx = sorted({round(k * (n - 1) / (MAX_FIT_POINTS - 1)) for k in range(MAX_FIT_POINTS)})
        ts = [ts[i] for i in idx]
        ys = [ys[i] for i in idx]
        runs = None if runs is None else [runs[i] for i in idx]
        n = len(ts)
    slopes = []
    for i in range(n):
        for j in range(i + 1, n):
            dt = ts[j] - ts[i]
            if dt > 1e-9 and (runs is None or runs[i] == runs[j]):
                slopes.append((ys[j] - ys[i]) / dt)
    return statistics.median(slopes) if slopes else None


def _effective_days(ts: Sequence[float], ys: Sequence[float], rate: float) -> list[float]:
    """Time axis in which each gap lasts only as long as the level drop across it explains.

    A week unplugged (or away) with the level unchanged becomes one normal interval; a gap over
    which the level fell as usual keeps its length. We never invent use the data does not show.
    """
    runs, typical = _runs(ts)
    tau = [0.0]
    for i in range(1, len(ts)):
        dt = ts[i] - ts[i - 1]
        if runs[i] != runs[i - 1] and rate > 0.0:
            before = [k for k in range(max(0, i - 3), i) if runs[k] == runs[i - 1]]
            after = [k for k in range(i, min(len(ts), i + 3)) if runs[k] == runs[i]]
            # Each side's level at the gap edge: median of up to 3 readings moved along the trend.
            lvl_before = statistics.median(ys[k] - rate * (ts[i - 1] - ts[k]) for k in before)
            lvl_after = statistics.median(ys[k] + rate * (ts[k] - ts[i]) for k in after)
            dt = min(dt, max(typical, (lvl_before - lvl_after) / rate))
        tau.append(tau[-1] + dt)
    return tau


def _segment_slope(ts: Sequence[float], ys: Sequence[float]) -> float | None:
    """Level change per day to plan with over one segment (negative while in use)."""
    runs, _ = _runs(ts)
    # First a slope that never looks across a gap, to judge how much use each gap explains...
    slope = _theil_sen(ts, ys, runs)
    if slope is None:
        slope = _theil_sen(ts, ys)  # every pair spans a gap: nothing better to go on
    if slope is None:
        return None
    tau = list(ts)
    if slope < 0.0 and max(runs) > 0:
        # ...then all pairs on the squeezed time axis, so readings on both sides of a gap count.
        tau = _effective_days(ts, ys, -slope)
        squeezed = _theil_sen(tau, ys)
        slope = slope if squeezed is None else squeezed
    # Theil-Sen follows the most common pace; after a flat stretch (nobody home, device on)
    # that is below the average use the data shows. Never plan with less than that average.
    span = tau[-1] - tau[0]
    if span > 0.0:
        head = range(min(len(ys), LEVEL_READINGS))
        first = statistics.median(ys[k] + slope * (tau[0] - tau[k]) for k in head)
        last = range(max(0, len(ys) - LEVEL_READINGS), len(ys))
        now = statistics.median(ys[k] + slope * (tau[-1] - tau[k]) for k in last)
        slope = min(slope, (now - first) / span)
    return slope


def _level(ts: Sequence[float], ys: Sequence[float], rate: float) -> float:
    """Current level: median of the last readings, each moved to the time of the latest along
    the recent pace (the last day or two, not the segment's average: use may have just resumed
    or stopped)."""
    tau = _effective_days(ts, ys, rate) if rate > 0.0 else list(ts)
    recent = slice(-2 * LEVEL_READINGS, None)
    pace = rate
    if len(ys) >= 2 * LEVEL_READINGS:
        local = _theil_sen(tau[recent], ys[recent])
        pace = rate if local is None else max(0.0, -local)
    tail = range(max(0, len(ys) - LEVEL_READINGS), len(ys))
    return statistics.median(ys[k] - pace * (tau[-1] - tau[k]) for k in tail)
