"""KEK rotation while events are ingested, device key rotation and revocation."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from sqlalchemy import select

from backend import protocol
from backend.accounts.keys import Keyring, create_kek_file, kek_id, previous_kek_path, read_kek_file
from backend.protocol import Kind, Result, WireEvent
from backend.storage.models import Device
from devtools.net import coap_post
from tests.conftest import DATABASES, BackendThread, make_world

ROOT = Path(__file__).resolve().parents[2]
REPLENISH = Path(sys.executable).with_name("replenish")


def replenish(settings, *args, ok=True, **env_extra):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("REPLENISH_") and k != "DATABASE_URL"}
    env.update(REPLENISH_DATA_DIR=str(settings.data_dir), DATABASE_URL=settings.db_url,
               PYTHONPATH=str(ROOT), **env_extra)
    if settings.kek_hex:
        env["REPLENISH_KEK"] = settings.kek_hex
    elif settings.kek_file:
        env["REPLENISH_KEK_FILE"] = str(settings.kek_file)
    done = subprocess.run([str(REPLENISH), *args], env=env, capture_output=True, text=True,
                          timeout=300)
    assert "Traceback" not in done.stderr, done.stderr
    if ok:
        assert done.returncode == 0, done
    return done


def identity_of(bundle_dir: Path):
    data = json.loads((bundle_dir / "identity.json").read_text())
    return bytes.fromhex(data["key"]), bytes.fromhex(data["device_id"])


def send(world, bundle_dir: Path, seq: int, kind=Kind.STATUS):
    key, kid = identity_of(bundle_dir)
    request = protocol.encode_event(key, kid, WireEvent(seq=seq, kind=kind, slot=0))
    response = coap_post(world.event_url, request)
    if int(response.code) == Result.UNAUTHORIZED:
        return Result.UNAUTHORIZED
    answer = protocol.decode_answer(key, protocol.parse_signed_event(request).tag,
                                    response.payload)
    return Result(answer.result)


def wrapped_keys(backend) -> dict[str, bytes]:
    with backend.sessions() as session:
        return dict(session.execute(select(Device.device_id, Device.wrapped_key)).all())


@pytest.mark.parametrize("db_url", DATABASES, indirect=True)
def test_kek_rotation_while_events_are_ingested(settings, tmp_path):
    kek_file = tmp_path / "keys" / "kek.key"
    create_kek_file(kek_file)
    old_kek = read_kek_file(kek_file)
    file_settings = settings.with_(kek_hex="", kek_file=kek_file)
    with BackendThread(file_settings) as backend:
        world = make_world(backend, tmp_path / "bundles", buttons=2)
        # Enough extra devices that the re-wrap spans many small transactions.
        from provisioning.batch import provision_batch
        with backend.writer_sessions() as session, session.begin():
            provision_batch(session, backend.keyring, model="button", count=300,
                            out=tmp_path / "more", coap_host="127.0.0.1", coap_port=1,
                            name="filler", labels=False)
        assert {Keyring.kek_id_of(w) for w in wrapped_keys(backend).values()} == {kek_id(old_kek)}

        results, seqs, stop = [], {b.serial: 0 for b in world.buttons}, threading.Event()

        def ingest_loop():
            for _ in range(2000):  # bounded; ends when the rotation has finished
                if stop.is_set():
                    return
                for button in world.buttons:
                    seqs[button.serial] += 1
                    results.append(send(world, button.bundle_dir, seqs[button.serial]))

        sender = threading.Thread(target=ingest_loop)
        sender.start()
        try:
            done = replenish(file_settings, "provision", "rotate-kek")
        finally:
            stop.set()
            sender.join(60)
        assert "303 device keys re-wrapped" in done.stdout
        new_kek = read_kek_file(kek_file)
        assert new_kek != old_kek
        assert not previous_kek_path(kek_file).exists(), "the old KEK is retired at the end"
        assert {Keyring.kek_id_of(w) for w in wrapped_keys(backend).values()} == {kek_id(new_kek)}
        # The running backend never restarted: it follows the rotation by itself.
        for button in world.buttons:
            seqs[button.serial] += 1
            results.append(send(world, button.bundle_dir, seqs[button.serial]))
    assert results and set(results) == {Result.CHANGED}, set(results)
    for secret in (old_kek.hex(), new_kek.hex()):
        assert secret not in done.stdout + done.stderr


def test_an_interrupted_kek_rotation_resumes_without_a_new_kek(settings, tmp_path):
    kek_file = tmp_path / "keys" / "kek.key"
    create_kek_file(kek_file)
    file_settings = settings.with_(kek_hex="", kek_file=kek_file)
    from provisioning import kek_rotation
    with BackendThread(file_settings) as backend:
        make_world(backend, tmp_path / "bundles", buttons=1)
    assert kek_rotation.begin_file_rotation(kek_file)  # ... and then the process died
    new_kek = read_kek_file(kek_file)
    done = replenish(file_settings, "provision", "rotate-kek")
    assert "resuming" in done.stderr
    assert read_kek_file(kek_file) == new_kek
    assert not previous_kek_path(kek_file).exists()


def test_kek_in_the_environment_needs_the_previous_one_to_rotate(settings, backend, tmp_path):
    world = make_world(backend, tmp_path / "bundles", buttons=1)
    done = replenish(settings, "provision", "rotate-kek", ok=False)
    assert done.returncode == 1 and "REPLENISH_KEK_PREVIOUS" in done.stderr
    new = os.urandom(32).hex()
    rotated = settings.with_(kek_hex=new)
    replenish(rotated, "provision", "rotate-kek", REPLENISH_KEK_PREVIOUS=settings.kek_hex)
    keyring = Keyring(bytes.fromhex(new))
    key, _ = identity_of(world.buttons[0].bundle_dir)
    assert keyring.unwrap(world.buttons[0].device_id,
                          wrapped_keys(backend)[world.buttons[0].device_id]) == key


def test_revoked_device_is_refused_at_once(world, backend):
    button = world.buttons[0]
    assert send(world, button.bundle_dir, 1, Kind.PRESS) == Result.CREATED
    done = replenish(world.settings, "provision", "revoke", button.serial)
    assert f"device {button.device_id} revoked" in done.stdout
    assert send(world, button.bundle_dir, 2, Kind.PRESS) == Result.FORBIDDEN
    again = replenish(world.settings, "provision", "revoke", button.device_id)
    assert "already revoked" in again.stdout
    missing = replenish(world.settings, "provision", "revoke", "nope", ok=False)
    assert missing.returncode == 1 and "no device" in missing.stderr
    with backend.sessions() as session:
        row = session.scalars(select(Device).where(Device.device_id == button.device_id)).one()
        assert row.status == "revoked" and row.revoked_at is not None


def test_a_revoked_device_comes_back_only_under_a_new_key(world, backend, tmp_path):
    """The documented way back from a revocation: reinstate gives a new key (the old
    identity, maybe leaked, stays refused) and the device continues its sequence."""
    button = world.buttons[0]
    old_copy = tmp_path / "old"
    old_copy.mkdir()
    (old_copy / "identity.json").write_text((button.bundle_dir / "identity.json").read_text())
    assert send(world, button.bundle_dir, 1, Kind.PRESS) == Result.CREATED
    active = replenish(world.settings, "provision", "reinstate", button.device_id,
                       "--bundle-dir", str(button.bundle_dir), ok=False)
    assert active.returncode == 1 and "is not revoked" in active.stderr
    replenish(world.settings, "provision", "revoke", button.serial, "--reason", "lost")
    with backend.sessions() as session:
        assert session.scalars(select(Device.revoked_reason).where(
            Device.device_id == button.device_id)).one() == "lost"
    assert send(world, button.bundle_dir, 2) == Result.FORBIDDEN
    replenish(world.settings, "provision", "reinstate", button.serial,
              "--bundle-dir", str(button.bundle_dir))
    assert send(world, old_copy, 3) == Result.UNAUTHORIZED
    assert send(world, button.bundle_dir, 3) == Result.CHANGED
    with backend.sessions() as session:
        row = session.scalars(select(Device).where(Device.device_id == button.device_id)).one()
        assert (row.status, row.revoked_at, row.revoked_reason) == ("active", None, None)


def test_rotated_key_old_identity_refused_new_one_continues_the_sequence(world, backend,
                                                                          tmp_path):
    button = world.buttons[0]
    old_copy = tmp_path / "old"
    old_copy.mkdir()
    (old_copy / "identity.json").write_text((button.bundle_dir / "identity.json").read_text())
    assert send(world, button.bundle_dir, 5) == Result.CHANGED
    before = json.loads((button.bundle_dir / "identity.json").read_text())
    done = replenish(world.settings, "provision", "rotate-key", button.device_id,
                     "--bundle-dir", str(button.bundle_dir))
    after = json.loads((button.bundle_dir / "identity.json").read_text())
    assert after["key"] != before["key"] and after["key"] not in done.stdout + done.stderr
    assert {k: v for k, v in after.items() if k != "key"} == \
        {k: v for k, v in before.items() if k != "key"}
    assert send(world, old_copy, 6) == Result.UNAUTHORIZED
    assert send(world, button.bundle_dir, 6) == Result.CHANGED, "last_seq is kept: 6 > 5"
    assert send(world, button.bundle_dir, 5) == Result.CONFLICT, "no sequence number repeats"
    wrong = replenish(world.settings, "provision", "rotate-key", world.buttons[1].device_id,
                      "--bundle-dir", str(button.bundle_dir), ok=False)
    assert wrong.returncode == 1 and "holds device" in wrong.stderr
    assert json.loads((button.bundle_dir / "identity.json").read_text()) == after
