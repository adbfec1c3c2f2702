"""The sensor chart's axes and the placement of its texts (backend/web/chart.py).

The server cannot measure text, so it estimates each label's box at the largest size
the stylesheet gives chart text (a phone draws the chart at half size with 18-unit
text, a desktop with 11), with a generous average character width. A layout free of
overlaps at that size stays free at any smaller one: every text keeps its anchor and
baseline, so its box only shrinks towards them. tests/backend/web/test_browser.py
measures the real boxes in Chromium.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from backend.orders import display

FONT = 18  # user units: the phone's size for chart text (style.css)
_EM = 0.65  # average character width in em, on the wide side (digits are 0.55-0.64)
_ASCENT, _DESCENT = 0.8, 0.25  # of the font size, above and below the baseline
GAP = 8  # user units kept free between two labels

Box = tuple[float, float, float, float]  # x0, y0, x1, y1


def text_width(text: str) -> float:
    return len(text) * FONT * _EM


def text_box(x: float, y: float, text: str, anchor: str = "start",
             middle: bool = False) -> Box:
    """The estimated box of a text at (x, y); `middle`: y is its vertical middle
    (dominant-baseline="middle"), else its baseline."""
    width = text_width(text)
    x0 = {"start": x, "middle": x - width / 2, "end": x - width}[anchor]
    if middle:
        return x0, y - FONT / 2, x0 + width, y + FONT / 2
    return x0, y - FONT * _ASCENT, x0 + width, y + FONT * _DESCENT


def _apart(a: Box, b: Box) -> bool:
    return (a[2] + GAP <= b[0] or b[2] + GAP <= a[0]
            or a[3] + GAP / 2 <= b[1] or b[3] + GAP / 2 <= a[1])


class Labels:
    """The texts placed so far: a new one goes to its first candidate place that stays
    inside the drawing and clear of the others, or nowhere."""

    def __init__(self, width: float, height: float):
        self._width, self._height = width, height
        self._boxes: list[Box] = []

    def fits(self, box: Box) -> bool:
        inside = box[0] >= 0 and box[1] >= 0 and box[2] <= self._width and box[3] <= self._height
        return inside and all(_apart(box, other) for other in self._boxes)

    def place(self, text: str, candidates: list[tuple[float, float, str]],
              middle: bool = False) -> tuple[float, float, str] | None:
        """The first (x, y, anchor) of `candidates` where `text` fits, now taken."""
        for x, y, anchor in candidates:
            box = text_box(x, y, text, anchor, middle)
            if self.fits(box):
                self._boxes.append(box)
                return x, y, anchor
        return None


# -- the level axis -----------------------------------------------------------------

def level_ticks(top: float, most: int = 5) -> tuple[float, list[float]]:
    """Round levels from 0 covering `top` in at most `most` steps of 1, 2, 2.5 or 5 x
    10^k: (the axis maximum, the ticks)."""
    top = max(top, 1.0)
    for power in range(math.floor(math.log10(top / most)) - 1, 12):
        for base in (1, 2, 2.5, 5):
            step = base * 10 ** power
            count = math.ceil(top / step)
            if step >= 1 and count <= most:
                return count * step, [i * step for i in range(count + 1)]
    return top, [0.0, top]


# -- the time axis ------------------------------------------------------------------

@dataclass(frozen=True)
class _Step:
    size: timedelta | int  # a duration, or a number of months
    form: str  # the labels' form: a clock form (_HM, _HMS) or a date skeleton
    caption: str | None  # skeleton of the date the labels leave out (below them)


# Times of day as the locale writes them (display.clock), dates by CLDR skeleton.
_HMS, _HM, _DAY, _MONTH = "medium", "short", "MMMd", "yMMM"
STEPS = ([_Step(timedelta(seconds=s), _HMS, "yMMMd") for s in (5, 10, 15, 30)]
         + [_Step(timedelta(minutes=m), _HM, "yMMMd") for m in (1, 2, 5, 10, 15, 30)]
         + [_Step(timedelta(hours=h), _HM, "yMMMd") for h in (1, 2, 3, 6, 12)]
         + [_Step(timedelta(days=d), _DAY, "y") for d in (1, 2, 7, 14)]
         + [_Step(n, _MONTH, None) for n in (1, 2, 3, 6, 12)])


_MONTH_LENGTH = timedelta(days=30.44)


def _local_ticks(start: datetime, end: datetime, step: _Step) -> list[datetime]:
    """Local times from `start` to `end` on the step's round values: multiples of
    the step from midnight, Mondays for weeks, the first of a month."""
    midnight = start.replace(hour=0, minute=0, second=0, microsecond=0)
    if isinstance(step.size, int):
        months = start.year * 12 + start.month - 1  # months since year 0, from the first
        if start > midnight.replace(day=1):
            months += 1
        months += -months % step.size
        ticks = []
        while (tick := midnight.replace(year=months // 12, month=months % 12 + 1,
                                        day=1)) <= end:
            ticks.append(tick)
            months += step.size
        return ticks
    if step.size == timedelta(days=7):
        midnight -= timedelta(days=midnight.weekday())
    elif step.size == timedelta(days=14):
        midnight -= timedelta(days=midnight.toordinal() % 14)
    elif step.size > timedelta(days=1):
        midnight -= timedelta(days=midnight.toordinal() % step.size.days)
    first = math.ceil((start - midnight) / step.size)
    ticks, n = [], first
    while (tick := midnight + n * step.size) <= end:
        ticks.append(tick)
        n += 1
    return ticks


def _label(tick: datetime, step: _Step, where: str | None) -> str:
    """A tick's label; a time-of-day tick at midnight names the new day instead."""
    if step.form in (_HM, _HMS):
        if (tick.hour, tick.minute, tick.second) == (0, 0, 0):
            return display.skeleton(tick, _DAY, where)
        return display.clock(tick, step.form, where)
    return display.skeleton(tick, step.form, where)


