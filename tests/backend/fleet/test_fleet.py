"""Fleet status and staged rollouts: real unix-port devices against the real backend
(SQLite and PostgreSQL), the rollout share over a simulated fleet, the release CLI."""

from __future__ import annotations

import hashlib
import random
import re
import secrets
from types import SimpleNamespace

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select

from backend.fleet import offers as fleet
from backend.fleet import releases
from backend.orders.worker import OrderWorker
from backend.storage.models import Device, DeviceStatus, DeviceUpdate, Notification, Release
from devtools.mpy import FIRMWARE
from provisioning import releases as release_signing
from tests.backend.test_cli import REPLENISH, Cli
from tests.fleet_helpers import lines, make_fleet, publish, run_device

# Two tiny modules are enough for offers and targeting (installing is test_ota's job).
TINY = {"replenish/__init__.mpy": b"M\x06", "hw/__init__.mpy": b"M\x06"}


def _statuses(backend, device_id):
    with backend.sessions() as session:
        return session.scalars(select(DeviceStatus).join(
            Device, Device.id == DeviceStatus.device_pk).where(
            Device.device_id == device_id).order_by(DeviceStatus.id)).all()


def _notes(backend, kind):
    with backend.sessions() as session:
        return session.scalars(select(Notification).where(Notification.kind == kind)).all()


