"""firmware/main.py -- the ESP32 entry point as shipped -- on the simulated chip of every
board profile, against the real backend: it never calls what its chip lacks, arms the
wake its chip has, and a press wakes it with the reason the firmware decodes.

The fault tests run the firmware as it was before issue 15's fixes (PRE_FIX) to show
the simulation finds what the issue found on paper; they skip where git history is
not available (a shallow checkout)."""

import json
import subprocess
from pathlib import Path

import pytest

from devtools.esp32sim import harness
from devtools.esp32sim.device import chips
from devtools.esp32sim.world import BOARDS, ROOT, Backend_, build_flash, firmware_at

PRE_FIX = "c084fd3"  # fw before issue 15's firmware changes
PRESS_REASON = {"esp32": chips.WAKE_EXT0, "esp32s3": chips.WAKE_EXT0,
                "esp32c3": chips.WAKE_GPIO, "esp32c6": chips.WAKE_GPIO}


@pytest.fixture(scope="module")
def backend(tmp_path_factory):
    with Backend_(tmp_path_factory.mktemp("backend")) as running:
        yield running


def _device(backend, board, work, firmware_dir=None):
    profile = board if isinstance(board, dict) else json.loads(Path(board).read_text())
    made, profile = backend.provision(profile, work / "provision")
    kwargs = {} if firmware_dir is None else {"firmware_dir": firmware_dir}
    flash = build_flash(made.bundle_dir / "identity.json", profile, work / "flash", **kwargs)
    if "hx711" in profile:
        (flash / "bundle" / "state").mkdir(parents=True, exist_ok=True)
        (flash / "bundle" / "state" / "cal").write_text("84000 420.0")
    device = harness.Device(profile["mcu"], profile, flash, work / "runs")
    device.phone_creds = ("home", "hunter22", made.setup_secret)
    return made, device


def _last_error(run):
    return (run.traceback or "").splitlines()[-1:]


@pytest.mark.parametrize("board", sorted(p.name for p in BOARDS.glob("*.json")))
def test_main_py_sets_up_orders_and_sleeps_on_its_chip(backend, board, tmp_path):
    made, device = _device(backend, BOARDS / board, tmp_path)
    setup = device.boot()
    device.phone_creds = None
    assert setup.end == "reset", _last_error(setup)  # credentials saved, then reset
    device.script.press(device.world_us / harness.US + 60)
    runs = [device.boot(), device.boot()]
    errors = [_last_error(r) for r in device.runs if r.traceback]
    assert errors == []  # nothing raised, not even into main.py's crash handler
    assert [r.end for r in runs] == ["deepsleep", "deepsleep"]
    press = runs[1]
    assert press.wake_reason == PRESS_REASON[device.chip]
    assert [o[2] for o in backend.orders(made.device_id)] == ["press"]


def _history():
    done = subprocess.run(["git", "-C", str(ROOT), "cat-file", "-e", PRE_FIX + "^{commit}"],
                          capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"git history without {PRE_FIX}")


@pytest.fixture(scope="module")
def pre_fix(tmp_path_factory):
    _history()
    return firmware_at(PRE_FIX, tmp_path_factory.mktemp("prefix"))


def _old_board(name):
    done = subprocess.run(["git", "-C", str(ROOT), "show", f"{PRE_FIX}:hardware/boards/{name}"],
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


def test_pre_fix_c3_button_boot_loops_on_its_battery_pin(backend, pre_fix, tmp_path):
    _made, device = _device(backend, _old_board("esp32c3-button.json"), tmp_path, pre_fix)
    runs = [device.boot() for _ in range(3)]
    assert [r.end for r in runs] == ["task_wdt"] * 3  # REPL, awake, until the 60 s WDT
    assert _last_error(runs[0]) == [
        "ValueError: battery must be on an ADC1 pin (ADC2 is taken by Wi-Fi)"]


def test_pre_fix_c3_calls_wake_on_ext0_which_the_c3_lacks(backend, pre_fix, tmp_path):
    board = _old_board("esp32c3-button.json")
    del board["battery"]  # past the first fault
    board["button"]["pin"] = 4  # on the classic RTC list the old firmware checks
    _made, device = _device(backend, board, tmp_path, pre_fix)
    device.boot()
    device.phone_creds = None
    run = device.boot()
    assert run.end == "task_wdt"
    assert _last_error(run) == ["AttributeError: module 'esp32' has no attribute 'wake_on_ext0'"]


def test_pre_fix_load_cell_trips_the_interrupt_watchdog(backend, pre_fix, tmp_path):
    _made, device = _device(backend, _old_board("esp32-loadcell-hx711.json"), tmp_path,
                            pre_fix)
    device.boot()
    device.phone_creds = None
    ends = [device.boot().end for _ in range(3)]
    assert "int_wdt" in ends  # every timer wake that measures panics
    timer_wakes = [r for r in device.runs if r.wake_reason == chips.WAKE_TIMER]
    assert timer_wakes and all(r.end == "int_wdt" for r in timer_wakes)


def test_pre_fix_button_with_backend_unreachable_resets_before_queueing(backend, pre_fix,
                                                                        tmp_path):
    made, device = _device(backend, _old_board("esp32-devkitc-button.json"), tmp_path,
                           pre_fix)
    device.boot()
    device.phone_creds = None
    device.script.faults.append((0, 10 ** 12, "backend_unreachable"))
    runs = [device.boot() for _ in range(3)]
    assert [r.end for r in runs] == ["task_wdt"] * 3  # CoAP retransmission > 60 s WDT
    assert device.read_flash("bundle/state/q.0") is None  # nothing was queued


def test_setup_mode_nobody_joins_ends_in_deep_sleep_not_a_watchdog_reset(backend, tmp_path):
    """Issue 15: setup mode served up to 600 s under an unfed 60 s watchdog."""
    _made, device = _device(backend, BOARDS / "esp32c3-button.json", tmp_path)
    device.phone_creds = None  # the access point opens, no phone ever joins
    run = device.boot()
    assert run.end == "deepsleep", run.traceback
    assert 600 * harness.US <= run.awake_us < 602 * harness.US  # the 600 s setup window
    assert run.out["energy"]["ap"] >= 600 * harness.US
