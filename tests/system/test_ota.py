"""Over-the-air updates on the MicroPython unix port against the real backend
(aiocoap on loopback, SQLite and PostgreSQL): install, refuse, roll back, resume."""

from __future__ import annotations

import json
import subprocess

import pytest
from sqlalchemy import select

from backend.fleet import offers as fleet
from backend.storage.models import Device, DeviceStatus, DeviceUpdate, Release, ReleaseFile
from devtools.mpy import FIRMWARE
from provisioning import releases
from tests.fleet_helpers import CorruptingRelay, lines, make_fleet, publish, run_device, variant


@pytest.fixture(scope="module")
def v2_files():
    return releases.build_files(FIRMWARE, unix=True)


@pytest.fixture(scope="module")
def v3_crashing_files(tmp_path_factory):
    """A v3 whose button module raises at import: the firmware dies at every boot."""
    source = variant(tmp_path_factory.mktemp("v3"), "fw", {
        "replenish/button.py": 'raise RuntimeError("v3 bug: crashes at boot")\n'})
    return releases.build_files(source, unix=True)


@pytest.fixture
def fleet1(backend, tmp_path):
    return make_fleet(backend, tmp_path / "bundles", count=1)


def _device(backend, device_id):
    with backend.sessions() as session:
        return session.scalars(select(Device).where(Device.device_id == device_id)).one()


def _update(backend, release_id, device_id):
    with backend.sessions() as session:
        return session.scalars(select(DeviceUpdate.state).join(
            Device, Device.id == DeviceUpdate.device_pk).where(
            DeviceUpdate.release_id == release_id, Device.device_id == device_id)).first()


def _install(bundle, release_id) -> subprocess.CompletedProcess:
    done = run_device(bundle, ["status"])
    assert done.returncode == 0, done.stdout + done.stderr
    assert lines(done, "STATUS")[0]["update"] == str(release_id), done.stdout
    return done


def test_v1_to_v2_installs_checks_in_and_reports(backend, fleet1, v2_files):
    device = fleet1.devices[0]
    release = publish(fleet1, v2_files, "0.2.0", build=2)

    done = _install(device.bundle_dir, release)
    ota = lines(done, "OTA")
    assert ota[0]["outcome"] == "installed" and ota[0]["release"] == str(release), done.stdout
    assert int(ota[0]["blocks"]) >= len(v2_files) + 1  # every file and the manifest
    assert int(ota[0]["bytes"]) >= sum(len(d) for d in v2_files.values())
    assert "REBOOT" in done.stdout.splitlines()
    assert (device.bundle_dir / "ota" / "b2" / "replenish" / "sender.mpy").read_bytes() \
        == v2_files["replenish/sender.mpy"]
    assert _update(backend, release, device.device_id) == fleet.OFFERED

    # The next boot runs the new slot on trial; its first heartbeat confirms it.
    again = run_device(device.bundle_dir, ["press"])
    assert again.returncode == 0, again.stdout + again.stderr
    assert "/ota/b2/replenish" in again.stdout
    assert lines(again, "STATUS")[0]["fw"] == "0.2.0"
    assert "LED ordered" in again.stdout
    assert _update(backend, release, device.device_id) == fleet.INSTALLED
    assert _device(backend, device.device_id).fw_version == "0.2.0"
    with backend.sessions() as session:
        reports = session.scalars(select(DeviceStatus.ota).where(
            DeviceStatus.release_id == release)).all()
    assert reports == [1]  # OtaReport.INSTALLED, once

    # Confirmed: later boots run v2 without a trial and are not offered it again.
    third = run_device(device.bundle_dir, ["status"])
    assert "# boot 1 " in third.stdout and "/ota/b2/replenish" in third.stdout
    assert lines(third, "STATUS") == [{"result": "68", "update": "none", "fw": "0.2.0",
                                       "wakes": lines(third, "STATUS")[0]["wakes"]}]

    # v2 updates itself too (compiled modules): the update's own heap stays small.
    release21 = publish(fleet1, v2_files, "0.2.1", build=3)
    ota = lines(_install(device.bundle_dir, release21), "OTA")[0]
    assert ota["outcome"] == "installed"
    # Live heap growth: the manifest, its signature check and one block at a time (the
    # release is ~41 KB of modules; measured ~6 KB on the 64-bit unix port).
    assert int(ota["heap_peak"]) - int(ota["heap_base"]) < 10 * 1024
    assert int(ota["bytes"]) > 4 * 10 * 1024


