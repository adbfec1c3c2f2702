"""Sensor slots: level history in the database, an order at the reorder point."""

from datetime import datetime, timedelta

from sqlalchemy import select

from backend import protocol
from backend.accounts import devices
from backend.orders import sensors
from backend.protocol import Kind, Result, WireEvent
from backend.storage.db import utcnow
from backend.storage.models import Device, Event, Order
from devtools.net import api, coap_post
from tests.backend.ingest.test_ingest import answer_of, identity
from tests.worker_helpers import until

RATE_G_PER_DAY = 60.0


def make_sensor(backend, world, button, history_days=10, start=2000.0, **slot_options):
    """Turn a device into a detergent sensor with `history_days` of readings every 6 h."""
    now = utcnow()
    with backend.writer_sessions() as session, session.begin():
        device = session.scalars(select(Device).where(
            Device.device_id == button.device_id)).one()
        # Chosen as a household does: the price shown now is the price confirmed.
        devices.configure_slot(session, device, 0, "DETERGENT-2KG", 1, kind="sensor",
                               **slot_options)
        readings = int(history_days * 4)
        for n in range(readings):
            at = now - timedelta(hours=6 * (readings - n))
            elapsed = (at - (now - timedelta(hours=6 * readings))).total_seconds() / 86400
            session.add(Event(device_pk=device.id, seq=n + 1, kind=int(Kind.LEVEL), slot=0,
                              remaining=int(start - RATE_G_PER_DAY * elapsed),
                              tag=bytes(32), received_at=at, result=68))
        device.last_seq = readings
        return readings


def level(world, button, seq, remaining):
    key, kid = identity(button)
    request = protocol.encode_event(key, kid, WireEvent(seq=seq, kind=Kind.LEVEL, slot=0,
                                                        remaining=remaining))
    return answer_of(button, request, coap_post(world.event_url, request))


def test_forecast_above_the_reorder_point_does_not_order(backend, world):
    sensor = world.buttons[0]
    seq = make_sensor(backend, world, sensor)  # 2000 g -> about 1400 g over 10 days
    assert level(world, sensor, seq + 1, 1390).result is Result.CHANGED
    status, forecast = api("GET", f"{world.api_url}/devices/{sensor.device_id}/slots/0/"
                           "forecast", world.token)
    assert status == 200
    assert abs(forecast["rate_per_day"] - RATE_G_PER_DAY) < 6
    # 60 g/day x (3 days lead time + 2 days safety) = 300 g
    assert abs(forecast["reorder_point"] - 300) < 30 and forecast["should_order"] is False
    assert forecast["lead_time_days"] == 3.0
    days_left = (1390 / RATE_G_PER_DAY)
    run_out = datetime.fromisoformat(forecast["run_out_at"].rstrip("Z"))
    assert abs((run_out - utcnow()).total_seconds() / 86400 - days_left) < 1.5


def test_sensor_orders_at_the_reorder_point_once(backend, world):
    sensor = world.buttons[0]
    seq = make_sensor(backend, world, sensor, history_days=29)  # down to about 275 g
    ordered = level(world, sensor, seq + 1, 260)  # on the trend: 2000 - 60 x 29
    assert ordered.result is Result.CREATED
    assert level(world, sensor, seq + 2, 255).result is Result.CHANGED, "order is open"
    with backend.sessions() as session:
        (order,) = session.scalars(select(Order)).all()
        assert (order.source, order.product_sku, order.quantity) == ("sensor",
                                                                      "DETERGENT-2KG", 1)
    until(backend, lambda s: s.get(Order, ordered.order).state == "delivered")


def test_a_knock_does_not_order(backend, world):
    sensor = world.buttons[0]
    seq = make_sensor(backend, world, sensor)
    # One reading of 0 g (the bottle lifted off the scale) amid ~1400 g readings.
    assert level(world, sensor, seq + 1, 0).result is Result.CHANGED
    assert level(world, sensor, seq + 2, 1385).result is Result.CHANGED
    with backend.sessions() as session:
        assert session.scalars(select(Order)).all() == []