@dataclass(frozen=True)
class TimeAxis:
    ticks: list[datetime]  # naive UTC
    labels: list[tuple[datetime, str, str]]  # (naive UTC, label, text-anchor): the ticks
    # with room for one
    caption: str | None  # the date (or year) the labels leave out


def time_ticks(t0: datetime, t1: datetime, x: Callable[[datetime], float], x_min: float,
               x_max: float, zone: str | None = None, where: str | None = None) -> TimeAxis:
    """The finest step whose labels (in the household's zone and locale) sit at least
    GAP apart and inside [x_min, x_max]; `x` maps a naive UTC time to user units."""
    tz = display.timezone(zone)
    start, end = (t.replace(tzinfo=UTC).astimezone(tz) for t in (t0, t1))
    chosen = None
    most = (x_max - x_min) / (text_width("00:00") + GAP)  # more labels cannot fit
    for step in STEPS:
        size = step.size if isinstance(step.size, timedelta) else step.size * _MONTH_LENGTH
        if (t1 - t0) / size > most + 1:
            continue
        ticks = _local_ticks(start, end, step)
        labelled = [(tick.astimezone(UTC).replace(tzinfo=None), _label(tick, step, where))
                    for tick in ticks]
        shown = [(at, label, anchor) for at, label in labelled
                 if (anchor := _anchor(x(at), label, x_min, x_max)) is not None]
        if len(shown) >= min(2, len(labelled)) and shown and _spaced(shown, x):
            chosen = shown, [at for at, _ in labelled], step
            break
    if chosen is None:  # shorter than the finest step: the start alone
        chosen = [(t0, display.clock(start, _HMS, where), "start")], [t0], STEPS[0]
    shown, ticks, step = chosen
    caption = None
    if step.caption is not None:
        first, last = (display.skeleton(t, step.caption, where) for t in (start, end))
        caption = first if first == last else f"{first} – {last}"
    return TimeAxis(ticks, shown, caption)


def _anchor(x: float, label: str, x_min: float, x_max: float) -> str | None:
    """Centred under its tick; at the ends of the axis, beginning or ending at it
    rather than sticking out; None when it fits neither way (the tick stays)."""
    for anchor in ("middle", "start", "end"):
        box = text_box(x, 0, label, anchor)
        if box[0] >= x_min and box[2] <= x_max:
            return anchor
    return None


def _spaced(shown: list[tuple[datetime, str, str]], x) -> bool:
    boxes = [text_box(x(at), 0, label, anchor) for at, label, anchor in shown]
    return all(a[2] + GAP <= b[0] for a, b in zip(boxes, boxes[1:]))