def test_heartbeats_keep_history_and_notify_once(backend, tmp_path):
    made = make_fleet(backend, tmp_path / "bundles", count=1)
    device = made.devices[0]
    env = {"REPLENISH_BATTERY_MV": "2210", "REPLENISH_RSSI_DBM": "-71"}
    done = run_device(device.bundle_dir, ["status", "press", "status"], env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    beats = lines(done, "STATUS")
    assert [b["result"] for b in beats] == ["68", "68"] and beats[1]["wakes"] == "2"

    history = _statuses(backend, device.device_id)
    assert [(s.battery_mv, s.rssi_dbm, s.fw_version, s.queued, s.dropped) for s in history] \
        == [(2210, -71, "0.1.0", 0, 0)] * 2
    assert [s.wakes for s in history] == [1, 2]  # the boot, then the press
    assert len(_notes(backend, "low_battery")) == 1  # not one per heartbeat

    # Silence past the configured limit: one offline notification, not one per round.
    engine = OrderWorker(backend.writer_sessions, backend.settings.with_(offline_after_s=0))
    assert engine.check_offline() == 1
    assert engine.check_offline() == 0
    assert len(_notes(backend, "device_offline")) == 1
    run_device(device.bundle_dir, ["status"], env=env)  # back: the next silence counts
    assert engine.check_offline() == 1
    with backend.sessions() as session:
        row = session.scalars(select(Device).where(Device.device_id == device.device_id)).one()
        assert row.last_seen_at is not None and row.battery_mv == 2210
        [shown] = fleet.device_rows(session, made.batch, offline_after_s=3600)
    assert (shown["fw"], shown["battery_mv"], shown["rssi_dbm"], shown["queued"],
            shown["wakes"], shown["offline"]) == ("0.1.0", 2210, -71, 0, 3, False)


def test_heartbeat_interval_comes_from_the_board_profile(backend, tmp_path):
    made = make_fleet(backend, tmp_path / "bundles", count=1)
    bundle = made.devices[0].bundle_dir
    (bundle / "board.json").write_text('{"model": "button", "status_interval_s": 3600}')
    done = run_device(bundle, ["heartbeat 1000", "heartbeat 4000", "heartbeat 4600",
                               "heartbeat 5000"])
    sent = [b["result"] for b in lines(done, "STATUS")]
    assert sent == ["68", "none", "68", "none"], done.stdout  # at 1000 and 4600 only
    assert len(_statuses(backend, made.devices[0].device_id)) == 2


def test_rollout_share_over_a_simulated_fleet():
    """The targeting the backend uses, over 20,000 device ids: the share asked for,
    stable per device, and raising the percentage only adds devices."""
    ids = [secrets.token_hex(8) for _ in range(20_000)]
    release = SimpleNamespace(id=7, model="button", batch_id=None, percent=25)

    def chosen(percent):
        release.percent = percent
        return {i for i in ids if fleet.targets(release, SimpleNamespace(
            model="button", batch_id=3, device_id=i))}

    quarter, tenth, half = chosen(25), chosen(10), chosen(50)
    assert abs(len(quarter) / len(ids) - 0.25) < 0.015  # 5 standard deviations
    assert abs(len(tenth) / len(ids) - 0.10) < 0.012
    assert tenth <= quarter <= half
    assert chosen(25) == quarter and chosen(0) == set() and len(chosen(100)) == len(ids)
    other = SimpleNamespace(id=8, model="button", batch_id=None, percent=25)
    assert {i for i in ids if fleet.targets(other, SimpleNamespace(
        model="button", batch_id=3, device_id=i))} != quarter  # salted per release


def independent_bucket(release_id: int, device_id: str) -> int:
    """The rollout bucket as docs/fleet.md states it, written here from the spec and not
    taken from backend.fleet: SHA-256 of "replenish-rollout:<release>:<device id>", its
    first 8 bytes big-endian, modulo 10,000; a device is in at percent p when its bucket
    is below 100 p."""
    digest = hashlib.sha256(f"replenish-rollout:{release_id}:{device_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % 10_000


def seeded_ids(release_id: int, percent: int, inside: int, outside: int) -> list[bytes]:
    """Device ids from a seeded generator: `inside` in the rollout and `outside` not,
    by the independent computation (so the test never checks an empty or a full set)."""
    rng = random.Random(19)
    chosen_in, chosen_out = [], []
    while len(chosen_in) < inside or len(chosen_out) < outside:
        candidate = rng.randbytes(8)
        into = independent_bucket(release_id, candidate.hex()) < percent * 100
        group, wanted = (chosen_in, inside) if into else (chosen_out, outside)
        if len(group) < wanted:
            group.append(candidate)
    return chosen_in + chosen_out


def test_staged_rollout_offers_exactly_the_targeted_devices(backend, tmp_path, monkeypatch):
    """At 50 %, three seeded device ids inside the rollout and three outside it: exactly
    the three inside are offered the release."""
    from provisioning import batch as batch_module

    key = Ed25519PrivateKey.generate()
    with backend.writer_sessions() as session, session.begin():
        # The backend offers from 2400 mV; the devices, at 2500 mV, start no download
        # below their own safe level (ota.MIN_BATTERY_MV): offers are seen, none installs.
        release_id = release_signing.publish(session, key, model="button", version="0.2.0",
                                             files=TINY, build=2, percent=50,
                                             min_battery_mv=2400).id
    ids = seeded_ids(release_id, 50, inside=3, outside=3)
    expected = {i.hex() for i in ids[:3]}
    queue = list(ids)
    monkeypatch.setattr(batch_module, "secrets", SimpleNamespace(
        token_hex=secrets.token_hex,
        token_bytes=lambda n: queue.pop(0) if n == 8 else secrets.token_bytes(n)))
    made = make_fleet(backend, tmp_path / "bundles", count=6, key=key)
    assert {d.device_id for d in made.devices} == {i.hex() for i in ids}
    offered = set()
    for device in made.devices:
        done = run_device(device.bundle_dir, ["status"], env={"REPLENISH_BATTERY_MV": "2500"})
        update = lines(done, "STATUS")[0]["update"]
        if update != "none":
            assert update == str(release_id)
            assert lines(done, "OTA")[0]["outcome"] == "skipped"
            assert "battery 2500 mV below 2600 mV" in done.stdout
            offered.add(device.device_id)
    assert offered == expected
    with backend.sessions() as session:
        assert session.scalars(select(DeviceUpdate.state).where(
            DeviceUpdate.release_id == release_id)).all() == [fleet.OFFERED] * len(expected)


def test_paused_or_other_batch_release_is_not_offered(backend, tmp_path):
    made = make_fleet(backend, tmp_path / "a", count=1)
    other = make_fleet(backend, tmp_path / "b", count=1)
    for_other = publish(made, TINY, "0.2.0", build=2, batch=other.batch, min_battery_mv=2400)
    bundle = made.devices[0].bundle_dir
    low = {"REPLENISH_BATTERY_MV": "2500"}  # offered, never downloaded (see above)
    assert lines(run_device(bundle, ["status"], env=low), "STATUS")[0]["update"] == "none"
    assert lines(run_device(other.devices[0].bundle_dir, ["status"], env=low),
                 "STATUS")[0]["update"] == str(for_other)
    with backend.writer_sessions() as session, session.begin():
        releases.pause(session, for_other)
    assert lines(run_device(other.devices[0].bundle_dir, ["status"], env=low),
                 "STATUS")[0]["update"] == "none"


def test_release_cli_publish_pause_resume_status(tmp_path):
    assert REPLENISH.exists()
    cli = Cli(tmp_path / "data")
    cli("db", "upgrade")
    done = cli("release", "keygen", "--out", str(tmp_path / "release.pem"))
    public = done.stdout.split()[2]
    assert len(bytes.fromhex(public)) == 32 and "PRIVATE" not in done.stdout
    cli("provision", "batch", "--model", "button", "--count", "2", "--out",
        str(tmp_path / "out"), "--name", "b1", "--release-key", public)
    assert f'"release_key": "{public}"' in (tmp_path / "out" / "b1-00001" /
                                           "identity.json").read_text()
    done = cli("release", "publish", "--model", "button", "--version", "0.2.0",
               "--signing-key", str(tmp_path / "release.pem"), "--batch", "b1",
               "--percent", "20", "--firmware-dir", str(FIRMWARE))
    assert done.stdout.startswith("release 1: button 0.2.0 build 1, ")
    assert "to 20% of batch b1" in done.stdout
    assert "paused" in cli("release", "pause", "1").stdout
    assert "paused: paused by an operator" in cli("release", "status", "1").stdout
    assert "active, 60%" in cli("release", "resume", "1", "--percent", "60").stdout
    status = cli("release", "status", "1").stdout
    assert "active, 60% of batch" in status and "failures 0/3" in status
    assert cli("fleet", "status").stdout.startswith(
        "2 devices; firmware unknown x2; offline 0; low battery 0")
    assert "b1-00002" in cli("fleet", "status", "--batch", "b1", "--devices").stdout
    refused = cli("release", "publish", "--model", "button", "--version", "x",
                  "--signing-key", str(tmp_path / "release.pem"), "--build", "1", ok=False)
    assert refused.returncode == 1 and "build 1 exists already" in refused.stderr


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_stored_manifest_verifies_under_the_public_key(backend, tmp_path):
    made = make_fleet(backend, tmp_path / "bundles", count=1)
    release_id = publish(made, TINY, "0.2.0", build=2)
    with backend.sessions() as session:
        envelope = session.get(Release, release_id).manifest
    manifest = release_signing.verify_envelope(bytes.fromhex(release_signing.public_key_hex(made.key)),
                                        envelope)
    assert manifest[1] == "button" and manifest[3] == 2
    assert [entry[0] for entry in manifest[4]] == sorted(TINY)


def test_no_offer_of_a_build_older_than_the_installed_one(backend, tmp_path):
    """A device that installed build 3 before its rollout was paused is not offered
    build 2 (it would refuse it, and the refusal would count against build 2)."""
    made = make_fleet(backend, tmp_path / "bundles", count=1)
    v2 = publish(made, TINY, "0.2.0", build=2)
    v3 = publish(made, TINY, "0.3.0", build=3)
    with backend.writer_sessions() as session, session.begin():
        device = session.scalars(select(Device).where(
            Device.device_id == made.devices[0].device_id)).one()
        assert fleet.offer(session, device, "0.1.0", None) == v3
        session.scalars(select(DeviceUpdate).where(  # as if it reported "installed"
            DeviceUpdate.release_id == v3)).one().state = fleet.INSTALLED
        releases.pause(session, v3)
        assert fleet.offer(session, device, "0.3.0", None) is None
        releases.resume(session, v3)
        assert fleet.offer(session, device, "0.3.0", None) is None  # runs it already
        assert v2 < v3


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_libcoap_downloads_a_module_block_by_block(backend, tmp_path):
    """An independent CoAP stack (libcoap's coap-client) fetches /fw with Block2 in
    small blocks: the bytes are the stored module; a wrong token gets 4.01."""
    from backend.coap.firmware import fetch_token
    from tests.system.test_coap_interop import identity, response_code, run_client

    made = make_fleet(backend, tmp_path / "bundles", count=1)
    module = bytes(range(256)) * 11  # 2,816 bytes: 11 blocks of 256
    release_id = publish(made, {"replenish/big.mpy": module, **TINY}, "0.2.0", build=2)
    key, kid = identity(made.devices[0])
    base = f"coap://127.0.0.1:{backend.coap_port}/fw/{release_id}/replenish/big.mpy"
    uri = f"{base}?d={kid.hex()}&t={fetch_token(key, release_id)}"
    out = tmp_path / "big.mpy"
    run_client("-m", "get", "-b", "256", "-o", str(out), uri)
    assert out.read_bytes() == module
    trace = run_client("-m", "get", "-b", "256", "-v", "7", uri)  # (-v 7 writes no -o file)
    blocks = re.findall(rb"c:2\.05 .*Block2:(\d+)/([M_])/256", trace.stdout + trace.stderr)
    seen = {int(n): more for n, more in blocks}  # libcoap may log a block twice
    assert seen == {**{n: b"M" for n in range(10)}, 10: b"_"}
    bad = run_client("-m", "get", "-v", "7", f"{base}?d={kid.hex()}&t={'0' * 32}")
    assert response_code(bad.stdout + bad.stderr) == "4.01"
