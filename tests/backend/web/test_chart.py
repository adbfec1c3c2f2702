"""The sensor chart: the pure SVG builder, and the slot page that feeds it from events."""

from __future__ import annotations

import re
import secrets
import xml.etree.ElementTree as ET
from datetime import datetime, timedelta

import pytest
from sqlalchemy import select

from backend.orders.forecast import Reading, estimate
from backend.protocol import Kind
from backend.storage.db import utcnow
from backend.storage.models import Device, Event, Slot
from backend.web.chart import OrderMark, level_chart
from tests.web_helpers import claimed_device, household_of, new_order, register, text, web_app

SVG = "{http://www.w3.org/2000/svg}"


@pytest.fixture
def app(settings):
    yield from web_app(settings)


def falling(now: datetime, days: int = 6, per_day: int = 4, start: float = 1000,
            rate: float = 100) -> list[Reading]:
    step = timedelta(hours=24 / per_day)
    count = days * per_day
    return [Reading(now - step * (count - i), start - rate * (i * step.total_seconds() / 86400))
            for i in range(count)]


def test_chart_has_every_reading_the_reorder_line_orders_and_run_out():
    now = datetime(2026, 11, 20, 12)
    readings = falling(now)
    forecast = estimate(readings, now, lead_time_days=2, safety_days=1)
    assert forecast.reorder_point and forecast.run_out_at
    svg = ET.fromstring(str(level_chart(readings, forecast, [OrderMark(7, now, "pending")],
                                        now, "ml")))
    circles = svg.findall(f".//{SVG}circle[@class='reading']")
    assert len(circles) == len(readings)
    assert [float(c.get("data-remaining")) for c in circles] == [r.remaining for r in readings]
    # Lower level, lower on the page (larger y): the history falls.
    ys = [float(c.get("cy")) for c in circles]
    assert ys == sorted(ys)
    line = svg.find(f".//{SVG}g[@class='reorder-point']/{SVG}line")
    assert line.get("y1") == line.get("y2")  # horizontal
    assert float(svg.find(f".//{SVG}g[@class='reorder-point']").get("data-value")) == \
        pytest.approx(forecast.reorder_point, abs=1e-3)
    # The reorder line sits between the top reading and zero, in proportion.
    top, bottom = ys[0], float(svg.find(f".//{SVG}g[@class='axis']/{SVG}line").get("y1"))
    assert top < float(line.get("y1")) < bottom
    assert svg.find(f".//{SVG}g[@class='order-mark']").get("data-order") == "7"
    assert svg.find(f".//{SVG}circle[@class='run-out']") is not None
    assert "predicted to run out" in svg.find(f"{SVG}desc").text


def test_chart_without_readings_or_rate_still_draws():
    now = datetime(2026, 11, 20, 12)
    forecast = estimate([], now, lead_time_days=2)
    svg = ET.fromstring(str(level_chart([], forecast, [], now)))
    assert svg.findall(f".//{SVG}circle[@class='reading']") == []
    assert svg.find(f".//{SVG}g[@class='reorder-point']") is None
    # A flat level: a rate of zero, no run-out date.
    flat = [Reading(now - timedelta(hours=6 * i), 500) for i in range(12)][::-1]
    svg = ET.fromstring(str(level_chart(flat, estimate(flat, now, lead_time_days=2), [], now)))
    assert len(svg.findall(f".//{SVG}circle[@class='reading']")) == 12


def test_chart_escapes_text():
    now = datetime(2026, 11, 20, 12)
    readings = falling(now)
    forecast = estimate(readings, now, lead_time_days=2)
    markup = str(level_chart(readings, forecast, [OrderMark(1, now, "<b>")], now, "<ml>"))
    assert "<b>" not in markup and "<ml>" not in markup
    ET.fromstring(markup)  # still well-formed


