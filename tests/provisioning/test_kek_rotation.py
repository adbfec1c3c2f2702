"""The KEK rotation's steps one by one on a SQLite database, no server: the files each
step leaves, the re-wrap's transactions, its retry of rows changed meanwhile, and the
refusals (provisioning/kek_rotation.py). The rotation under live traffic is in
test_keys.py; this is the fast selection `make mutate` runs for the module."""

from __future__ import annotations

import logging
import re
import secrets
import sqlite3
import stat

import pytest
from sqlalchemy import event, select

from backend.accounts.keys import Keyring, kek_id, read_kek_file
from backend.errors import ConfigError
from backend.storage import db
from backend.storage.models import Device
from provisioning import kek_rotation as rot
from tests import migrated


def kek_file(tmp_path, kek: bytes):
    path = tmp_path / "kek.key"
    path.write_text(kek.hex() + "\n")
    path.chmod(0o600)
    return path


def mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_begin_installs_a_new_kek_and_keeps_the_old_one(tmp_path, caplog):
    old = secrets.token_bytes(32)
    path = kek_file(tmp_path, old)
    (tmp_path / "kek.key.next").write_text("left over from a crash\n")
    assert rot.begin_file_rotation(path) is True
    new = read_kek_file(path)
    assert new != old and len(new) == 32
    assert re.fullmatch(r"[0-9a-f]{64}\n", path.read_text())
    assert (tmp_path / "kek.key.previous").read_text() == old.hex() + "\n"
    assert mode(path) == mode(tmp_path / "kek.key.previous") == 0o600
    assert not (tmp_path / "kek.key.next").exists()
    # under way: a second begin changes nothing and says so
    with caplog.at_level(logging.WARNING, logger="provisioning.kek_rotation"):
        assert rot.begin_file_rotation(path) is False
    assert "resuming the rotation already under way" in caplog.text
    assert read_kek_file(path) == new
    assert (tmp_path / "kek.key.previous").read_text() == old.hex() + "\n"


