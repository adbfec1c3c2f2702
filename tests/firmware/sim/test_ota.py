"""Over-the-air updates on a simulated ESP32 running the shipped main.py against the real
backend: a heartbeat's offer is fetched, verified and installed, the chip resets into
the new slot on trial and confirms it; a release that crashes at import is rolled back
after three boots. Flash renames and resets go through the simulated chip."""

import json

import cbor2
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from backend.fleet import releases
from devtools.esp32sim import harness
from devtools.esp32sim.life import wire_events
from devtools.esp32sim.world import BOARDS, FIRMWARE, Backend_, build_flash

BOARD = BOARDS / "esp32-devkitc-button.json"


@pytest.fixture(scope="module")
def backend(tmp_path_factory):
    with Backend_(tmp_path_factory.mktemp("backend")) as running:
        yield running


def _device(backend, tmp_path, key):
    made, profile = backend.provision(BOARD, tmp_path / "provision",
                                      release_key=releases.public_key_hex(key))
    flash = build_flash(made.bundle_dir / "identity.json", BOARD, tmp_path / "flash")
    device = harness.Device(profile["mcu"], profile, flash, tmp_path / "runs")
    device.phone_creds = ("home", "hunter22", made.setup_secret)
    assert device.boot().end == "reset"  # setup mode saved the credentials
    device.phone_creds = None
    return device


def _publish(backend, key, files, version, build):
    with backend.backend.writer_sessions() as session, session.begin():
        return releases.publish(session, key, model="button", version=version, files=files,
                                build=build).id


def _boot_record(device):
    raw = device.read_flash("ota/boot.json")
    return json.loads(raw) if raw else None


def test_an_offered_update_installs_runs_on_trial_and_is_confirmed(backend, tmp_path):
    key = Ed25519PrivateKey.generate()
    device = _device(backend, tmp_path, key)
    _publish(backend, key, releases.build_files(FIRMWARE), "0.2.0", 2)
    install = device.boot()  # power-on: boot event, heartbeat, offer, download, reset
    assert install.end == "reset", install.traceback
    record = _boot_record(device)
    assert record["active"] == "b2" and not record["confirmed"]
    trial = device.boot()
    assert trial.end == "deepsleep", trial.traceback
    assert _boot_record(device)["confirmed"] is True
    assert not [r for r in device.runs if r.traceback]


def test_a_release_that_crashes_at_import_is_rolled_back_after_three_boots(backend, tmp_path):
    key = Ed25519PrivateKey.generate()
    device = _device(backend, tmp_path, key)
    source = tmp_path / "v3"
    for path in FIRMWARE.rglob("*.py"):
        target = source / path.relative_to(FIRMWARE)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(path.read_bytes())
    (source / "replenish" / "wake.py").write_text('raise RuntimeError("v3 bug")\n')
    _publish(backend, key, releases.build_files(source), "0.3.0", 3)
    assert device.boot().end == "reset"  # installed
    crashes = []
    for _ in range(6):
        run = device.boot()
        if run.traceback and "v3 bug" in run.traceback:
            crashes.append(run)
        if (_boot_record(device) or {}).get("active") != "b3":
            break
    record = _boot_record(device)
    assert len(crashes) == 3  # three boots on trial, each crashed into main.py's handler
    assert record["active"] is None and record["version"] == "0.1.0"  # the factory again
    assert crashes[0].out["timer_ms"] == 600000  # the crash handler sleeps, radio off
    rolled_back = device.runs[-1]
    reports = [cbor2.loads(payload).get(12) for _seq, _kind, payload in wire_events(rolled_back)]
    assert 2 in reports  # EV_OTA = OTA_ROLLED_BACK, told to the backend on that wake
