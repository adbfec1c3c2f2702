"""A sensor slot's level history and forecast as a server-rendered SVG (no script, no
library): readings, the projected line to the run-out date, the reorder point as a
horizontal line, and a mark per order, so a person sees why an order was placed.

Pure: takes readings, the forecast and order times, returns markup. Styling comes from
the app's stylesheet through classes (the CSP allows no inline styles); presentation
attributes give the same look where the stylesheet is missing (a saved file).

The time axis spans the data (readings, orders, now, the run-out date) and no more;
its ticks come from `chart_axis.py`. Every text goes through `chart_axis.Labels`,
which keeps it inside the drawing and off the others at the largest size the
stylesheet gives it (a phone's), so it cannot overlap at any width; a label with no
free place is left out (the description and the page's text say the same).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from markupsafe import Markup, escape

from backend.orders import display
from backend.orders.forecast import Forecast, Reading
from backend.web.chart_axis import Labels, level_ticks, text_width, time_ticks

WIDTH, HEIGHT = 720, 300
RIGHT, TOP, BOTTOM = 16, 16, 48  # below the plot: a row of times, a row for their date
MAX_AHEAD = timedelta(days=90)  # a run-out further away is drawn as an arrow at the edge
MIN_SPAN = timedelta(minutes=1)  # one reading alone still gets an axis
PAD = 0.03  # room either side of the data, as a share of its span


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
    left: float  # the plot's left edge: after the widest level label

    def x(self, at: datetime) -> float:
        span = (self.t1 - self.t0).total_seconds()
        return self.left + (at - self.t0).total_seconds() / span * (WIDTH - self.left - RIGHT)

    def y(self, value: float) -> float:
        return TOP + (1 - value / self.y_max) * (HEIGHT - TOP - BOTTOM)


def _time_span(readings: Sequence[Reading], estimate: Forecast, orders: Sequence[OrderMark],
               now: datetime) -> tuple[datetime, datetime]:
    times = [r.at for r in readings] + [o.at for o in orders] + [now]
    t0, t1 = min(times), max(times)
    if estimate.run_out_at is not None:
        t1 = max(t1, min(estimate.run_out_at, now + MAX_AHEAD))
    if t1 - t0 < MIN_SPAN:
        t0 -= (MIN_SPAN - (t1 - t0)) / 2
        t1 = t0 + MIN_SPAN
    pad = (t1 - t0) * PAD
    return t0 - pad, t1 + pad


def _n(value: float) -> str:
    return f"{value:.1f}"


def _label(value: float, unit: str, where: str | None = None) -> str:
    return f"{display.number(round(value), where)} {unit}".strip()


def level_chart(readings: Sequence[Reading], estimate: Forecast, orders: Sequence[OrderMark],
                now: datetime, unit: str = "", zone: str | None = None,
                where: str | None = None) -> Markup:
    """The chart; times in the household's zone (`zone`), numbers and dates in its
    locale (`where`)."""
    top = max([r.remaining for r in readings] + [estimate.reorder_point or 0, 1.0])
    y_max, levels = level_ticks(top * 1.05)
    level_labels = [_label(v, unit, where) for v in levels]
    left = max(text_width(label) for label in level_labels) + 12
    s = _Scale(*_time_span(readings, estimate, orders, now), y_max, left)
    labels = Labels(WIDTH, HEIGHT)
    bottom, right = HEIGHT - BOTTOM, WIDTH - RIGHT

    def text(content: str, candidates, attributes: str = "", middle: bool = False) -> str:
        place = labels.place(content, candidates, middle)
        if place is None:
            return ""
        x, y, anchor = place
        return (f'<text x="{_n(x)}" y="{_n(y)}" text-anchor="{anchor}"{attributes}>'
                f'{escape(content)}</text>')

    out = [f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
           f'aria-labelledby="chart-title chart-desc" xmlns="http://www.w3.org/2000/svg">',
           '<title id="chart-title">Level history and forecast</title>',
           f'<desc id="chart-desc">{escape(_description(readings, estimate, orders, unit))}'
           '</desc>']
    # Axes, ticks and their labels.
    out.append(f'<g class="axis" stroke="#888" fill="#555" font-size="11">'
               f'<line x1="{_n(left)}" y1="{bottom}" x2="{right}" y2="{bottom}"/>'
               f'<line x1="{_n(left)}" y1="{TOP}" x2="{_n(left)}" y2="{bottom}"/>')
    for value, label in zip(levels, level_labels):
        y = s.y(value)
        out.append(f'<line x1="{_n(left - 4)}" y1="{_n(y)}" x2="{_n(left)}" y2="{_n(y)}"/>')
        out.append(text(label, [(left - 8, y, "end")], ' class="level-label" stroke="none" '
                        'dominant-baseline="middle"', middle=True))
    axis = time_ticks(s.t0, s.t1, s.x, left, WIDTH, zone, where)
    for at in axis.ticks:
        x = _n(s.x(at))
        out.append(f'<line x1="{x}" y1="{bottom}" x2="{x}" y2="{bottom + 4}"/>')
    for at, label, anchor in axis.labels:
        out.append(text(label, [(s.x(at), bottom + 18, anchor)],
                        ' class="time-label" stroke="none"'))
    if axis.caption:
        out.append(text(axis.caption, [(left, bottom + 42, "start")],
                        ' class="time-caption" stroke="none"'))
    out.append('</g>')
    out.append(f'<line class="now" x1="{_n(s.x(now))}" y1="{TOP}" x2="{_n(s.x(now))}" '
               f'y2="{bottom}" stroke="#aaa" stroke-dasharray="2 3"/>')
    # The reorder point: below this line the slot orders.
    if estimate.reorder_point is not None:
        y = s.y(estimate.reorder_point)
        label = f"reorder point {_label(estimate.reorder_point, unit, where)}"
        out.append(f'<g class="reorder-point" data-value="{estimate.reorder_point:.3f}">'
                   f'<line x1="{_n(left)}" y1="{_n(y)}" x2="{right}" y2="{_n(y)}" '
                   f'stroke="#c0392b" stroke-width="1.5" stroke-dasharray="6 4"/>'
                   + text(label, [(right - 4, y - 6, "end"), (right - 4, y + 18, "end"),
                                  (left + 4, y - 6, "start"), (left + 4, y + 18, "start")],
                          ' fill="#c0392b" font-size="11"') + '</g>')
    # Orders: a vertical mark each, labelled with the order number where there is room
    # (in one of two rows at the top; the mark's own title always names it).
    for mark in orders:
        x = s.x(mark.at)
        label = f"order {mark.order_id} ({mark.state})"
        rows = [TOP + 16, TOP + 40]
        # Labels of marks in the right half sit to the left of their line.
        sides = [(x - 3, "end"), (x + 3, "start")] if x > WIDTH / 2 else [(x + 3, "start"),
                                                                          (x - 3, "end")]
        out.append(f'<g class="order-mark" data-order="{mark.order_id}">'
                   f'<title>{escape(label)}</title>'
                   f'<line x1="{_n(x)}" y1="{TOP}" x2="{_n(x)}" y2="{bottom}" stroke="#2471a3" '
                   f'stroke-width="1.5"/>'
                   + text(label, [(lx, y, anchor) for y in rows for lx, anchor in sides],
                          ' fill="#2471a3" font-size="11"') + '</g>')
    # The level history.
    if readings:
        points = " ".join(f"{_n(s.x(r.at))},{_n(s.y(r.remaining))}" for r in readings)
        out.append(f'<polyline class="level" points="{points}" fill="none" '
                   f'stroke="#1e8449" stroke-width="2"/>')
        out.append('<g class="readings" fill="#1e8449">')
        for r in readings:
            at = display.when(r.at, where, zone, "short")
            out.append(f'<circle class="reading" cx="{_n(s.x(r.at))}" '
                       f'cy="{_n(s.y(r.remaining))}" r="2.5" data-remaining="{r.remaining:g}">'
                       f'<title>{escape(at)}: {escape(_label(r.remaining, unit, where))}'
                       f'</title></circle>')
        out.append('</g>')
    # The forecast: from the robust current level down to zero at the run-out date.
    if readings and estimate.remaining is not None and estimate.run_out_at is not None:
        last = readings[-1].at
        end = min(estimate.run_out_at, s.t1)
        total = (estimate.run_out_at - last).total_seconds()
        left_then = (estimate.remaining * (1 - (end - last).total_seconds() / total)
                     if total > 0 else 0)
        out.append(f'<g class="forecast"><line x1="{_n(s.x(last))}" '
                   f'y1="{_n(s.y(estimate.remaining))}" x2="{_n(s.x(end))}" '
                   f'y2="{_n(s.y(max(left_then, 0)))}" stroke="#7d3c98" stroke-width="1.5" '
                   f'stroke-dasharray="3 3"/>')
        if estimate.run_out_at <= s.t1:
            x, y0 = s.x(estimate.run_out_at), s.y(0)
            label = "runs out " + display.skeleton(
                display.local(estimate.run_out_at, zone), "MMMd", where)
            out.append(f'<circle class="run-out" cx="{_n(x)}" cy="{_n(y0)}" r="4" '
                       f'fill="#7d3c98"/>'
                       + text(label, [(x - 6, bottom - 8, "end"), (x + 6, bottom - 8, "start"),
                                      (x - 6, bottom - 32, "end"),
                                      (x + 6, bottom - 32, "start")],
                              ' fill="#7d3c98" font-size="11"'))
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
