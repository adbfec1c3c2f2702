"""Sensor boards on the real firmware against the real backend: level reports (kind 2)."""

import json

from sqlalchemy import select

from backend.storage.models import Device, Event
from devtools.mpy import FIRMWARE, popen_script

BOARD = {"model": "scale", "mcu": "esp32", "led": {"pin": 2, "active_high": True},
         "button": {"pin": 4, "active_low": True, "pull": "up", "rtc_wake": True,
                    "debounce_ms": 30},
         "hx711": {"dout_pin": 16, "sck_pin": 17, "gain": 128},
         "pulse": {"pin": 27, "active_low": True, "debounce_ms": 50}}


def firmware(bundle, commands):
    proc = popen_script(FIRMWARE / "main_unix.py", bundle,
                        env={"REPLENISH_ACK_TIMEOUT_MS": "300"})
    out, err = proc.communicate("".join(c + "\n" for c in commands) + "quit\n", timeout=120)
    assert proc.returncode == 0, err
    return [line for line in out.splitlines() if not line.startswith("# ")]


def levels(backend, device_id):
    with backend.sessions() as session:
        device = session.scalars(select(Device).where(Device.device_id == device_id)).one()
        return [(e.kind, e.remaining, e.result) for e in session.scalars(
            select(Event).where(Event.device_pk == device.id).order_by(Event.seq))]


def test_load_cell_reports_changes_refills_and_heartbeats(world, backend):
    device = world.buttons[0]
    board = {**BOARD, "sensor": {"kind": "load_cell", "capacity": 2000, "unit": "g",
                                 "hysteresis": 25, "heartbeat_s": 3600,
                                 "wake_interval_s": 900}}
    (device.bundle_dir / "board.json").write_text(json.dumps(board))
    out = firmware(device.bundle_dir, [
        "tare", "weight 1000", "calibrate 1000",     # calibrate once, stored in flash
        "weight 1500", "wake 0",                     # first report
        "weight 1490", "wake 900",                   # within hysteresis: radio stays off
        "weight 1400", "wake 1800",                  # used 100 g: report
        "wake 2700",                                 # nothing changed
        "weight 1950", "wake 3600",                  # refilled: report
        "wake 7300",                                 # heartbeat
    ])
    reports = [line for line in out if line.startswith("LEVEL")]
    assert reports == ["LEVEL remaining=1500 report=first", "LEVEL remaining=1490 report=none",
                       "LEVEL remaining=1400 report=change", "LEVEL remaining=1400 report=none",
                       "LEVEL remaining=1950 report=refill",
                       "LEVEL remaining=1950 report=heartbeat"]
    assert levels(backend, device.device_id) == [(2, 1500, 68), (2, 1400, 68), (2, 1950, 68),
                                                 (2, 1950, 68)]
    # the calibration survives a restart (stored), the report state too (RTC memory)
    again = firmware(device.bundle_dir, ["weight 1950", "wake 7400"])
    assert again == ["OK weight", "LEVEL remaining=1950 report=none"]


def test_cycle_counter_counts_doses(world, backend):
    device = world.buttons[1]
    board = {**BOARD, "sensor": {"kind": "cycle_counter", "capacity": 40, "unit": "doses",
                                 "dose": 1, "hysteresis": 2, "heartbeat_s": 86400}}
    (device.bundle_dir / "board.json").write_text(json.dumps(board))
    out = firmware(device.bundle_dir, ["wake 0", "cycle 2", "wake 10", "cycle", "wake 20",
                                       "refill", "wake 30"])
    assert [line for line in out if line.startswith("LEVEL")] == [
        "LEVEL remaining=40 report=first", "LEVEL remaining=38 report=none",
        "LEVEL remaining=37 report=change", "LEVEL remaining=40 report=refill"]
    assert levels(backend, device.device_id) == [(2, 40, 68), (2, 37, 68), (2, 40, 68)]