def test_corrupted_block_is_refused_and_v1_keeps_running(backend, fleet1, v2_files):
    device = fleet1.devices[0]
    release = publish(fleet1, v2_files, "0.2.0", build=2)
    with backend.writer_sessions() as session, session.begin():
        row = session.scalars(select(ReleaseFile).where(
            ReleaseFile.release_id == release, ReleaseFile.size > 2048)).first()
        damaged = bytearray(row.content)
        damaged[1500] ^= 0x01  # one bit in the second block; the digest stays
        row.content = bytes(damaged)
        path = row.path

    done = _install(device.bundle_dir, release)
    ota = lines(done, "OTA")[0]
    assert ota["outcome"] == "refused", done.stdout
    assert f"{path} does not match its digest" in done.stdout
    assert "REBOOT" not in done.stdout
    assert not (device.bundle_dir / "ota" / "stage").exists()
    assert _update(backend, release, device.device_id) == fleet.REFUSED
    # The refusal went out at once; the old firmware still works and is not offered it.
    after = run_device(device.bundle_dir, ["press", "status"])
    assert "/ota/" not in after.stdout and "LED ordered" in after.stdout
    assert lines(after, "STATUS")[0]["update"] == "none"
    assert lines(after, "STATUS")[0]["fw"] == "0.1.0"


def test_block_corrupted_in_transit_is_refused(backend, fleet1, v2_files):
    """One bit flipped in one Block2 response on the way (a relay on loopback)."""
    device = fleet1.devices[0]
    release = publish(fleet1, v2_files, "0.2.0", build=2)
    identity = json.loads((device.bundle_dir / "identity.json").read_text())
    with CorruptingRelay(backend.coap_port, "replenish/queue.mpy", block=2) as relay:
        identity["coap_port"] = relay.port
        (device.bundle_dir / "identity.json").write_text(json.dumps(identity))
        done = _install(device.bundle_dir, release)
    assert relay.corrupted == 1
    assert lines(done, "OTA")[0]["outcome"] == "refused", done.stdout
    assert "replenish/queue.mpy does not match its digest" in done.stdout
    assert _update(backend, release, device.device_id) == fleet.REFUSED
    identity["coap_port"] = backend.coap_port
    (device.bundle_dir / "identity.json").write_text(json.dumps(identity))
    after = run_device(device.bundle_dir, ["press"])
    assert "/ota/" not in after.stdout and "LED ordered" in after.stdout


def test_forged_manifest_is_refused(backend, fleet1, v2_files):
    """Signed by another key (a compromised server or a man in the middle)."""
    device = fleet1.devices[0]
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    forger = Ed25519PrivateKey.generate()
    manifest = releases.make_manifest("button", "6.6.6", 2, v2_files)
    release = publish(fleet1, v2_files, "6.6.6", build=2,
                      envelope=releases.sign_manifest(forger, manifest))
    done = _install(device.bundle_dir, release)
    assert lines(done, "OTA")[0]["outcome"] == "refused"
    assert "manifest signature does not verify" in done.stdout
    with backend.sessions() as session:
        stored = session.get(Release, release).manifest
    assert int(lines(done, "OTA")[0]["bytes"]) == len(stored)  # no module was downloaded
    assert _update(backend, release, device.device_id) == fleet.REFUSED
    after = run_device(device.bundle_dir, ["press"])
    assert "/ota/" not in after.stdout and "LED ordered" in after.stdout


