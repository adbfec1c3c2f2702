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
from backend.accounts.keys import (
    Keyring,
    create_kek_file,
    kek_id,
    load_keyring,
    previous_kek_path,
    read_kek_file,
)
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


def assert_every_key_matches_its_identity(backend, bundles: list[Path], kek: bytes) -> None:
    """Every stored key, unwrapped with `kek` alone, is the key in its identity file."""
    stored = wrapped_keys(backend)
    keyring = Keyring(kek)
    assert len(stored) == len(bundles)
    wrong = []
    for bundle in bundles:
        key, kid = identity_of(bundle)
        if keyring.unwrap(kid.hex(), stored[kid.hex()]) != key:
            wrong.append(kid.hex())
    assert wrong == [], f"{len(wrong)} of {len(bundles)} keys differ from their identity file"


class Sender:
    """Events from the world's buttons in a thread, until stopped. Each answer is
    recorded with whether <kek>.previous existed from before the send until after the
    answer (the answer arrived while the rotation was under way); every exception is
    collected, never lost with the thread."""

    def __init__(self, world, kek_file: Path):
        self.world, self.previous = world, previous_kek_path(kek_file)
        self.results: list[Result] = []
        self.during = 0
        self.errors: list[str] = []
        self.seqs = {b.serial: 0 for b in world.buttons}
        self.stop = threading.Event()
        self.answered = threading.Condition()
        self._thread = threading.Thread(target=self._loop)

    def send_all(self) -> None:
        for button in self.world.buttons:
            self.seqs[button.serial] += 1
            before = self.previous.exists()
            result = send(self.world, button.bundle_dir, self.seqs[button.serial])
            with self.answered:
                self.results.append(result)
                self.during += before and self.previous.exists()
                self.answered.notify_all()

    def _loop(self) -> None:
        try:
            for _ in range(2000):  # bounded; ends when the rotation has finished
                if self.stop.is_set():
                    return
                self.send_all()
        except Exception as err:  # noqa: BLE001 - reported by the test
            self.errors.append(repr(err))

    def wait_for_answers(self, count: int) -> None:
        """Until `count` more answers arrived (bounded: 60 s)."""
        with self.answered:
            target = len(self.results) + count
            assert self.answered.wait_for(
                lambda: len(self.results) >= target or self.errors, 60), "no answers"

    def __enter__(self) -> Sender:
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self._thread.join(60)
        assert not self._thread.is_alive()


def _world_with_filler(backend, tmp_path, count: int):
    from provisioning.batch import provision_batch

    world = make_world(backend, tmp_path / "bundles", buttons=2)
    with backend.writer_sessions() as session, session.begin():
        filler = provision_batch(session, backend.keyring, model="button", count=count,
                                 out=tmp_path / "more", coap_host="127.0.0.1", coap_port=1,
                                 name="filler", labels=False)
    bundles = [b.bundle_dir for b in world.buttons] + [world.unclaimed.bundle_dir] + [
        d.bundle_dir for d in filler]
    return world, bundles


@pytest.mark.parametrize("db_url", DATABASES, indirect=True)
def test_kek_rotation_while_events_are_ingested(settings, tmp_path):
    """`replenish provision rotate-kek` while two buttons send: every one of the 303 keys
    then unwraps under the new KEK alone to the key in its identity file."""
    kek_file = tmp_path / "keys" / "kek.key"
    create_kek_file(kek_file)
    old_kek = read_kek_file(kek_file)
    file_settings = settings.with_(kek_hex="", kek_file=kek_file)
    with BackendThread(file_settings) as backend:
        # Enough extra devices that the re-wrap spans many small transactions.
        world, bundles = _world_with_filler(backend, tmp_path, 300)
        assert {Keyring.kek_id_of(w) for w in wrapped_keys(backend).values()} == {kek_id(old_kek)}
        with Sender(world, kek_file) as sender:
            sender.wait_for_answers(2)
            done = replenish(file_settings, "provision", "rotate-kek")
        assert sender.errors == []
        assert "303 device keys re-wrapped" in done.stdout
        new_kek = read_kek_file(kek_file)
        assert new_kek != old_kek
        assert not previous_kek_path(kek_file).exists(), "the old KEK is retired at the end"
        assert {Keyring.kek_id_of(w) for w in wrapped_keys(backend).values()} == {kek_id(new_kek)}
        assert_every_key_matches_its_identity(backend, bundles, new_kek)
        # The running backend never restarted: it follows the rotation by itself.
        sender.send_all()
    assert sender.results and set(sender.results) == {Result.CHANGED}, set(sender.results)
    for secret in (old_kek.hex(), new_kek.hex()):
        assert secret not in done.stdout + done.stderr


