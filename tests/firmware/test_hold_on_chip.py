"""The long press (hold 5 s: setup mode) measured from the wake, on a simulated C3.

The chip needs 200-300 ms to boot before main.py can look at the button; the firmware
counts that time as held (time.ticks_ms() since start), so a 5.1 s hold opens setup
mode and a 4.7 s hold is a press. Counting only from the first look made 5.1 s a
press: the user had to hold about 5.3 s.
"""

import json

import pytest

from devtools.esp32sim import harness
from devtools.esp32sim.world import BOARDS, Backend_, build_flash


@pytest.fixture(scope="module")
def backend(tmp_path_factory):
    with Backend_(tmp_path_factory.mktemp("backend")) as running:
        yield running


def device_after_setup(backend, tmp_path):
    profile = json.loads((BOARDS / "esp32c3-button.json").read_text())
    made, profile = backend.provision(profile, tmp_path / "provision")
    flash = build_flash(made.bundle_dir / "identity.json", profile, tmp_path / "flash")
    device = harness.Device(profile["mcu"], profile, flash, tmp_path / "runs")
    device.phone_creds = ("home", "hunter22", made.setup_secret)
    assert device.boot().end == "reset"  # first boot: setup mode, credentials saved
    return device


@pytest.mark.parametrize("held_ms, setup", [(4700, False), (5100, True)])
def test_hold_counts_from_the_wake(backend, tmp_path, held_ms, setup):
    device = device_after_setup(backend, tmp_path)
    # the wake sources are decided as each run ends: the press is scripted before the
    # power-on run that arms the button
    device.script.press(device.world_us / harness.US + 60, held_ms)
    assert device.boot().end == "deepsleep"  # power-on with Wi-Fi: boot event
    run = device.boot()
    assert run.wake_reason == 7  # a GPIO wake on the C3
    # setup mode ends in a reset once the phone has posted the form; a press sleeps
    assert run.end == ("reset" if setup else "deepsleep"), run.out.get("error")
