"""A sensor slot's level history and forecast as a server-rendered SVG (no script, no
library): readings, the projected line to the run-out date, the reorder point as a
horizontal line, and a mark per order, so a person sees why an order was placed.

Pure: takes readings, the forecast and order times, returns markup. Styling comes from
the app's stylesheet through classes (the CSP allows no inline styles); presentation
attributes give the same look where the stylesheet is missing (a saved file).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from markupsafe import Markup, escape

from backend.orders.forecast import Forecast, Reading

WIDTH, HEIGHT = 720, 300
LEFT, RIGHT, TOP, BOTTOM = 84, 16, 16, 36  # room for labels at phone size
MAX_AHEAD = timedelta(days=90)  # a run-out further away is drawn as an arrow at the edge
MIN_SPAN = timedelta(hours=6)


@dataclass(frozen=True)
class OrderMark:
    order_id: int
    at: datetime
    state: str


@dataclass(frozen=True)
class _Scale:
    t0: datetime
    t1: datetime
    y_max: float

    def x(self, at: datetime) -> float:
        span = (self.t1 - self.t0).total_seconds()
        return LEFT + (at - self.t0).total_seconds() / span * (WIDTH - LEFT - RIGHT)

    def y(self, value: float) -> float:
        return TOP + (1 - value / self.y_max) * (HEIGHT - TOP - BOTTOM)


def _scale(readings: Sequence[Reading], estimate: Forecast, orders: Sequence[OrderMark],
           now: datetime) -> _Scale:
    times = [r.at for r in readings] + [o.at for o in orders] + [now]
    t0 = min(times)
    t1 = now
    if estimate.run_out_at is not None:
        t1 = max(t1, min(estimate.run_out_at, now + MAX_AHEAD))
    if t1 - t0 < MIN_SPAN:
        t0 = t1 - MIN_SPAN
    t1 += (t1 - t0) * 0.03  # a little room on the right
    top = max([r.remaining for r in readings] + [estimate.reorder_point or 0, 1.0])
    return _Scale(t0, t1, top * 1.1)


def _n(value: float) -> str:
    return f"{value:.1f}"


def _label(value: float, unit: str) -> str:
    return f"{value:,.0f} {unit}".strip()


def level_chart(readings: Sequence[Reading], estimate: Forecast, orders: Sequence[OrderMark],
                now: datetime, unit: str = "") -> Markup:
    s = _scale(readings, estimate, orders, now)
    bottom, right = HEIGHT - BOTTOM, WIDTH - RIGHT
    out = [f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
           f'aria-labelledby="chart-title chart-desc" xmlns="http://www.w3.org/2000/svg">',
           '<title id="chart-title">Level history and forecast</title>',
           f'<desc id="chart-desc">{escape(_description(readings, estimate, orders, unit))}'
           '</desc>']
    # Axes and ticks.
    out.append(f'<g class="axis" stroke="#888" fill="#555" font-size="11">'
               f'<line x1="{LEFT}" y1="{bottom}" x2="{right}" y2="{bottom}"/>'
               f'<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{bottom}"/>')
    for value in (0, s.y_max / 1.1 / 2, s.y_max / 1.1):
        y = _n(s.y(value))
        out.append(f'<text x="{LEFT - 6}" y="{y}" text-anchor="end" stroke="none" '
                   f'dominant-baseline="middle">{escape(_label(value, unit))}</text>')
    for at, anchor, name in ((s.t0, "start", "t-start"), (now, "middle", "t-now"),
                             (s.t1, "end", "t-end")):
        out.append(f'<text class="{name}" x="{_n(s.x(at))}" y="{bottom + 16}" '
                   f'text-anchor="{anchor}" stroke="none">{at:%d %b %H:%M}</text>')
    out.append('</g>')
    out.append(f'<line class="now" x1="{_n(s.x(now))}" y1="{TOP}" x2="{_n(s.x(now))}" '
               f'y2="{bottom}" stroke="#aaa" stroke-dasharray="2 3"/>')
    # The reorder point: below this line the slot orders.
    if estimate.reorder_point is not None:
        y = _n(s.y(estimate.reorder_point))
        out.append(f'<g class="reorder-point" data-value="{estimate.reorder_point:.3f}">'
                   f'<line x1="{LEFT}" y1="{y}" x2="{right}" y2="{y}" stroke="#c0392b" '
                   f'stroke-width="1.5" stroke-dasharray="6 4"/>'
                   f'<text x="{right - 4}" y="{float(y) - 5:.1f}" text-anchor="end" '
                   f'fill="#c0392b" font-size="11">reorder point '
                   f'{escape(_label(estimate.reorder_point, unit))}</text></g>')
    # Orders: a vertical mark each, labelled with the order number.
    for mark in orders:
        x = _n(s.x(mark.at))
        # Labels of marks in the right half sit to the left of their line.
        side = 'dx="-3" text-anchor="end"' if float(x) > WIDTH / 2 else 'dx="3"'
        out.append(f'<g class="order-mark" data-order="{mark.order_id}">'
                   f'<line x1="{x}" y1="{TOP}" x2="{x}" y2="{bottom}" stroke="#2471a3" '
                   f'stroke-width="1.5"/>'
                   f'<text x="{x}" y="{TOP + 10}" {side} fill="#2471a3" font-size="11">'
                   f'order {mark.order_id} ({escape(mark.state)})</text></g>')
    # The level history.
    if readings:
        points = " ".join(f"{_n(s.x(r.at))},{_n(s.y(r.remaining))}" for r in readings)
        out.append(f'<polyline class="level" points="{points}" fill="none" '
                   f'stroke="#1e8449" stroke-width="2"/>')
        out.append('<g class="readings" fill="#1e8449">')
        for r in readings:
            out.append(f'<circle class="reading" cx="{_n(s.x(r.at))}" '
                       f'cy="{_n(s.y(r.remaining))}" r="2.5" data-remaining="{r.remaining:g}">'
                       f'<title>{r.at:%d %b %H:%M}: {escape(_label(r.remaining, unit))}</title>'
                       f'</circle>')
        out.append('</g>')
    # The forecast: from the robust current level down to zero at the run-out date.
    if readings and estimate.remaining is not None and estimate.run_out_at is not None:
        last = readings[-1].at
        end = min(estimate.run_out_at, s.t1)
        total = (estimate.run_out_at - last).total_seconds()
        left = estimate.remaining * (1 - (end - last).total_seconds() / total) if total > 0 else 0
        out.append(f'<g class="forecast"><line x1="{_n(s.x(last))}" '
                   f'y1="{_n(s.y(estimate.remaining))}" x2="{_n(s.x(end))}" '
                   f'y2="{_n(s.y(max(left, 0)))}" stroke="#7d3c98" stroke-width="1.5" '
                   f'stroke-dasharray="3 3"/>')
        if estimate.run_out_at <= s.t1:
            x = _n(s.x(estimate.run_out_at))
            out.append(f'<circle class="run-out" cx="{x}" cy="{_n(s.y(0))}" r="4" '
                       f'fill="#7d3c98"/><text x="{x}" y="{bottom - 6}" text-anchor="end" '
                       f'fill="#7d3c98" font-size="11">runs out '
                       f'{estimate.run_out_at:%d %b}</text>')
        out.append('</g>')
    out.append('</svg>')
    return Markup("".join(out))


def _description(readings, estimate: Forecast, orders, unit: str) -> str:
    parts = [f"{len(readings)} level readings"]
    if estimate.remaining is not None:
        parts.append(f"about {_label(estimate.remaining, unit)} left")
    if estimate.reorder_point is not None:
        parts.append(f"reorder point {_label(estimate.reorder_point, unit)}")
    if estimate.run_out_at is not None:
        parts.append(f"predicted to run out on {estimate.run_out_at:%d %B %Y}")
    parts.append(f"{len(orders)} orders")
    return "; ".join(parts) + "."