class _RotatingWhileRewrapping:
    """The keyring rewrap_all uses, running `action` just before it re-wraps
    `device_id` (inside the re-wrap's transaction, after the row was read)."""

    def __init__(self, keyring: Keyring, device_id: str, action):
        self._keyring, self._device_id, self._action = keyring, device_id, action
        self.rotated = False

    def needs_rewrap(self, wrapped: bytes) -> bool:
        return self._keyring.needs_rewrap(wrapped)

    def rewrap(self, device_id: str, wrapped: bytes) -> bytes:
        if device_id == self._device_id and not self.rotated:
            self._action()
            self.rotated = True
        return self._keyring.rewrap(device_id, wrapped)


@pytest.mark.parametrize("db_url", DATABASES, indirect=True)
def test_kek_rotation_step_by_step_with_answers_and_a_key_rotation_in_between(settings,
                                                                               tmp_path):
    """The rotation's own steps (as rotate-kek runs them), with events answered between
    every re-wrap transaction while <kek>.previous exists, and one device's own key
    rotated (rotate-key) during the re-wrap: the re-wrap must not overwrite it.
    On PostgreSQL the rotate-key commits inside the re-wrap's transaction, after that
    row was read and before it is written (rows are not locked when read); SQLite's
    re-wrap holds the write lock, so there it runs between two transactions.
    Afterwards every key unwraps under the new KEK alone to its identity file's key."""
    from provisioning import kek_rotation as rot

    kek_file = tmp_path / "keys" / "kek.key"
    create_kek_file(kek_file)
    file_settings = settings.with_(kek_hex="", kek_file=kek_file)
    with BackendThread(file_settings) as backend:
        world, bundles = _world_with_filler(backend, tmp_path, 250)
        late = bundles[-1]  # re-wrapped in the last transaction
        with Sender(world, kek_file) as sender:
            sender.wait_for_answers(1)
            assert rot.begin_file_rotation(kek_file)
            new_kek = read_kek_file(kek_file)
            sender.wait_for_answers(2)
            keyring = load_keyring(file_settings)
            transactions = []
            late_id = identity_of(late)[1].hex()

            def rotate_late_key():
                replenish(file_settings, "provision", "rotate-key", late_id,
                          "--bundle-dir", str(late))

            def between(rows):
                transactions.append(rows)
                if len(transactions) == 1 and not postgres:
                    rotate_late_key()
                sender.wait_for_answers(2)

            postgres = settings.db_url.startswith("postgresql")
            rewrapping = _RotatingWhileRewrapping(keyring, late_id, rotate_late_key) \
                if postgres else keyring
            done = rot.rewrap_all(settings.db_url, rewrapping, progress=between,
                                  rows_per_transaction=100)
            assert not postgres or rewrapping.rotated
            assert rot.finish_file_rotation(settings.db_url, keyring, kek_file)
            sender.wait_for_answers(2)
        assert sender.errors == []
        assert_every_key_matches_its_identity(backend, bundles, new_kek)
        # PostgreSQL: the row rotated under the re-wrap was skipped, so a second pass ran
        assert transactions == [100, 100, 53] * (2 if postgres else 1)
        assert done == 253 - 1, "the key rotated meanwhile was written under the new KEK"
        assert sender.during >= 2 * len(transactions)
        assert send(world, late, 1) == Result.FORBIDDEN, "the late one is unclaimed, but its new key verifies"
    assert set(sender.results) == {Result.CHANGED}, set(sender.results)


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
