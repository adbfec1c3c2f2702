"""Battery, firmware and the last status report on the household's pages and API, as
ingest stored them from the device's own signed events: one device's heartbeat goes
through the per-event path (`decide`), the other's through the group commit's batch
path (`BatchWriter`), on SQLite and PostgreSQL."""

from __future__ import annotations

import re
import secrets

import pytest
from sqlalchemy import select

from backend import protocol
from backend.accounts import tokens
from backend.accounts.keys import Keyring
from backend.ingest.decide import decide
from backend.ingest.pipeline import BatchWriter
from backend.protocol import Kind, Result, WireEvent
from backend.storage.models import Device
from backend.web.device_health import battery_reading
from tests.web_helpers import claimed_device, household_of, register, text, web_app


@pytest.fixture
def app(settings):
    yield from web_app(settings)


def keyed_device(app, keyring: Keyring, household_id: int) -> tuple[str, bytes]:
    """A claimed device that never reported (battery, firmware unknown) with a real key."""
    device_id = claimed_device(app, household_id, fw=None, battery_mv=None)
    key = secrets.token_bytes(32)
    with app.writer() as session, session.begin():
        device = session.scalars(select(Device).where(Device.device_id == device_id)).one()
        device.wrapped_key = keyring.wrap(device_id, key)
    return device_id, key


def signed(device_id: str, key: bytes, seq: int, kind: Kind, **fields) -> bytes:
    return protocol.encode_event(key, bytes.fromhex(device_id),
                                 WireEvent(seq=seq, kind=kind, slot=0, **fields))


def facts(page: str) -> dict[str, str]:
    """The <dl class="facts"> of a device page, tags stripped: {"Battery": "...", ...}."""
    pairs = re.findall(r"<dt>([^<]+)</dt><dd[^>]*>(.*?)</dd>", page, re.S)
    return {name: " ".join(re.sub(r"<[^>]+>", "", value).split()) for name, value in pairs}


def test_heartbeats_from_either_ingest_path_show_on_the_pages_and_api(app, settings):
    keyring = Keyring(secrets.token_bytes(32))
    client = app.client()
    household_id = household_of(app, register(client))
    single, single_key = keyed_device(app, keyring, household_id)
    batched, batched_key = keyed_device(app, keyring, household_id)

    before = facts(text(client.get(f"/devices/{single}")))
    assert before["Battery"] == "Not reported yet"
    assert before["Firmware"] == "1.0.0 as made (not reported yet)"  # the batch's
    assert before["Last status"].startswith("None yet")

    with app.writer() as session, session.begin():
        reply = decide(session, keyring, signed(single, single_key, 1, Kind.STATUS,
                                                battery_mv=2950, fw="0.2.0", rssi=-58))
    assert reply.result is Result.CHANGED
    [reply] = BatchWriter(app.writer, keyring).commit([signed(
        batched, batched_key, 1, Kind.STATUS, battery_mv=2450, fw="0.2.1", rssi=-85)])
    assert reply.result is Result.CHANGED

    one = facts(text(client.get(f"/devices/{single}")))
    assert one["Battery"] == "Good · 2950 mV"
    assert one["Firmware"] == "0.2.0"
    assert one["Last status"].endswith("· Wi-Fi good (-58 dBm)")
    other = facts(text(client.get(f"/devices/{batched}")))
    assert other["Battery"] == "Getting low · 2450 mV"
    assert other["Firmware"] == "0.2.1"
    assert other["Last status"].endswith("· Wi-Fi weak (-85 dBm)")
    listed = text(client.get("/devices"))
    cards = {d: facts(listed.split(f'id="device-{d}"')[1].split("</li>")[0])
             for d in (single, batched)}
    assert cards[single]["Battery"] == "Good · 2950 mV" and cards[single]["Firmware"] == "0.2.0"
    assert cards[batched]["Battery"] == "Getting low · 2450 mV"

    # A press carries the battery too (not the firmware): the latest reading wins.
    low = settings.low_battery_mv - 100
    BatchWriter(app.writer, keyring).commit([signed(single, single_key, 2, Kind.PRESS,
                                                    battery_mv=low)])
    with app.writer() as session, session.begin():
        token = tokens.issue_for_household(session, household_id)
    api = {d["device_id"]: d for d in client.get(
        "/api/v1/devices", headers={"Authorization": f"Bearer {token}"}).get_json()["devices"]}
    assert (api[single]["battery"], api[single]["battery_mv"]) == ("low", low)
    assert api[single]["low_battery"] is True and api[single]["fw_version"] == "0.2.0"
    assert (api[batched]["battery"], api[batched]["fw_version"]) == ("getting low", "0.2.1")
    assert facts(text(client.get(f"/devices/{single}")))["Battery"] == f"Low · {low} mV"


def test_a_device_without_a_battery_sensor_says_so(app):
    keyring = Keyring(secrets.token_bytes(32))
    client = app.client()
    device_id, key = keyed_device(app, keyring, household_of(app, register(client)))
    with app.writer() as session, session.begin():
        decide(session, keyring, signed(device_id, key, 1, Kind.STATUS, fw="0.2.0"))
    shown = facts(text(client.get(f"/devices/{device_id}")))
    assert shown["Battery"] == "Not measured: this device reports no battery"
    assert shown["Firmware"] == "0.2.0" and "Wi-Fi" not in shown["Last status"]


def test_battery_words_at_their_edges():
    assert [battery_reading(mv, 2300) for mv in (None, 2299, 2300, 2599, 2600)] == [
        None, "low", "getting low", "getting low", "good"]
