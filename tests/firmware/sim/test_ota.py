"""Over-the-air updates on a simulated ESP32 running the shipped main.py against the real
backend: a heartbeat's offer is fetched, verified and installed, the chip resets into
the new slot on trial and confirms it; a release that crashes at import is rolled back
after three boots. Flash renames and resets go through the simulated chip."""

import itertools
import json

import cbor2
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from devtools.esp32sim import harness
from devtools.esp32sim.life import wire_events
from devtools.esp32sim.world import BOARDS, FIRMWARE, Backend_, build_flash
from provisioning import releases
from provisioning.batch import Firmware

BOARD_NAMES = sorted(p.name for p in BOARDS.glob("*.json"))


@pytest.fixture(scope="module")
def backend(tmp_path_factory):
    with Backend_(tmp_path_factory.mktemp("backend")) as running:
        yield running


def _device(backend, tmp_path, key, board):
    # A device in the field on an older firmware: the test's 0.2.0 release updates it.
    made, profile = backend.provision(BOARDS / board, tmp_path / "provision",
                                      release_key=releases.public_key_hex(key),
                                      firmware=Firmware("0.1.0"))
    flash = build_flash(made.bundle_dir / "identity.json", BOARDS / board, tmp_path / "flash")
    if "hx711" in profile:
        (flash / "bundle" / "state").mkdir(parents=True, exist_ok=True)
        (flash / "bundle" / "state" / "cal").write_text("84000 420.0")
    device = harness.Device(profile["mcu"], profile, flash, tmp_path / "runs")
    device.serial = made.serial
    device.phone_creds = ("home", "hunter22", made.setup_secret)
    assert device.boot().end == "reset"  # setup mode saved the credentials
    device.phone_creds = None
    return device


_BUILDS = itertools.count(2)  # one backend for the module: build numbers per model


def _publish(backend, key, device, files, version):
    """A release for this device's batch only (each test has its own device)."""
    batch = device.serial.rsplit("-", 1)[0]
    with backend.backend.writer_sessions() as session, session.begin():
        return releases.publish(session, key, model=device.board["model"], version=version,
                                files=files, build=next(_BUILDS), batch=batch).id


def _boot_record(device):
    raw = device.read_flash("ota/boot.json")
    return json.loads(raw) if raw else None


@pytest.fixture(scope="module")
def v2_files():
    return releases.build_files(FIRMWARE)


@pytest.mark.parametrize("board", BOARD_NAMES)
def test_an_offered_update_installs_runs_on_trial_and_is_confirmed(backend, tmp_path, board,
                                                                   v2_files):
    key = Ed25519PrivateKey.generate()
    device = _device(backend, tmp_path, key, board)
    _publish(backend, key, device, v2_files, "0.2.0")
    install = device.boot()  # power-on: boot event, heartbeat, offer, download, reset
    assert install.end == "reset", install.traceback
    record = _boot_record(device)
    assert record["active"].startswith("b") and not record["confirmed"]
    trial = device.boot()
    assert trial.end == "deepsleep", trial.traceback
    assert _boot_record(device)["confirmed"] is True
    assert not [r for r in device.runs if r.traceback]


@pytest.fixture(scope="module")
def v3_crashing_files(tmp_path_factory):
    source = tmp_path_factory.mktemp("v3")
    for path in FIRMWARE.rglob("*.py"):
        target = source / path.relative_to(FIRMWARE)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(path.read_bytes())
    (source / "replenish" / "wake.py").write_text('raise RuntimeError("v3 bug")\n')
    return releases.build_files(source)


@pytest.mark.parametrize("board", BOARD_NAMES)
def test_a_release_that_crashes_at_import_is_rolled_back_after_three_boots(
        backend, tmp_path, board, v3_crashing_files):
    key = Ed25519PrivateKey.generate()
    device = _device(backend, tmp_path, key, board)
    _publish(backend, key, device, v3_crashing_files, "0.3.0")
    assert device.boot().end == "reset"  # installed
    crashes = []
    for _ in range(6):
        run = device.boot()
        if run.traceback and "v3 bug" in run.traceback:
            crashes.append(run)
        if (_boot_record(device) or {}).get("active") is None:
            break
    record = _boot_record(device)
    assert len(crashes) == 3  # three boots on trial, each crashed into main.py's handler
    assert record["active"] is None and record["version"] == "0.1.0"  # the factory again
    assert crashes[0].out["timer_ms"] == 600000  # the crash handler sleeps, radio off
    rolled_back = device.runs[-1]
    reports = [cbor2.loads(payload).get(12) for _seq, _kind, payload in wire_events(rolled_back)]
    assert 2 in reports  # EV_OTA = OTA_ROLLED_BACK, told to the backend on that wake
