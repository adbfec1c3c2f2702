"""A device's battery, firmware and last status report, as a household reads them.

Ingest keeps the latest battery and firmware any event reported on the device row (both
its paths: backend/ingest/decide.py); the status history (a row per heartbeat,
backend/fleet/offers.py) adds when the device last reported and its Wi-Fi signal. Until
a device reports its own firmware, the version it was flashed or made with is shown.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from backend.fleet import offers
from backend.storage.models import Batch, Device, DeviceStatus

GOOD = "good"
GETTING_LOW = "getting low"
LOW = "low"
READINGS = (GOOD, GETTING_LOW, LOW)
# Notice before the warning: a battery this close to the low mark gets a heads-up, so
# a household can buy cells before the device nags.
HEADS_UP_MV = 300

# Wi-Fi RSSI in words, the usual bands (-67 dBm: reliable; below -80: drops likely).
_SIGNAL = ((-67, "good"), (-80, "fair"))


def battery_reading(battery_mv: int | None, low_battery_mv: int) -> str | None:
    """"good", "getting low" or "low" (below REPLENISH_LOW_BATTERY_MV); None unmeasured."""
    if battery_mv is None:
        return None
    if battery_mv < low_battery_mv:
        return LOW
    if battery_mv < low_battery_mv + HEADS_UP_MV:
        return GETTING_LOW
    return GOOD


def signal_reading(rssi_dbm: int | None) -> str | None:
    if rssi_dbm is None:
        return None
    for floor, word in _SIGNAL:
        if rssi_dbm >= floor:
            return word
    return "weak"


@dataclass(frozen=True)
class Health:
    battery_mv: int | None
    battery: str | None  # battery_reading
    fw_version: str | None  # as the device reported it
    fw_as_made: str | None  # flashed or made with, shown until it reports its own
    status_at: datetime | None  # its latest heartbeat
    rssi_dbm: int | None
    signal: str | None  # signal_reading


def health_of(session: Session, devices: list[Device], low_battery_mv: int) -> dict[int, Health]:
    """Health of each device, by primary key: two queries whatever the count."""
    statuses = offers.latest_statuses(session, [d.id for d in devices])
    batch_ids = sorted({d.batch_id for d in devices if d.batch_id is not None})
    made = dict(session.execute(select(Batch.id, Batch.firmware_version)
                                .where(Batch.id.in_(batch_ids))).all()) if batch_ids else {}
    return {d.id: _health(d, statuses.get(d.id), made.get(d.batch_id), low_battery_mv)
            for d in devices}


def _health(device: Device, status: DeviceStatus | None, batch_fw: str | None,
            low_battery_mv: int) -> Health:
    rssi = status.rssi_dbm if status else None
    return Health(battery_mv=device.battery_mv,
                  battery=battery_reading(device.battery_mv, low_battery_mv),
                  fw_version=device.fw_version,
                  fw_as_made=device.flashed_firmware or batch_fw,
                  status_at=status.received_at if status else None,
                  rssi_dbm=rssi, signal=signal_reading(rssi))