def test_v3_crashing_at_boot_rolls_back_to_v2_and_pauses(backend, fleet1, v2_files,
                                                         v3_crashing_files):
    device = fleet1.devices[0]
    v2 = publish(fleet1, v2_files, "0.2.0", build=2)
    _install(device.bundle_dir, v2)
    run_device(device.bundle_dir, [])  # v2's first boot checks in: confirmed
    assert _update(backend, v2, device.device_id) == fleet.INSTALLED

    v3 = publish(fleet1, v3_crashing_files, "0.3.0", build=3, max_failures=1)
    done = _install(device.bundle_dir, v3)
    assert lines(done, "OTA")[0]["outcome"] == "installed"
    crashes = 0
    for _boot in range(10):  # bounded: otaboot.MAX_TRIES crashing boots, then v2
        boot = run_device(device.bundle_dir, ["press"])
        if boot.returncode == 0:
            break
        assert "v3 bug: crashes at boot" in boot.stdout + boot.stderr
        crashes += 1
    assert crashes == 3
    assert "/ota/b2/replenish" in boot.stdout  # v2 again
    assert lines(boot, "STATUS")[0]["fw"] == "0.2.0"
    assert "LED ordered" in boot.stdout
    assert _update(backend, v3, device.device_id) == fleet.ROLLED_BACK
    with backend.sessions() as session:
        paused = session.get(Release, v3)
        assert paused.state == "paused" and "1 device(s)" in paused.paused_reason
    assert _device(backend, device.device_id).fw_version == "0.2.0"


def test_interrupted_download_resumes(backend, fleet1, v2_files):
    device = fleet1.devices[0]
    release = publish(fleet1, v2_files, "0.2.0", build=2)
    import os

    from devtools.mpy import micropython_binary
    from tests.fleet_helpers import FAST_ACK_MS

    # Power cut: the process is killed once three files are staged.
    proc = subprocess.Popen(
        [str(micropython_binary()), str(FIRMWARE / "main_unix.py"), str(device.bundle_dir)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "REPLENISH_ACK_TIMEOUT_MS": str(FAST_ACK_MS)})
    proc.stdin.write("status\n")
    proc.stdin.flush()
    staged = 0
    for line in proc.stdout:  # bounded by the release's file count
        if line.startswith("# OTA file "):
            staged += 1
            if staged == 3:
                proc.kill()
                break
    proc.wait(30)
    proc.stdout.close()
    proc.stderr.close()
    proc.stdin.close()
    assert staged == 3
    assert not (device.bundle_dir / "ota" / "boot.json").exists()  # v1 still boots

    middle = run_device(device.bundle_dir, ["press"])
    assert "/ota/" not in middle.stdout and "LED ordered" in middle.stdout

    # Make two staged files partial, as a cut mid-file leaves them: one ends on a block
    # boundary (continued from there), one does not (fetched again from the start).
    stage = device.bundle_dir / "ota" / "stage"
    # The kill can land while a fourth file is being fetched: its .part would be resumed
    # too and the byte count below would be off by it. Only the two planted parts stay.
    for stray in stage.rglob("*.part"):
        stray.unlink()
    complete = sorted(p.relative_to(stage).as_posix() for p in stage.rglob("*.mpy"))
    big = [rel for rel in complete if len(v2_files[rel]) > 2048][:1]
    big += [rel for rel in complete if 1100 < len(v2_files[rel]) <= 2048][:1]
    assert len(complete) >= 3 and len(big) == 2, complete
    (stage / (big[0] + ".part")).write_bytes(v2_files[big[0]][:2048])
    (stage / (big[1] + ".part")).write_bytes(v2_files[big[1]][:1100])
    for rel in big:
        (stage / rel).unlink()
    kept = [rel for rel in complete if rel not in big]
    with backend.sessions() as session:
        manifest_bytes = len(session.get(Release, release).manifest)

    done = _install(device.bundle_dir, release)
    ota = lines(done, "OTA")[0]
    assert ota["outcome"] == "installed" and int(ota["kept"]) == len(kept)
    fetched = sum(len(data) for rel, data in v2_files.items() if rel not in kept) - 2048
    assert int(ota["bytes"]) == manifest_bytes + fetched
    assert "REBOOT" in done.stdout
    assert (device.bundle_dir / "ota" / "b2" / big[0]).read_bytes() == v2_files[big[0]]


def test_no_update_below_a_safe_battery(backend, fleet1, v2_files):
    device = fleet1.devices[0]
    release = publish(fleet1, v2_files, "0.2.0", build=2, min_battery_mv=2600)
    low = run_device(device.bundle_dir, ["status"], env={"REPLENISH_BATTERY_MV": "2450"})
    assert lines(low, "STATUS")[0]["update"] == "none" and "OTA" not in low.stdout
    ok = run_device(device.bundle_dir, ["status"], env={"REPLENISH_BATTERY_MV": "2900"})
    assert lines(ok, "STATUS")[0]["update"] == str(release)
    assert lines(ok, "OTA")[0]["outcome"] == "installed"