def test_begin_refuses_without_a_kek_or_with_one_others_can_read(tmp_path):
    with pytest.raises(ConfigError, match="no key-encryption key at .*nothing to rotate"):
        rot.begin_file_rotation(tmp_path / "kek.key")
    path = kek_file(tmp_path, secrets.token_bytes(32))
    path.chmod(0o640)
    with pytest.raises(ConfigError, match="owner only"):
        rot.begin_file_rotation(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kek.key"]


@pytest.fixture
def url(tmp_path) -> str:
    url = f"sqlite:///{tmp_path / 'db' / 'replenish.db'}"
    migrated.migrate(url)
    return url


def add_devices(url: str, wrapped: dict[str, bytes]) -> None:
    engine = db.make_engine(url)
    try:
        with db.make_sessionmaker(engine)() as session, session.begin():
            for n, (device_id, key) in enumerate(wrapped.items()):
                session.add(Device(device_id=device_id, serial=f"s{n}", model="button",
                                   wrapped_key=key, claim_code_sha256=f"{n:064x}"))
    finally:
        engine.dispose()


def stored(url: str) -> dict[str, bytes]:
    engine = db.make_engine(url)
    try:
        with db.make_sessionmaker(engine)() as session:
            return dict(session.execute(select(Device.device_id, Device.wrapped_key)).all())
    finally:
        engine.dispose()


def device_ids(n: int) -> list[str]:
    return [f"{i:016x}" for i in range(1, n + 1)]


def test_rewrap_all_rewraps_what_is_not_under_the_current_kek(url):
    old, new = secrets.token_bytes(32), secrets.token_bytes(32)
    keys = {d: secrets.token_bytes(32) for d in device_ids(7)}
    wrapped = {d: Keyring(old).wrap(d, k) for d, k in keys.items()}
    already = device_ids(7)[3]
    wrapped[already] = Keyring(new).wrap(already, keys[already])
    add_devices(url, wrapped)
    keyring = Keyring(new, previous=old)
    assert rot.device_count(url) == 7
    assert rot.count_needing_rewrap(url, keyring) == 6
    batches = []
    assert rot.rewrap_all(url, keyring, progress=batches.append, rows_per_transaction=3) == 6
    assert batches == [3, 3, 1]
    after = stored(url)
    assert after[already] == wrapped[already], "a key already under the new KEK is left alone"
    for device_id, key in keys.items():
        assert Keyring(new).unwrap(device_id, after[device_id]) == key
    assert rot.count_needing_rewrap(url, keyring) == 0
    assert rot.rewrap_all(url, keyring) == 0


def test_rewrap_all_takes_a_hundred_rows_per_transaction(url):
    old, new = secrets.token_bytes(32), secrets.token_bytes(32)
    add_devices(url, {d: Keyring(old).wrap(d, bytes(32)) for d in device_ids(101)})
    batches = []
    assert rot.rewrap_all(url, Keyring(new, previous=old), progress=batches.append) == 101
    assert batches == [100, 1]


def test_an_empty_database_has_nothing_to_rewrap(url):
    keyring = Keyring(secrets.token_bytes(32))
    assert rot.device_count(url) == 0
    assert rot.count_needing_rewrap(url, keyring) == 0
    assert rot.rewrap_all(url, keyring, progress=pytest.fail) == 0


def before_each_statement(monkeypatch, hook) -> None:
    """`hook(cursor, statement, parameters)` before every statement the rotation's own
    engines run (db.make_engine wrapped)."""
    real = db.make_engine

    def make_engine(url):
        engine = real(url)
        event.listen(engine, "before_cursor_execute",
                     lambda conn, cursor, statement, parameters, context, many:
                     hook(cursor, statement, parameters))
        return engine

    monkeypatch.setattr(db, "make_engine", make_engine)


def rotate_key_during_the_update(monkeypatch, pk: int, wrapped_again, times: int) -> list:
    """Just before the re-wrap's UPDATE of row `pk`, its key changes (a device key
    rotation commits in between), at most `times` times; returns the list of changes."""
    changes = []

    def rotate(cursor, statement, parameters):
        if statement.startswith("UPDATE devices") and len(changes) < times and parameters[1] == pk:
            changes.append(1)
            cursor.connection.execute("UPDATE devices SET wrapped_key = ? WHERE id = ?",
                                      (wrapped_again(), pk))

    before_each_statement(monkeypatch, rotate)
    return changes


def test_a_key_rotated_during_the_rewrap_is_rewrapped_by_the_next_pass(url, monkeypatch):
    old, new = secrets.token_bytes(32), secrets.token_bytes(32)
    keys = {d: secrets.token_bytes(32) for d in device_ids(3)}
    add_devices(url, {d: Keyring(old).wrap(d, k) for d, k in keys.items()})
    rotated = secrets.token_bytes(32)
    target = device_ids(3)[1]
    changes = rotate_key_during_the_update(  # rows are numbered in insertion order
        monkeypatch, 2, lambda: Keyring(old).wrap(target, rotated), times=1)
    assert rot.rewrap_all(url, Keyring(new, previous=old)) == 3
    assert changes == [1]
    after = stored(url)
    assert Keyring(new).unwrap(target, after[target]) == rotated, "the rotated key, not the old"
    for device_id in (device_ids(3)[0], device_ids(3)[2]):
        assert Keyring(new).unwrap(device_id, after[device_id]) == keys[device_id]


def test_a_key_that_keeps_changing_stops_the_rewrap_after_five_passes(url, monkeypatch):
    old, new = secrets.token_bytes(32), secrets.token_bytes(32)
    target = device_ids(1)[0]
    add_devices(url, {target: Keyring(old).wrap(target, bytes(32))})
    changes = rotate_key_during_the_update(
        monkeypatch, 1, lambda: Keyring(old).wrap(target, secrets.token_bytes(32)), times=100)
    with pytest.raises(ConfigError, match="kept changing during the re-wrap; run it again"):
        rot.rewrap_all(url, Keyring(new, previous=old))
    assert len(changes) == 5


def test_finish_deletes_the_previous_kek_only_when_no_key_needs_it(url, tmp_path):
    old = secrets.token_bytes(32)
    path = kek_file(tmp_path, old)
    assert rot.finish_file_rotation(url, Keyring(old), path) is False  # no rotation
    assert rot.begin_file_rotation(path)
    new = read_kek_file(path)
    add_devices(url, {d: Keyring(old).wrap(d, bytes(32)) for d in device_ids(2)})
    keyring = Keyring(new, previous=old)
    with pytest.raises(ConfigError, match="^2 device keys still need the previous KEK; "
                                          "run the rotation again$"):
        rot.finish_file_rotation(url, keyring, path)
    assert (tmp_path / "kek.key.previous").exists()
    rot.rewrap_all(url, keyring)
    assert rot.finish_file_rotation(url, keyring, path) is True
    assert not (tmp_path / "kek.key.previous").exists()
    assert {Keyring.kek_id_of(w) for w in stored(url).values()} == {kek_id(new)}


def test_each_rewrap_transaction_holds_the_write_lock_from_its_read(url, tmp_path, monkeypatch):
    """On SQLite the rows are read inside a write transaction (BEGIN IMMEDIATE): no other
    writer can slip in between the read and the update of a batch."""
    old, new = secrets.token_bytes(32), secrets.token_bytes(32)
    add_devices(url, {d: Keyring(old).wrap(d, bytes(32)) for d in device_ids(2)})
    refused = []

    def try_to_write(cursor, statement, parameters):
        if statement.startswith("SELECT devices.id"):
            other = sqlite3.connect(tmp_path / "db" / "replenish.db", timeout=0)
            try:
                other.execute("BEGIN IMMEDIATE")
                other.rollback()
                refused.append(False)
            except sqlite3.OperationalError as err:
                refused.append("locked" in str(err))
            finally:
                other.close()

    before_each_statement(monkeypatch, try_to_write)
    assert rot.rewrap_all(url, Keyring(new, previous=old)) == 2
    assert refused == [True, True]  # the batch, then the empty read that ends the pass


def test_a_wrapped_key_copied_onto_another_row_stops_the_rewrap_there(url):
    """The device id is bound into each wrapped key, so a copy on another row does not
    unwrap: the re-wrap stops at it, and the original's update (committed in its own
    transaction here) touched the original's row only."""
    old, new = secrets.token_bytes(32), secrets.token_bytes(32)
    first, second = device_ids(2)
    copied = Keyring(old).wrap(first, bytes(32))
    add_devices(url, {first: copied, second: copied})
    with pytest.raises(ConfigError, match=f"device {second}: key does not unwrap"):
        rot.rewrap_all(url, Keyring(new, previous=old), rows_per_transaction=1)
    after = stored(url)
    assert after[second] == copied
    assert Keyring(new).unwrap(first, after[first]) == bytes(32)