def test_lead_time_is_learned_from_deliveries(backend, world):
    with backend.writer_sessions() as session, session.begin():
        device = session.scalars(select(Device)).first()
        for days in (4.5, 5.0, 5.5, 5.0):
            created = utcnow() - timedelta(days=20)
            session.add(Order(household_id=world.household_id, device_pk=device.id,
                              slot_index=9, product_sku="DETERGENT-2KG", quantity=1,
                              state="delivered", created_at=created, updated_at=created,
                              delivered_at=created + timedelta(days=days)))
    with backend.sessions() as session:
        learned = sensors.lead_time_days(session, "DETERGENT-2KG")
        assert 5.0 <= learned <= 5.5
        assert sensors.lead_time_days(session, "COFFEE-BEANS-1KG") == 2.0  # catalogue default


def test_a_new_sensor_orders_below_its_floor_before_the_forecast_has_data(backend, world):
    sensor = world.buttons[0]
    make_sensor(backend, world, sensor, history_days=0, min_level=300)
    assert level(world, sensor, 1, 900).result is Result.CHANGED  # above the floor
    status, forecast = api("GET", f"{world.api_url}/devices/{sensor.device_id}/slots/0/"
                           "forecast", world.token)
    assert forecast["rate_per_day"] is None
    assert forecast["explanation"].startswith("Still learning how fast it is used: 1 "
                                              "reading so far")
    assert "orders when the level falls below 300 g" in forecast["explanation"]
    # One low reading after a high one may be a knock; the second in a row orders.
    assert level(world, sensor, 2, 280).result is Result.CHANGED
    ordered = level(world, sensor, 3, 275)
    assert ordered.result is Result.CREATED
    with backend.sessions() as session:
        order = session.get(Order, ordered.order)
        assert (order.source, order.quantity) == ("sensor", 1)


def test_one_low_knock_under_the_floor_does_not_order(backend, world):
    sensor = world.buttons[0]
    make_sensor(backend, world, sensor, history_days=2, min_level=300)  # ~1880 g
    assert level(world, sensor, 100, 0).result is Result.CHANGED  # bottle lifted
    with backend.sessions() as session:
        assert session.scalars(select(Order)).all() == []


def test_reorder_to_a_target_in_whole_packs(backend, world):
    sensor = world.buttons[0]
    make_sensor(backend, world, sensor, history_days=0, min_level=500, target_level=5000)
    ordered = level(world, sensor, 1, 450)  # a new sensor's first reading: below the floor
    assert ordered.result is Result.CREATED
    with backend.sessions() as session:
        # 5000 - 450 = 4550 g missing; packs of 2000 g: 3 packs (never a part pack).
        assert session.get(Order, ordered.order).quantity == 3


def test_left_now_is_the_latest_reading_and_the_forecast_explains_itself(backend, world):
    sensor = world.buttons[0]
    seq = make_sensor(backend, world, sensor)  # 2000 g -> about 1400 g over 10 days
    assert level(world, sensor, seq + 1, 1390).result is Result.CHANGED
    status, forecast = api("GET", f"{world.api_url}/devices/{sensor.device_id}/slots/0/"
                           "forecast", world.token)
    assert status == 200 and forecast["left_now"] == 1390
    assert forecast["explanation"].startswith("Using about 60 g a day, the 1.39 kg left "
                                              "last about 23 days (until about "), (
        forecast["explanation"])
    assert "It reorders when 5 days are left: 3 days for delivery and 2 days to spare." in (
        forecast["explanation"])
    # A knock: the robust level ignores it, but "left now" says what the sensor said.
    assert level(world, sensor, seq + 2, 0).result is Result.CHANGED
    status, forecast = api("GET", f"{world.api_url}/devices/{sensor.device_id}/slots/0/"
                           "forecast", world.token)
    assert forecast["left_now"] == 0 and forecast["remaining"] > 1000
    assert "The latest reading, 0 g, is far from the readings before it" in (
        forecast["explanation"])