def test_sensor_page_shows_history_forecast_and_orders(app):
    client = app.client()
    hid = household_of(app, register(client))
    device_id = claimed_device(app, hid)
    now = utcnow()
    readings = falling(now, days=5, per_day=4, start=900, rate=150)
    with app.writer() as session, session.begin():
        device = session.scalars(select(Device).where(Device.device_id == device_id)).one()
        session.add(Slot(device_pk=device.id, index=0, product_sku="DETERGENT-1L",
                         quantity=1, kind="sensor", safety_days=1))
        for seq, r in enumerate(readings, start=1):
            session.add(Event(device_pk=device.id, seq=seq, kind=int(Kind.LEVEL), slot=0,
                              remaining=int(r.remaining), tag=secrets.token_bytes(32),
                              received_at=r.at, result=65))
    order_id = new_order(app, hid, device_id)
    page = client.get(f"/devices/{device_id}/slots/0")
    assert page.status_code == 200
    body = text(page)
    svg = ET.fromstring(re.search(r"<svg.*?</svg>", body, re.S).group(0))
    assert len(svg.findall(f".//{SVG}circle[@class='reading']")) == len(readings)
    assert svg.find(f".//{SVG}g[@class='reorder-point']/{SVG}line") is not None
    assert svg.find(f".//{SVG}g[@class='order-mark']").get("data-order") == str(order_id)
    # In the household's locale, with the ISO date for machines.
    assert re.search(r'class="run-out-date"><time datetime="\d{4}-\d{2}-\d{2}">\w{3} \d', body)
    assert "style=" not in body  # the CSP allows no inline styles
    # A button slot has no chart.
    with app.writer() as session, session.begin():
        device = session.scalars(select(Device).where(Device.device_id == device_id)).one()
        session.add(Slot(device_pk=device.id, index=1, product_sku="DETERGENT-1L",
                         quantity=1))
    assert "<svg" not in text(client.get(f"/devices/{device_id}/slots/1"))
    assert client.get(f"/devices/{device_id}/slots/5").status_code == 404


def drawn(svg, cls: str) -> list[tuple[float, str]]:
    return [(float(t.get("x")), t.text) for t in svg.iter(f"{SVG}text") if t.get("class") == cls]


def plot_width(svg) -> tuple[float, float]:
    axis = svg.find(f".//{SVG}g[@class='axis']/{SVG}line")
    return float(axis.get("x1")), float(axis.get("x2"))


def test_eight_readings_within_a_minute_fill_the_time_axis():
    """Not stretched over hours of empty axis: the readings span most of the plot and
    the time labels count seconds."""
    now = datetime(2026, 11, 20, 12, 0, 57)
    readings = [Reading(now - timedelta(seconds=57 - 8 * i), 900 - 20 * i) for i in range(8)]
    svg = ET.fromstring(str(level_chart(readings, estimate(readings, now, lead_time_days=2),
                                        [], now, "ml")))
    xs = [float(c.get("cx")) for c in svg.findall(f".//{SVG}circle[@class='reading']")]
    x0, x1 = plot_width(svg)
    assert (max(xs) - min(xs)) / (x1 - x0) > 0.85
    labels = [text for _, text in drawn(svg, "time-label")]
    assert len(labels) >= 3 and all(text.count(":") == 2 for text in labels), labels
    assert [text for _, text in drawn(svg, "time-caption")] == ["Nov 20, 2026"]


SPANS = {"minute": timedelta(minutes=1), "hour": timedelta(hours=1),
         "day": timedelta(days=1), "fortnight": timedelta(days=14),
         "two months": timedelta(days=60)}


@pytest.mark.parametrize("span", SPANS.values(), ids=SPANS.keys())
def test_time_labels_are_few_round_and_evenly_spaced(span):
    now = datetime(2026, 11, 20, 12, 0, 7)
    readings = [Reading(now - span + span * i / 9, 900 - 50 * i) for i in range(10)]
    # A flat-ish end: no run-out date stretches the axis past now.
    svg = ET.fromstring(str(level_chart(readings, estimate([], now, lead_time_days=2), [],
                                        now, "ml", zone="Asia/Kolkata", where="en_GB")))
    labels = drawn(svg, "time-label")
    assert 3 <= len(labels) <= 8, labels
    xs = [x for x, _ in labels]
    steps = [b - a for a, b in zip(xs, xs[1:])]
    assert min(steps) > 0 and max(steps) / min(steps) < 1.12, labels  # months vary a little
    x0, x1 = plot_width(svg)
    assert (xs[-1] - xs[0]) / (x1 - x0) > 0.5, labels  # the labels cover the axis
    if span == timedelta(days=1):  # whole hours in the household's zone (UTC+05:30)
        assert all(re.fullmatch(r"\d\d:00|\d+ \w+", text) for _, text in labels), labels


def test_labels_follow_the_households_locale():
    now = datetime(2026, 11, 20, 12)
    readings = falling(now, days=6)
    svg = ET.fromstring(str(level_chart(readings, estimate(readings, now, lead_time_days=2),
                                        [], now, "ml", zone="Europe/Berlin", where="de_DE")))
    assert any(text.endswith("Nov.") for _, text in drawn(svg, "time-label"))
    assert "1.000 ml" in [text for _, text in drawn(svg, "level-label")]
